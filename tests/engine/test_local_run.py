"""The embedded default end to end: a 3-stage workflow with a fan-out of 4, caching, re-runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli


def run_json(workflow: Path, store: Path, *args: str) -> dict:
    result = run_cli("run", workflow, "--store", store, "--json", "--results", store.parent / "results", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def expected_total(count: int = 1000, seed: int = 1, power: int = 2) -> int:
    import random

    rng = random.Random(seed)
    return sum(rng.randint(0, 1000) ** power for _ in range(count))


def test_runs_caches_and_reruns_only_downstream(demo_workflow: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run_json(demo_workflow, store)
    assert first["status"] == "succeeded"
    assert next(s["name"] for s in first["steps"]) == "numbers"
    assert {s["status"] for s in first["steps"]} == {"succeeded"}
    assert len(first["steps"]) == 6
    total_path = Path(first["outputs"]["total"]["path"])
    assert json.loads(total_path.read_text()) == {"total": expected_total(), "chunks": 4}

    second = run_json(demo_workflow, store)
    assert {s["status"] for s in second["steps"]} == {"cached"}
    assert all(s["cached"] for s in second["steps"])
    assert second["outputs"]["total"]["digest"] == first["outputs"]["total"]["digest"]

    third = run_json(demo_workflow, store, "--set", "power=3")
    status = {s["name"]: s["status"] for s in third["steps"]}
    assert status["numbers"] == "cached"
    assert all(status[f"square[{i}]"] == "succeeded" for i in range(4))
    assert status["total"] == "succeeded"
    assert json.loads(Path(third["outputs"]["total"]["path"]).read_text())["total"] == expected_total(power=3)


def test_manifest_records_provenance(demo_workflow: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = run_json(demo_workflow, store)
    manifest = json.loads((store / "runs" / summary["run_id"] / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["workflow"]["digest"].startswith("sha256:")
    assert manifest["parameters"]["chunks"] == 4
    assert manifest["versions"]["nsbiflow"]
    assert manifest["host"]
    square = manifest["steps"]["square[1]"]
    assert square["inputs"]["numbers"] == [manifest["steps"]["numbers"]["outputs"]["numbers"]["digest"]]
    assert square["outputs"]["partial"]["kind"] == "dir"
    assert len(square["key"]) == 64
    log = (store / "blobs" / "sha256" / square["log"][7:9] / square["log"][7:]).read_text()
    assert "square done" in log
    listing = run_cli("runs", "--store", store)
    assert summary["run_id"] in listing.stdout
    shown = run_cli("show", summary["run_id"][:17], "--store", store)
    assert shown.returncode == 0, shown.stderr
    assert "square[3]" in shown.stdout and "outputs:" in shown.stdout
    log_out = run_cli("show", summary["run_id"], "--store", store, "--log", "total")
    assert "total done" in log_out.stdout


def test_jobs_one_runs_serially(demo_workflow: Path, tmp_path: Path) -> None:
    summary = run_json(demo_workflow, tmp_path / "store", "--jobs", "1")
    assert summary["status"] == "succeeded"
