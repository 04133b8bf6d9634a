"""Tiny step programs for the demo workflow and the engine's tests (no physics, fast, deterministic).

``python -m nsbiflow.demo numbers|square|total --param ... --in ... --out ...`` follows the step contract.
The ``fail`` and ``sleep`` parameters let tests provoke failures and slow steps.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path


def _parse(argv: list[str]) -> tuple[dict[str, object], dict[str, list[str]], dict[str, str]]:
    params: dict[str, object] = {}
    inputs: dict[str, list[str]] = {}
    outputs: dict[str, str] = {}
    it = iter(argv)
    for flag in it:
        name, _, value = next(it).partition("=")
        if flag == "--param":
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
        elif flag == "--in":
            inputs.setdefault(name, []).append(value)
        elif flag == "--out":
            outputs[name] = value
    return params, inputs, outputs


def main(argv: list[str] | None = None) -> int:
    """Run one demo stage."""
    args = list(sys.argv[1:] if argv is None else argv)
    stage, rest = args[0], args[1:]
    params, inputs, outputs = _parse(rest)
    time.sleep(float(params.get("sleep", 0) or 0))  # type: ignore[arg-type]
    if params.get("fail"):
        print(f"error: {stage} was asked to fail", file=sys.stderr)
        return 3
    if stage == "numbers":
        rng = random.Random(int(params.get("seed", 0)))  # type: ignore[call-overload]
        count = int(params.get("count", 100))  # type: ignore[call-overload]
        Path(outputs["numbers"]).write_text("\n".join(str(rng.randint(0, 1000)) for _ in range(count)) + "\n")
    elif stage == "square":
        numbers = [int(x) for x in Path(inputs["numbers"][0]).read_text().split()]
        chunk, chunks = int(params["chunk"]), int(params["chunks"])  # type: ignore[call-overload]
        mine = numbers[chunk::chunks]
        power = int(params.get("power", 2))  # type: ignore[call-overload]
        out = Path(outputs["partial"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "sum.json").write_text(json.dumps({"chunk": chunk, "sum": sum(x**power for x in mine)}))
    elif stage == "total":
        parts = [json.loads((Path(p) / "sum.json").read_text()) for p in inputs["partials"]]
        total = sum(p["sum"] for p in parts)
        Path(outputs["total"]).write_text(json.dumps({"total": total, "chunks": len(parts)}) + "\n")
    else:
        print(f"error: unknown demo stage {stage!r}", file=sys.stderr)
        return 2
    print(f"{stage} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
