"""Engine at ATLAS scale: plan and compile the 14,000-network example; the local executor at 10^4 steps.

Figures:

- the ATLAS-sized example (``workflows/examples/atlas-scale.yaml``): networks, step instances, pods of the
  compiled Argo Workflow, its size (compact JSON, as the API server stores it) against etcd's 1 MiB, its
  largest list against the safe size (1,000), the number of sharded loops; plan and compile wall time and
  peak traced Python memory (``tracemalloc``, in fresh subprocesses so imports are not counted twice);
- the local executor on trivial steps (``sh`` writing one file) at 201, 2,001 and 10,001 step instances:
  ms/step, the overhead over bare ``sh`` processes, and the marginal ms/step between widths (the CLI start-up
  cancels; a super-linear scheduler shows as a growing marginal cost);
- the yadage export of the ATLAS example: stages and size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from common import quick, table, write_result
from engine_overhead import run_local, trivial_workflow

REPO = Path(__file__).resolve().parents[1]
ATLAS = REPO / "workflows" / "examples" / "atlas-scale.yaml"
MiB = 1024 * 1024


def _measure_atlas() -> dict[str, Any]:
    """In this process: plan and compile the ATLAS example with wall time and peak traced memory."""
    import tracemalloc

    from nsbiflow.backends.argo import compile_workflow
    from nsbiflow.backends.argo.compiler import to_dict
    from nsbiflow.backends.argo.sharding import largest_lists, object_bytes
    from nsbiflow.engine.plan import load_plan

    tracemalloc.start()
    start = time.perf_counter()
    plan = load_plan(ATLAS)
    plan_s = time.perf_counter() - start
    plan_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    start = time.perf_counter()
    document = to_dict(compile_workflow(plan))
    compile_s = time.perf_counter() - start
    compile_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    loops = [(n, p) for n, p in largest_lists(document) if p.endswith("withItems")]
    train = [s for s in plan.steps.values() if s.definition.name == "train-ratio"]
    shard_templates = [t for t in document["spec"]["templates"] if t["name"].endswith("-shards")]
    return {
        "networks": sum(int(s.parameters["members"]) for s in train),
        "training_pods": len(train),
        "step_instances": len(plan.steps),
        "workflow_steps": len(plan.templates),
        "argo_object_bytes": object_bytes(document),
        "argo_object_fraction_of_1MiB": object_bytes(document) / MiB,
        "largest_loop": max(n for n, _ in loops),
        "largest_list": max(n for n, p in largest_lists(document)
                            if p.rsplit("/", 1)[-1] in ("withItems", "artifacts", "parameters", "tasks")),
        "loops": len(loops),
        "sharded_steps": len(shard_templates),
        "plan_seconds": plan_s,
        "plan_peak_traced_bytes": plan_peak,
        "compile_seconds": compile_s,
        "compile_peak_traced_bytes": compile_peak,
    }


def _atlas_untraced() -> dict[str, float]:
    """Plan and compile wall times without tracemalloc's overhead."""
    from nsbiflow.backends.argo import compile_workflow
    from nsbiflow.engine.plan import load_plan

    start = time.perf_counter()
    plan = load_plan(ATLAS)
    mid = time.perf_counter()
    compile_workflow(plan)
    return {"plan_seconds_untraced": mid - start, "compile_seconds_untraced": time.perf_counter() - mid}


def _yadage_export() -> dict[str, Any]:
    from nsbiflow.backends.yadage import export_workflow
    from nsbiflow.engine.plan import load_plan

    out = Path(tempfile.mkdtemp(prefix="nsbi-bench-yadage-"))
    try:
        start = time.perf_counter()
        written = export_workflow(load_plan(ATLAS), out / "spec", target="yadage", environment="localproc")
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (out / "spec").rglob("*") if p.is_file())
        return {"seconds": seconds, "files": len(written), "bytes": size}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def gather_members(chunks: int, per_chunk: int) -> dict[str, Any]:
    """gather-ensemble's merge of ``chunks`` train-ratio outputs of ``per_chunk`` tiny members each."""
    import tracemalloc

    import numpy as np

    from nsbiflow.physics.collection import gather
    from nsbiflow.physics.ensemble import save_members
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
    from nsbiflow.physics.training import Scaler, TrainedMember

    folder = Path(tempfile.mkdtemp(prefix="nsbi-bench-gather-"))
    try:
        config = MLPConfig(n_inputs=5, hidden=[4])
        model = BatchedMLP(config, per_chunk)
        scaler = Scaler(mean=np.zeros(5, np.float32), std=np.ones(5, np.float32))
        paths = []
        for c in range(chunks):
            members = [TrainedMember(f"member_{c * per_chunk + k:05d}", model.member_state(k),
                                     {"member_id": c * per_chunk + k}, {"train": [0.6], "holdout": [0.6]})
                       for k in range(per_chunk)]  # fmt: skip
            save_members(folder / f"c{c}", "ggH", members, scaler, config, {})
            paths.append(folder / f"c{c}")
        tracemalloc.start()
        start = time.perf_counter()
        counts = gather(paths, folder / "out")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {"chunks": chunks, "members": counts["ggH"], "seconds": seconds, "peak_traced_bytes": peak,
                "ms_per_member": 1000 * seconds / counts["ggH"]}  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bare_processes(count: int) -> float:
    """Wall time of ``count`` bare ``sh -c true`` processes run back to back (the steps' own cost)."""
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["sh", "-c", "true"], check=True)
    return time.perf_counter() - start


