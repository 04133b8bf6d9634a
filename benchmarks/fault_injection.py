"""Fault injection: signal the runner (SIGKILL, SIGTERM, SIGHUP) at random moments, resume, check the store.

A demo workflow with slow steps (numbers -> 6 sleeping chunks -> total) runs once cleanly for the reference
output. Then, in cycles on a fresh store each, the runner is started and signalled after a random delay
(uniform over the clean run's duration), only the runner (as systemd, a batch system or the OOM killer
would), again and again until a run completes. After every signal:

- no process of the killed run is left (found by ``NSBIFLOW_RUN_ID`` in ``/proc/*/environ``);
- ``fsck`` of the store is clean (every record names intact blobs).

After every completed cycle: the workflow output is byte-identical to the clean run's, no partial upload is
left in the store's ``tmp/``, and no work directory is left behind.

``python benchmarks/fault_injection.py [--kills N] [--seed S]`` writes ``results/fault_injection.json``
(``--quick``/``NSBIFLOW_BENCH_QUICK=1``: 3 signals, ``fault_injection_quick.json``). Exit code 1 when any
check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, write_result

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGHUP)


def slow_workflow(folder: Path, sleep: float, chunks: int) -> Path:
    """The demo fan-out with sleeping ``square`` steps."""
    data = yaml.safe_load((REPO / "workflows" / "examples" / "demo-fanout.yaml").read_text())
    square = data["steps"]["square"]
    square["run"]["parameters"]["sleep"] = {"type": "float", "default": 0.0}
    square["with"]["sleep"] = sleep
    data["parameters"]["chunks"]["default"] = chunks
    data["parameters"]["count"]["default"] = 20000
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "slow.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_processes(run_id: str) -> list[int]:
    """Live processes (other than zombies) whose environment names ``run_id``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"NSBIFLOW_RUN_ID={run_id}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def wait_no_processes(run_id: str, timeout: float = 10.0) -> list[int]:
    """Wait until no process of the run is left; returns the ones still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not run_processes(run_id):
            return []
        time.sleep(0.05)
    return run_processes(run_id)


def environment(tmp: Path) -> dict[str, str]:
    """The runner's environment: our scripts on PATH, work directories under ``tmp``."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", TMPDIR=str(tmp))


