"""Loops in the local executor: stop on ``until`` and on ``max_iterations``, outputs feeding the next fan-out,
every iteration cached (a second run is all cache hits), resume after SIGKILL of the runner mid-iteration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nsbiflow.backends.local.executor import LocalExecutor
from nsbiflow.engine.plan import load_plan
from nsbiflow.store import open_store
from tests.conftest import kill_run_when, run_cli
from tests.engine.loop_workflows import loop_workflow


def run(path: Path, store: Path, **sets: Any) -> tuple[Any, Any]:
    plan = load_plan(path, overrides={k: str(v) for k, v in sets.items()})
    opened = open_store(store)
    manifest = LocalExecutor(opened, jobs=2).run(plan)
    return opened, manifest


def read(store: Any, ref: Any) -> Any:
    return json.loads(store.read_blob(ref.digest))


def test_loop_stops_on_its_expression_and_outputs_feed_the_next_fan_out(tmp_path: Path) -> None:
    store, manifest = run(loop_workflow(tmp_path, target=3, max_iterations=6), tmp_path / "store")
    assert manifest.status == "succeeded", manifest.steps["counter"].error
    state = read(store, manifest.outputs["state"])
    # iteration k fans out over the k + 1 points its choose step derived from iteration k - 1's state
    assert state == {"count": 3, "widths": [1, 2, 3], "total": 0 + (100 + 121) + (400 + 441 + 484)}
    record = read(store, manifest.outputs["iterations"])
    assert record["stopped_by"] == "until" and len(record["iterations"]) == 3
    steps = record["iterations"][2]["steps"]
    assert sorted(s for s in steps if ".work[" in s) == [f"counter.i2.work[{x}]" for x in (20, 21, 22)]
    assert steps["counter.i2.work[21]"]["parameters"]["x"] == 21


def test_loop_stops_at_max_iterations(tmp_path: Path) -> None:
    store, manifest = run(loop_workflow(tmp_path, target=100, max_iterations=2), tmp_path / "store")
    assert manifest.status == "succeeded"
    assert read(store, manifest.outputs["state"])["widths"] == [1, 2]
    assert read(store, manifest.outputs["iterations"])["stopped_by"] == "max_iterations"


def test_second_run_is_all_cached_and_every_iteration_step_is_a_cache_hit(tmp_path: Path) -> None:
    path = loop_workflow(tmp_path, target=3)
    store, first = run(path, tmp_path / "store")
    _, second = run(path, tmp_path / "store")
    assert [r.status for r in second.steps.values()] == ["cached"]
    assert second.outputs == first.outputs
    # without the loop's own cache entry, the loop walks its iterations again: every body step is a hit
    (tmp_path / "store" / "cache" / f"{first.steps['counter'].key}.json").unlink()
    _, third = run(path, tmp_path / "store")
    assert third.steps["counter"].status == "succeeded" and third.outputs == first.outputs
    log = store.read_blob(third.steps["counter"].log).decode()
    body = [line for line in log.splitlines() if line.startswith("counter.i")]
    assert len(body) == 3 + 4 + 5 and all(line.endswith(": cached") for line in body), log
    # a changed parameter re-runs what it touches: the same iterations, one more at the end
    store4, fourth = run(path, tmp_path / "store", target=4)
    assert read(store4, fourth.outputs["state"])["widths"] == [1, 2, 3, 4]
    log = store4.read_blob(fourth.steps["counter"].log).decode()
    assert "counter.i2.update: cached" in log and "counter.i3.update: ran" in log


def test_resume_after_sigkill_mid_iteration(tmp_path: Path) -> None:
    path = loop_workflow(tmp_path, target=3, sleep=0.6)
    store = tmp_path / "store"
    # iteration 0 done (3 entries), iteration 1 under way
    kill_run_when(path, store, lambda store: len(list((store / "cache").glob("*.json"))) >= 4, poll=0.02)
    entries = len(list((store / "cache").glob("*.json")))
    assert 4 <= entries < 9, entries  # mid-loop: the loop itself (and iteration 2) not finished
    resumed = run_cli("run", path, "--store", store, "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    opened = open_store(store)
    manifest = opened.read_manifest(summary["run_id"])
    log = opened.read_blob(manifest.steps["counter"].log).decode()
    assert "counter.i0.update: cached" in log and "counter.i2.update: ran" in log
    # the same outputs as an uninterrupted run in a fresh store
    _, clean = run(path, tmp_path / "clean")
    assert manifest.outputs == clean.outputs