def executor_overhead(widths: list[int], jobs: int) -> list[dict[str, Any]]:
    """Local executor ms/step at each fan-out width (one start step + width trivial steps)."""
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="nsbi-bench-wf-"))
    try:
        per_process = _bare_processes(200) / 200
        for width in widths:
            workflow = trivial_workflow(folder, 1, width)
            steps = width + 1
            wall = run_local(workflow, jobs)
            rows.append({
                "steps": steps, "jobs": jobs, "wall_seconds": wall, "ms_per_step": 1000 * wall / steps,
                "bare_process_ms": 1000 * per_process,
                "overhead_ms_per_step": 1000 * (wall - steps * per_process / jobs) / steps,
                "load_average_1min": os.getloadavg()[0],
            })  # fmt: skip
            print(f"  executor: {steps} steps in {wall:.1f} s ({1000 * wall / steps:.2f} ms/step)", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def main() -> None:
    """Measure, print, and write benchmarks/results/scale.json."""
    if "--atlas" in sys.argv:
        print(json.dumps(_measure_atlas() | _atlas_untraced()))
        return
    q = quick()
    proc = subprocess.run([sys.executable, __file__, "--atlas"], capture_output=True, text=True, check=True,
                          env={**os.environ})  # fmt: skip
    atlas = json.loads(proc.stdout.strip().splitlines()[-1])
    if not q:  # a few seconds of file writing: the toy-size run (the smoke test) skips it
        atlas["yadage_export"] = _yadage_export()
    atlas["gather"] = gather_members(20, 10) if q else gather_members(200, 10)
    print(f"  gather: {atlas['gather']['members']} members in {atlas['gather']['seconds']:.2f} s", flush=True)
    jobs = os.cpu_count() or 2
    widths = [10, 30] if q else [200, 2000, 10_000]
    if "--widths" in sys.argv:  # e.g. --widths 200,2000 where a loaded machine makes 10^4 steps take too long
        widths = [int(w) for w in sys.argv[sys.argv.index("--widths") + 1].split(",")]
    overhead = executor_overhead(widths, jobs)
    # marginal cost per step between consecutive widths: the CLI's start-up (seconds on a loaded machine) cancels,
    # and a scheduler that is super-linear in the steps shows as a growing marginal cost
    for before, after in itertools.pairwise(overhead):
        after["marginal_ms_per_step"] = (
            1000 * (after["wall_seconds"] - before["wall_seconds"]) / (after["steps"] - before["steps"])
        )
    last = overhead[-1]
    marginal = [e["marginal_ms_per_step"] for e in overhead if "marginal_ms_per_step" in e]
    # against the first marginal cost, or (two widths only) the first width's whole cost per step
    growth = marginal[-1] / max(marginal[0] if len(marginal) > 1 else overhead[0]["ms_per_step"], 1e-9)
    summary = {
        "networks": atlas["networks"],
        "argo_object_kib": atlas["argo_object_bytes"] / 1024,
        "argo_object_under_1MiB": atlas["argo_object_bytes"] < MiB,
        "largest_list": atlas["largest_list"],
        "largest_list_within_safe_size": atlas["largest_list"] <= 1000,
        "plan_seconds": atlas["plan_seconds_untraced"],
        "compile_seconds": atlas["compile_seconds_untraced"],
        "plan_peak_mib": atlas["plan_peak_traced_bytes"] / MiB,
        "compile_peak_mib": atlas["compile_peak_traced_bytes"] / MiB,
        "gather_members": atlas["gather"]["members"],
        "gather_seconds": atlas["gather"]["seconds"],
        "gather_peak_mib": atlas["gather"]["peak_traced_bytes"] / MiB,
        "executor_steps": last["steps"],
        "executor_ms_per_step": last["ms_per_step"],
        "executor_overhead_ms_per_step": last["overhead_ms_per_step"],
        "executor_marginal_ms_per_step": marginal[-1],
        "executor_overhead_growth": growth,
        "executor_linear": growth < 1.5,
    }
    print(table("ATLAS-sized example (14,000 networks)", ["figure", "value"], [
        ["networks", atlas["networks"]], ["training pods", atlas["training_pods"]],
        ["step instances", atlas["step_instances"]], ["Argo object KiB", atlas["argo_object_bytes"] / 1024],
        ["largest list", atlas["largest_list"]], ["sharded steps", atlas["sharded_steps"]],
        ["plan s", atlas["plan_seconds_untraced"]], ["plan peak MiB", atlas["plan_peak_traced_bytes"] / MiB],
        ["compile s", atlas["compile_seconds_untraced"]],
        ["compile peak MiB", atlas["compile_peak_traced_bytes"] / MiB],
    ]))  # fmt: skip
    rows = [[r["steps"], r["wall_seconds"], r["ms_per_step"], r["overhead_ms_per_step"]] for r in overhead]
    print(table("local executor, trivial steps", ["steps", "wall s", "ms/step", "overhead ms/step"], rows))
    write_result("scale" + ("_quick" if q else ""), {"atlas": atlas, "executor": overhead, "summary": summary})


if __name__ == "__main__":
    main()