def start(workflow: Path, store: Path, tmp: Path) -> subprocess.Popen[bytes]:
    """Start ``nsbiflow run`` in its own session (so a signal to it reaches no one else)."""
    return subprocess.Popen(
        [str(BIN / "nsbiflow"), "run", str(workflow), "--store", str(store), "--jobs", "3", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(tmp),
        start_new_session=True,
    )


def fsck_problems(store: Path) -> list[str]:
    """``nsbiflow fsck`` of the store, as a user would run it."""
    result = subprocess.run(
        [str(BIN / "nsbiflow"), "fsck", "--store", str(store), "--json"], capture_output=True, text=True, check=False
    )
    try:
        return list(json.loads(result.stdout)["problems"])
    except (ValueError, KeyError):
        return [f"fsck failed: exit {result.returncode}: {result.stderr.strip()[-300:]}"]


def output_bytes(store: Path, stdout: bytes) -> bytes:
    """The bytes of the run's ``total`` output (read back and verified through the store)."""
    sys.path.insert(0, str(REPO / "src"))
    from nsbiflow.store import open_store

    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    return open_store(store).read_blob(summary["outputs"]["total"]["digest"])


def new_run_ids(store: Path, known: set[str]) -> list[str]:
    """Run ids that appeared in the store since ``known``."""
    return sorted({p.parent.name for p in store.glob("runs/*/manifest.json")} - known)


def inject(kills: int, seed: int, sleep: float, chunks: int) -> dict[str, Any]:
    """Run the experiment; returns the results (``failures`` lists every check that did not hold)."""
    rng = random.Random(seed)
    base = Path(tempfile.mkdtemp(prefix="nsbiflow-faults-"))
    tmp = base / "tmp"
    tmp.mkdir()
    workflow = slow_workflow(base / "wf", sleep, chunks)
    failures: list[str] = []
    try:
        started = time.monotonic()
        clean = subprocess.run(
            [str(BIN / "nsbiflow"), "run", str(workflow), "--store", str(base / "clean"), "--json", "--jobs", "3"],
            capture_output=True,
            env=environment(tmp),
            check=False,
        )
        clean_seconds = time.monotonic() - started
        if clean.returncode != 0:
            raise SystemExit(f"the clean run failed: {clean.stderr.decode()[-500:]}")
        reference = output_bytes(base / "clean", clean.stdout)
        events: list[dict[str, Any]] = []
        cycles = 0
        while len(events) < kills:
            cycles += 1
            store = base / f"store-{cycles}"
            known: set[str] = set()
            for _attempt in range(200):
                proc = start(workflow, store, tmp)
                delay = rng.uniform(0.0, clean_seconds)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=delay)
                if proc.poll() is None and len(events) < kills:
                    sig = rng.choice(SIGNALS)
                    proc.send_signal(sig)
                    try:
                        proc.communicate(timeout=60)
                    except subprocess.TimeoutExpired:
                        failures.append(f"runner did not exit within 60 s of {sig.name}")
                        proc.kill()
                        proc.communicate()
                    ids = new_run_ids(store, known)
                    known.update(ids)
                    left = [pid for run_id in ids for pid in wait_no_processes(run_id)]
                    problems = fsck_problems(store) if store.exists() else []
                    events.append(
                        {
                            "cycle": cycles,
                            "signal": sig.name,
                            "after_seconds": round(delay, 3),
                            "exit_code": proc.returncode,
                            "processes_left": left,
                            "fsck_problems": problems,
                        }
                    )
                    if left:
                        failures.append(f"{sig.name} after {delay:.2f}s left processes {left}")
                    if problems:
                        failures.append(f"{sig.name} after {delay:.2f}s: fsck: {problems[:3]}")
                    continue
                stdout, stderr = proc.communicate()
                known.update(new_run_ids(store, known))
                if proc.returncode != 0:
                    failures.append(f"cycle {cycles}: resumed run exited {proc.returncode}: {stderr.decode()[-300:]}")
                elif output_bytes(store, stdout) != reference:
                    failures.append(f"cycle {cycles}: the output differs from the clean run's")
                partials = sorted(p.name for p in (store / "tmp").glob(".*"))
                if partials:
                    failures.append(f"cycle {cycles}: temporaries left in the store: {partials}")
                workdirs = sorted(p.name for p in (tmp / "nsbiflow").glob("*")) if (tmp / "nsbiflow").exists() else []
                if workdirs:
                    failures.append(f"cycle {cycles}: work directories left: {workdirs}")
                problems = fsck_problems(store)
                if problems:
                    failures.append(f"cycle {cycles}: fsck after completion: {problems[:3]}")
                break
            else:
                failures.append(f"cycle {cycles}: no run completed in 200 attempts")
        counts = {s.name: sum(e["signal"] == s.name for e in events) for s in SIGNALS}
        return {
            "kills": len(events),
            "cycles": cycles,
            "seed": seed,
            "clean_run_seconds": round(clean_seconds, 3),
            "signals": counts,
            "events": events,
            "failures": failures,
            "ok": not failures,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    """Parse the options, run, write the results JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=None, help="signals to send [24; quick: 3]")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="3 signals, quick result file")
    args = parser.parse_args()
    small = quick()
    kills = args.kills or (3 if small else 24)
    result = inject(kills, args.seed, sleep=0.3 if small else 0.6, chunks=4 if small else 6)
    path = write_result("fault_injection_quick" if small else "fault_injection", result)
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=2))
    print(f"results: {path}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
