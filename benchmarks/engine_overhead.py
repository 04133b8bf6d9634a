"""Engine overhead: a 200-step trivial DAG (fan-out 4 x 50) through the local executor vs yadage's engine.

Per-step overhead = (wall time - time spent inside the step commands) / steps; the steps are `true`, so
nearly all of the wall time is the engine's. The yadage figure runs the same plan exported by
``nsbiflow compile --target yadage --environment localproc`` through yadage's own engine (its separate
virtualenv, see Makefile); it is skipped with a note when that environment is missing.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

REPO = Path(__file__).resolve().parents[1]
YADAGE_PYTHON = REPO / ".venv-yadage" / "bin" / "python"


def trivial_workflow(folder: Path, width: int, depth: int) -> Path:
    """A fan-out of ``width`` x ``depth`` trivial steps (each writes one tiny file)."""
    text = f"""\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {{name: overhead}}
steps:
  start:
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do :; done; echo start > "${{a#*=}}"', step]
      outputs: {{token: {{kind: file}}}}
  work:
    foreach: {{matrix: {{lane: {list(range(width))}, i: {list(range(depth))}}}}}
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do :; done; echo "$*" > "${{a#*=}}"', step]
      parameters: {{lane: {{type: int}}, i: {{type: int}}}}
      inputs: {{token: {{kind: file}}}}
      outputs: {{out: {{kind: file}}}}
    with: {{lane: "${{{{ item.lane }}}}", i: "${{{{ item.i }}}}"}}
    inputs: {{token: start.token}}
"""
    path = folder / "overhead.yaml"
    path.write_text(text)
    return path


def run_local(workflow: Path, jobs: int) -> float:
    """Wall time of a cold local run (fresh store)."""
    store = Path(tempfile.mkdtemp(prefix="nsbi-bench-store-"))
    try:
        start = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "nsbiflow"),
                "run",
                str(workflow),
                "--store",
                str(store),
                "--jobs",
                str(jobs),
                "--results",
                str(store / "results"),
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start
    finally:
        shutil.rmtree(store, ignore_errors=True)


def run_yadage(workflow: Path, jobs: int) -> float | None:
    """Wall time of yadage's engine on the exported workflow, or None when yadage is not installed."""
    if not YADAGE_PYTHON.exists():
        return None
    out = Path(tempfile.mkdtemp(prefix="nsbi-bench-yadage-"))
    try:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "nsbiflow"),
                "compile",
                str(workflow),
                "--target",
                "yadage",
                "--environment",
                "localproc",
                "-o",
                str(out / "spec"),
            ],
            check=True,
            capture_output=True,
        )
        runner = REPO / "scripts" / "run_yadage.py"
        start = time.perf_counter()
        subprocess.run(
            [str(YADAGE_PYTHON), str(runner), str(out / "spec"), str(out / "work"), "--backend", f"multiproc:{jobs}"],
            check=True,
            capture_output=True,
            env=dict(os.environ),
        )
        return time.perf_counter() - start
    except subprocess.CalledProcessError as exc:
        print(f"yadage run failed: {exc.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    """Measure and print the overhead table."""
    width, depth = (4, 5) if quick() else (4, 50)
    steps = width * depth + 1
    jobs = os.cpu_count() or 2
    folder = Path(tempfile.mkdtemp(prefix="nsbi-bench-wf-"))
    workflow = trivial_workflow(folder, width, depth)
    repeats = 1 if quick() else 3
    local = statistics.median(run_local(workflow, jobs) for _ in range(repeats))
    yadage_runs = [run_yadage(workflow, jobs) for _ in range(repeats)]
    yadage = None if any(t is None for t in yadage_runs) else statistics.median(t for t in yadage_runs if t is not None)
    rows = [["nsbiflow local", steps, local, 1000 * local / steps]]
    payload: dict[str, object] = {
        "steps": steps,
        "jobs": jobs,
        "local_seconds": local,
        "local_ms_per_step": 1000 * local / steps,
    }
    if yadage is not None:
        rows.append(["yadage (multiproc)", steps, yadage, 1000 * yadage / steps])
        payload.update(yadage_seconds=yadage, yadage_ms_per_step=1000 * yadage / steps, ratio=yadage / local)
    print(
        table(f"engine overhead: {steps}-step trivial DAG, {jobs} jobs", ["engine", "steps", "wall s", "ms/step"], rows)
    )
    if yadage is not None:
        print(f"yadage / nsbiflow overhead ratio: {yadage / local:.1f}x")
    else:
        print("yadage: not measured (no .venv-yadage; run `make yadage-env`)")
    write_result("engine_overhead" + ("_quick" if quick() else ""), payload)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
