"""Run every benchmark, one subprocess after the other, then regenerate the README figure table.

    python benchmarks/run_all.py            # default sizes (< 15 minutes on a 2-core machine)
    python benchmarks/run_all.py --quick    # toy sizes (writes *_quick.json; skips reinterpret.py)

Each script writes ``benchmarks/results/<name>.json`` (``<name>_quick.json`` at toy sizes); ``report.py``
turns the full-size results into the table between the README's ``bench`` markers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["training.py", "inference.py", "model_fit.py", "engine_overhead.py", "scale.py", "reinterpret.py"]
GPU_SCRIPT = "gpu.py"  # run on its own where a GPU is lent (<= 8 minutes): python benchmarks/gpu.py
NO_QUICK = {"reinterpret.py"}  # written elsewhere, has no toy size: only run at default sizes


def main() -> int:
    """Run the scripts (stop at the first failure), print the timings, regenerate the table."""
    quick = "--quick" in sys.argv
    env = {**os.environ, **({"NSBIFLOW_BENCH_QUICK": "1"} if quick else {})}
    total = time.perf_counter()
    timings: list[tuple[str, float, int]] = []
    for name in SCRIPTS:
        script = HERE / name
        if not script.exists() or (quick and name in NO_QUICK):
            print(f"== {name}: skipped", flush=True)
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script)], env=env, check=False).returncode
        timings.append((name, time.perf_counter() - start, rc))
        if rc != 0:
            print(f"== {name} failed (exit {rc})", file=sys.stderr)
    print("\n== timings")
    for name, seconds, rc in timings:
        print(f"  {name:22s} {seconds:7.1f} s" + ("" if rc == 0 else f"  FAILED ({rc})"))
    print(f"  {'total':22s} {time.perf_counter() - total:7.1f} s")
    if not quick:
        subprocess.run([sys.executable, str(HERE / "report.py")], check=True)
    return max((rc for _, _, rc in timings), default=0)


if __name__ == "__main__":
    sys.exit(main())
