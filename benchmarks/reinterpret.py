"""Benchmark: a full run of a patched analysis vs reinterpreting the preserved original with the same patch.

    python benchmarks/reinterpret.py [--workflow workflows/toy-nsbi.yaml] [--set NAME=VALUE ...]
                                     [--patch-param NAME=VALUE] [--jobs N] [--toy-only | --offshell-only]

1. runs the workflow in an empty store and preserves it (the original analysis);
2. reinterprets the archive with a JSON Patch of one interface parameter (timed: *reinterpret*);
3. runs the patched workflow from scratch in another empty store (timed: *full*);
and checks that both give the same result digests. Prints a table and writes
``benchmarks/results/reinterpret.json``. Without ``--workflow``, the toy NSBI workflow is used when it plans,
else the demo fan-out workflow (whose steps are too quick for the ratio to mean much); and then (unless
``--toy-only``) the off-shell analysis too (more backgrounds and systematics, as in a real analysis; patch:
the signal's m4l centre), under the JSON's ``offshell`` key (``--offshell-only``: that one alone, the toy's
entry kept).

Each reinterpretation is set against its *floor*: the time the steps it must re-run took in the full run
(their critical path, or their serial sum over the job slots, whichever is larger); the target is within 20 %.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "workflows" / "toy-nsbi.yaml"
DEMO_INTERFACE = "interface:\n  parameters: [power]\n  results: [total]\noutputs:\n  total: total.total"


def _pick_workflow(requested: Path | None, folder: Path) -> Path:
    from nsbiflow.engine.plan import load_plan
    from nsbiflow.errors import NsbiflowError

    if requested is not None:
        return requested
    try:
        load_plan(TOY)
        return TOY
    except NsbiflowError as exc:
        print(f"note: {TOY.name} does not plan yet ({str(exc).splitlines()[0]}); using the demo workflow")
    text = (REPO / "workflows" / "examples" / "demo-fanout.yaml").read_text()
    target = folder / "demo.yaml"
    target.write_text(text.replace("outputs:\n  total: total.total", DEMO_INTERFACE))
    return target


def _patched_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value + 0.5, 6)
    raise SystemExit(f"cannot pick a new value for {value!r}: give --patch-param NAME=VALUE")


def _results(manifest: Any, names: list[str]) -> dict[str, Any]:
    out = {}
    for name in names or list(manifest.outputs):
        refs = manifest.outputs[name]
        out[name] = [r.digest for r in refs] if isinstance(refs, list) else refs.digest
    return out


def floor_seconds(plan: Any, manifest: Any, steps: list[str], jobs: int) -> dict[str, float]:
    """What re-running ``steps`` must cost at least, from their times in the full run of the patched workflow.

    ``critical_path``: the longest dependency chain through them; ``serial / jobs``: their total over the
    parallel slots; the floor is the larger of the two (no scheduler beats either).
    """
    chosen = set(steps)
    seconds = {s: float(manifest.steps[s].seconds or 0.0) for s in chosen}
    longest: dict[str, float] = {}
    for step_id in plan.order:
        if step_id in chosen:
            before = [longest[d] for d in plan.steps[step_id].depends_on if d in longest]
            longest[step_id] = seconds[step_id] + max(before, default=0.0)
    serial = sum(seconds.values())
    critical = max(longest.values(), default=0.0)
    return {"serial": serial, "critical_path": critical, "floor": max(critical, serial / max(jobs, 1))}


@contextlib.contextmanager
def _phase_timer() -> Iterator[dict[str, float]]:
    """Seconds ``reinterpret`` spends verifying the archive, materialising and planning the patched
    workflow, seeding the cache, and running it (``run``), by timing the functions it calls."""
    module = importlib.import_module("nsbiflow.archive.reinterpret")  # the module (the package exports the function)
    phases: dict[str, float] = {}
    names = {"open_verified": "verify", "materialize": "materialize", "_plan": "plan", "seed_cache": "seed_cache"}
    originals = {name: getattr(module, name) for name in names}

    def timed(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return originals[name](*args, **kwargs)
            finally:
                phases[names[name]] = phases.get(names[name], 0.0) + time.perf_counter() - start

        return call

    local = "LocalTarget"
    target = getattr(module, local)

    class TimedTarget(target):  # type: ignore[misc, valid-type]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().execute(*args, **kwargs)
            finally:
                phases["run"] = time.perf_counter() - start

    try:
        for name in names:
            setattr(module, name, timed(name))
        setattr(module, local, TimedTarget)
        yield phases
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)
        setattr(module, local, target)


OFFSHELL = REPO / "workflows" / "offshell-toy.yaml"
OFFSHELL_PATCH = 'truth={"signal_m4l": 560.0}'


def main() -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", type=Path)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--patch-param", metavar="NAME=VALUE", help="interface parameter to change [first one]")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--toy-only", action="store_true", help="without --workflow: skip the off-shell analysis")
    parser.add_argument("--offshell-only", action="store_true",
                        help="only the off-shell analysis, written under 'offshell' beside the toy's entry the output "
                        "file holds already")  # fmt: skip
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "reinterpret.json")
    args = parser.parse_args()
    if args.offshell_only:
        report = json.loads(args.output.read_text()) if args.output.exists() else {}
        print("off-shell analysis:", flush=True)
        report["offshell"] = measure(OFFSHELL, [], OFFSHELL_PATCH, args.jobs)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.output}")
        return 0 if report["offshell"]["results_match"] else 1
    report = measure(args.workflow, args.sets, args.patch_param, args.jobs)
    if args.workflow is None and not args.toy_only:
        print("off-shell analysis:", flush=True)
        report["offshell"] = measure(OFFSHELL, [], OFFSHELL_PATCH, args.jobs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if report["results_match"] and report.get("offshell", report)["results_match"] else 1


def measure(requested: Path | None, sets: list[str], patch_param: str | None, jobs_arg: int | None
            ) -> dict[str, Any]:  # fmt: skip
    """Original run, preserve, reinterpret (timed) and full run of the patched workflow (timed); the report."""
    from nsbiflow.archive import preserve_run, reinterpret
    from nsbiflow.backends.local.executor import LocalExecutor
    from nsbiflow.backends.local.progress import QuietProgress
    from nsbiflow.engine.plan import load_plan
    from nsbiflow.spec.models import coerce_value
    from nsbiflow.store import open_store

    load_at_start = os.getloadavg()[0]
    overrides = dict(item.split("=", 1) for item in sets)
    with tempfile.TemporaryDirectory(prefix="nsbiflow-bench-") as tmp:
        root = Path(tmp)
        workflow = _pick_workflow(requested, root)
        plan = load_plan(workflow, overrides=overrides)
        interface = plan.workflow.interface
        if not interface.parameters:
            raise SystemExit(f"{workflow} declares no interface parameters to patch")
        if patch_param:
            name, _, raw = patch_param.partition("=")
            value = coerce_value(plan.workflow.parameters[name].type, raw)
        else:
            name = interface.parameters[0]
            value = _patched_value(plan.parameters[name])
        operations = [{"op": "replace", "path": f"/parameters/{name}/default", "value": value}]

        original_store = open_store(root / "original")
        started = time.perf_counter()
        original = LocalExecutor(original_store, jobs=jobs_arg, progress=QuietProgress()).run(plan)
        original_seconds = time.perf_counter() - started
        if original.status != "succeeded":
            raise SystemExit(f"the original run failed: {original.error or original.status}")
        preserve_run(original_store, original.run_id, "bench")

        started = time.perf_counter()
        with _phase_timer() as phases:
            result = reinterpret(
                original_store, "bench", operations, base_dir=root, jobs=jobs_arg, progress=QuietProgress()
            )
        reinterpret_seconds = time.perf_counter() - started

        patched_plan = load_plan(workflow, overrides={**overrides, name: json.dumps(value)})
        started = time.perf_counter()
        full = LocalExecutor(open_store(root / "full"), jobs=jobs_arg, progress=QuietProgress()).run(patched_plan)
        full_seconds = time.perf_counter() - started
        if full.status != "succeeded" or result.manifest is None:
            raise SystemExit("the full run of the patched workflow failed")

    jobs = jobs_arg or os.cpu_count() or 1
    floor = floor_seconds(patched_plan, full, result.reran, jobs)
    # the same floor from the reinterpretation's own step times: on a machine whose load drifts between the
    # two runs this separates the reinterpretation's own overhead from the steps' speed at that moment
    own = floor_seconds(patched_plan, result.manifest, result.reran, jobs)
    phases["run_besides_steps"] = phases.pop("run") - own["floor"]
    results_full = _results(full, interface.results)
    results_reint = _results(result.manifest, interface.results)
    report = {
        "workflow": str(workflow.relative_to(REPO)) if workflow.is_relative_to(REPO) else workflow.name,
        "sets": overrides,
        "patch": operations,
        "steps": len(plan.steps),
        "reused": len(result.reused),
        "reran": len(result.reran),
        "reran_steps": result.reran,
        "original_seconds": round(original_seconds, 3),
        "full_seconds": round(full_seconds, 3),
        "reinterpret_seconds": round(reinterpret_seconds, 3),
        "ratio": round(full_seconds / reinterpret_seconds, 2),
        "results_match": results_full == results_reint,
        "floor_seconds": round(floor["floor"], 3),
        "floor_critical_path_seconds": round(floor["critical_path"], 3),
        "floor_serial_seconds": round(floor["serial"], 3),
        "reinterpret_over_floor": round(reinterpret_seconds / max(floor["floor"], 1e-9), 3),
        "within_20_percent_of_floor": reinterpret_seconds <= 1.2 * floor["floor"],
        "own_floor_seconds": round(own["floor"], 3),
        "reinterpret_over_own_floor": round(reinterpret_seconds / max(own["floor"], 1e-9), 3),
        "overhead_seconds": {k: round(v, 3) for k, v in phases.items()},
        "load_average_1min": os.getloadavg()[0],  # a loaded machine's times are contention, not the code
        "load_average_1min_at_start": load_at_start,
        "host": platform.node(),
        "python": platform.python_version(),
    }
    print(f"{'workflow':<28} {report['workflow']}")
    print(f"{'patch':<28} /parameters/{name}/default -> {json.dumps(value)}")
    print(f"{'steps (reused / re-ran)':<28} {report['steps']} ({report['reused']} / {report['reran']})")
    print(f"{'full run of patched [s]':<28} {full_seconds:10.2f}")
    print(f"{'reinterpret [s]':<28} {reinterpret_seconds:10.2f}")
    print(f"{'ratio full / reinterpret':<28} {report['ratio']:10.2f}x")
    print(f"{'floor (re-run steps) [s]':<28} {floor['floor']:10.2f}  (critical path {floor['critical_path']:.2f}, "
          f"serial {floor['serial']:.2f})")  # fmt: skip
    print(f"{'reinterpret / floor':<28} {report['reinterpret_over_floor']:10.2f}x")
    print(f"{'reinterpret / own floor':<28} {report['reinterpret_over_own_floor']:10.2f}x  "
          f"(overhead: {', '.join(f'{k} {v:.2f}s' for k, v in phases.items())})")  # fmt: skip
    print(f"{'results match':<28} {report['results_match']}", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
