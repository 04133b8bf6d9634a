"""Preserve and reinterpret a workflow with a ``loop:`` step: the patched run re-uses every cached iteration
and runs only what the change adds, and its answer equals a fresh run of the patched workflow."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from nsbiflow.store import open_store
from tests.conftest import run_cli
from tests.engine.loop_workflows import loop_workflow


def _last_json(text: str) -> dict[str, object]:
    return json.loads(text.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_loop_workflow_is_preserved_and_reinterpreted(tmp_path: Path) -> None:
    (tmp_path / "wf").mkdir()
    path = loop_workflow(tmp_path / "wf", target=3, max_iterations=6)
    data = yaml.safe_load(path.read_text())
    data["interface"] = {"parameters": ["target"], "results": ["state"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    store = tmp_path / "store"
    ran = run_cli("run", path, "--store", store, "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = str(_last_json(ran.stdout)["run_id"])
    kept = run_cli("preserve", run_id, "--name", "loop", "--store", store, "--json")
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["key_check"]["mismatched"] == []

    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/parameters/target/default", "value": 4}]))
    done = run_cli("reinterpret", "loop", "--patch", patch, "--store", store, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = _last_json(done.stdout)
    assert report["reran"] == ["counter"] and report["changed"] == {"/parameters/target/default": {"from": 3, "to": 4}}
    opened = open_store(store)
    results: dict[str, dict[str, str]] = report["results"]  # type: ignore[assignment]
    state = json.loads(opened.read_blob(results["state"]["digest"]))
    # what a fresh run with target 4 computes: iteration k sums the squares of 10k .. 11k
    assert state == {"count": 4, "widths": [1, 2, 3, 4], "total": 0 + 221 + 1325 + (900 + 961 + 1024 + 1089)}
    # inside the loop only the added iteration ran: the three archived iterations were cache hits
    manifest = json.loads((store / "runs" / str(report["run_id"]) / "manifest.json").read_text())
    log = opened.read_blob(manifest["steps"]["counter"]["log"]).decode()
    body = [line for line in log.splitlines() if line.startswith("counter.i")]
    assert [line for line in body if not line.endswith(": cached")] == [
        line for line in body if line.startswith("counter.i3.")
    ], log
    assert len([line for line in body if line.startswith("counter.i3.")]) == 1 + 4 + 1, log
    assert all(line.endswith(": cached") for line in body if not line.startswith("counter.i3.")), log
    # the same patch again re-runs nothing
    again = run_cli("reinterpret", "loop", "--patch", patch, "--store", store, "--json", cwd=tmp_path)
    assert again.returncode == 0 and _last_json(again.stdout)["reran"] == [], again.stderr
