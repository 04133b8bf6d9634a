"""Faults: a failing step, a runner killed with SIGKILL mid-run, a corrupted blob."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from nsbiflow.store import open_store
from tests.conftest import kill_run_when, run_cli


def faulty_workflow(demo_workflow: Path, *, sleep: float = 0.0, fail_chunk: int = -1, retries: int = 0) -> Path:
    data = yaml.safe_load(demo_workflow.read_text())
    square = data["steps"]["square"]
    square["run"]["parameters"]["sleep"] = {"type": "float", "default": 0.0}
    square["run"]["parameters"]["fail"] = {"type": "bool", "default": False}
    square["run"]["retries"] = {"limit": retries, "backoff_seconds": 0.05}
    square["with"]["sleep"] = sleep
    square["with"]["fail"] = f"${{{{ item == {fail_chunk} }}}}"
    path = demo_workflow.with_name("faulty.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_failing_step_stops_dependents_and_keeps_the_rest(demo_workflow: Path, tmp_path: Path) -> None:
    workflow = faulty_workflow(demo_workflow, fail_chunk=2, retries=1)
    store = tmp_path / "store"
    result = run_cli("run", workflow, "--store", store, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    summary = last_json(result.stdout)
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert summary["status"] == "failed"
    assert status["square[2]"] == "failed"
    assert status["total"] == "skipped"
    assert [status[f"square[{i}]"] for i in (0, 1, 3)] == ["succeeded"] * 3
    failure = next(s for s in summary["steps"] if s["name"] == "square[2]")
    assert "exited with code 3: error: square was asked to fail" in failure["error"]
    manifest = json.loads((store / "runs" / summary["run_id"] / "manifest.json").read_text())
    assert manifest["steps"]["square[2]"]["attempts"] == 2  # one retry
    assert "square[2] failed" in result.stderr

    # fixed: only the failed step and its dependents run; the rest comes from the cache
    fixed = run_cli("run", faulty_workflow(demo_workflow, fail_chunk=-1, retries=1), "--store", store, "--json")
    assert fixed.returncode == 0, fixed.stderr
    status = {s["name"]: s["status"] for s in last_json(fixed.stdout)["steps"]}
    assert status["numbers"] == "cached"
    assert status["square[2]"] == "succeeded" and status["total"] == "succeeded"


def test_sigkill_mid_run_then_resume(demo_workflow: Path, tmp_path: Path) -> None:
    workflow = faulty_workflow(demo_workflow, sleep=1.5)
    store = tmp_path / "store"

    def running(store: Path) -> bool:  # the first square steps are running
        if len(list((store / "cache").glob("*.json"))) >= 1 and any(store.glob("runs/*/manifest.json")):
            manifest = json.loads(next(store.glob("runs/*/manifest.json")).read_text())
            return any(s["status"] == "running" for s in manifest["steps"].values())
        return False

    kill_run_when(workflow, store, running)
    # the killed run could not record its end: it is listed as interrupted, not as still running
    listed = [json.loads(line) for line in run_cli("runs", "--store", store, "--json").stdout.splitlines()]
    assert [r["status"] for r in listed] == ["interrupted"]
    # nothing half-written is recorded: every cache entry points at complete, verifiable blobs
    opened = open_store(store)
    entries = list((store / "cache").glob("*.json"))
    assert 1 <= len(entries) < 6
    for entry in entries:
        cached = opened.cache_lookup(entry.stem)
        assert cached is not None
        for ref in cached.outputs.values():
            for digest in opened.blobs_of(ref):
                opened.read_blob(digest)  # raises if corrupt
    # the resumed run reuses what finished and completes
    resumed = run_cli("run", workflow, "--store", store, "--json")
    assert resumed.returncode == 0, resumed.stderr
    status = {s["name"]: s["status"] for s in last_json(resumed.stdout)["steps"]}
    assert status["numbers"] == "cached"
    assert status["total"] == "succeeded"


def test_corrupted_blob_is_detected_and_not_used(demo_workflow: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run_cli("run", demo_workflow, "--store", store, "--json")
    assert first.returncode == 0, first.stderr
    manifest = json.loads(next(store.glob("runs/*/manifest.json")).read_text())
    digest = manifest["steps"]["numbers"]["outputs"]["numbers"]["digest"]
    blob = store / "blobs" / "sha256" / digest[7:9] / digest[7:]
    blob.chmod(0o644)
    blob.write_text("1\n2\n3\n")
    # the cache says `numbers` is done, but square[*] must stage its output: the corruption is caught
    rerun = run_cli("run", demo_workflow, "--store", store, "--json", "--set", "power=3")
    assert rerun.returncode == 1
    assert "Traceback" not in rerun.stderr
    assert f"blob {digest}" in rerun.stderr and "corrupted" in rerun.stderr
    # the corrupted content is kept aside, and the next run re-runs the step that made the blob
    quarantined = store / "quarantine" / digest[7:]
    assert quarantined.read_text() == "1\n2\n3\n"
    assert "quarantine/" in rerun.stderr and "run again and the step that made it runs again" in rerun.stderr
    healed = run_cli("run", demo_workflow, "--store", store, "--json", "--set", "power=3")
    assert healed.returncode == 0, healed.stderr
    report = json.loads(healed.stdout)
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status["numbers"] == "succeeded"  # recomputed, not taken from the cache
    manifest = json.loads((store / "runs" / report["run_id"] / "manifest.json").read_text())
    assert manifest["steps"]["numbers"]["outputs"]["numbers"]["digest"] == digest
    assert (store / "blobs" / "sha256" / digest[7:9] / digest[7:]).read_text() != "1\n2\n3\n"


def test_unreadable_workflow_and_store(tmp_path: Path) -> None:
    result = run_cli("run", tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("missing.yaml:0:0: no such file")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    demo = Path(__file__).resolve().parents[2] / "workflows" / "examples" / "demo-fanout.yaml"
    result = run_cli("run", demo, "--store", blocker / "sub")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot create store folder")
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli("run", demo, "--store", "ftp://x/y")
    assert result.stderr.strip() == "error: unsupported store URI 'ftp://x/y': use a folder path or s3://BUCKET/PREFIX"
