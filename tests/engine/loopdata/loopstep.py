"""Tiny step programs for the loop tests: ``python loopstep.py ROLE --param ... --in ... --out ...``."""

import json
import sys
import time
from pathlib import Path


def parse(argv: list[str]) -> tuple[dict[str, str], dict[str, list[str]], dict[str, str]]:
    params: dict[str, str] = {}
    inputs: dict[str, list[str]] = {}
    outputs: dict[str, str] = {}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        name, _, text = value.partition("=")
        if flag == "--param":
            params[name] = text
        elif flag == "--in":
            inputs.setdefault(name, []).append(text)
        else:
            outputs[name] = text
    return params, inputs, outputs


def main() -> None:
    role = sys.argv[1]
    params, inputs, outputs = parse(sys.argv[2:])
    if role == "choose":  # one more point each iteration: the fan-out width comes from the state so far
        state = json.loads(Path(inputs["state"][0]).read_text()) if "state" in inputs else {"count": 0}
        points = [state["count"] * 10 + i for i in range(state["count"] + 1)]
        Path(outputs["points"]).write_text(json.dumps({"points": points}))
    elif role == "work":
        time.sleep(float(params.get("sleep", "0")))
        Path(outputs["value"]).write_text(json.dumps({"x": int(params["x"]), "y": int(params["x"]) ** 2}))
    elif role == "update":
        state = json.loads(Path(inputs["state"][0]).read_text()) if "state" in inputs else {"count": 0, "widths": []}
        values = [json.loads(Path(p).read_text()) for p in inputs.get("values", [])]
        state = {
            "count": state["count"] + 1,
            "widths": [*state["widths"], len(values)],
            "total": state.get("total", 0) + sum(v["y"] for v in values),
        }
        Path(outputs["state"]).write_text(json.dumps(state))


if __name__ == "__main__":
    main()
