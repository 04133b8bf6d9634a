"""``reinterpret``: interface-only JSON Patches, partial re-runs, fresh store copies, and refused input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.archive.conftest import Preserved, snapshot
from tests.conftest import run_cli

POWER_3 = [{"op": "replace", "path": "/parameters/power/default", "value": 3}]


def _patch(folder: Path, operations: object) -> Path:
    path = folder / "patch.json"
    path.write_text(json.dumps(operations))
    return path


def test_reinterpret_reruns_only_the_changed_subdag_and_matches_a_fresh_run(
    preserved: Preserved, tmp_path: Path
) -> None:
    code, out, err = preserved.cli("reinterpret", "demo", "--patch", _patch(tmp_path, POWER_3), "--json")
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["reused"] == ["numbers"]
    assert sorted(report["reran"]) == ["square[0]", "square[1]", "square[2]", "square[3]", "total"]
    assert report["changed"] == {"/parameters/power/default": {"from": 2, "to": 3}}
    assert report["original_results"]["total"]["digest"] == preserved.total
    new_total = report["results"]["total"]["digest"]
    assert new_total != preserved.total
    # the record sits next to the archive
    record = preserved.store / "archives" / "demo" / "reinterpretations" / f"{report['reinterpretation'][7:]}.json"
    assert json.loads(record.read_text())["reran"] == report["reran"]
    # a full fresh run of the patched workflow in an empty store gives the same answer
    fresh = run_cli(
        "run", preserved.workflow, "--store", tmp_path / "fresh", "--set", "count=200", "--set", "power=3", "--json"
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout.strip().splitlines()[-1])["outputs"]["total"]["digest"] == new_total
    # the same patch again re-runs nothing
    code, out, _ = preserved.cli("reinterpret", "demo", "--patch", _patch(tmp_path, POWER_3), "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["reran"] == []


def test_reinterpret_works_from_the_archive_alone(preserved: Preserved, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for part in ("blobs", "archives"):  # no cache/, no runs/, no original workflow folder
        shutil.copytree(preserved.store / part, copy / part)
    shutil.rmtree(preserved.workflow.parent)
    result = run_cli("reinterpret", "demo", "--patch", _patch(tmp_path, POWER_3), "--store", copy, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["reused"] == ["numbers"] and len(report["reran"]) == 5


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        (
            [{"op": "replace", "path": "/parameters/powr/default", "value": 3}],
            "patch operation 0 (replace /parameters/powr/default): path does not exist in the archived workflow; "
            "a patch may change: /parameters/power/default",
        ),
        (
            [{"op": "replace", "path": "/parameters/count/default", "value": 10}],
            "patch operation 0 (replace /parameters/count/default) touches a field outside the reinterpretation "
            "interface; a patch may change: /parameters/power/default",
        ),
        (
            [
                {"op": "replace", "path": "/parameters/power/default", "value": 3},
                {"op": "replace", "path": "/steps/square/run/command/0", "value": "sh"},
            ],
            "patch operation 1 (replace /steps/square/run/command/0) touches a field outside",
        ),
        ([{"op": "remove", "path": "/parameters/power/default"}], "can be replaced, not removed"),
        ([{"op": "replace", "path": "/parameters/power/default", "value": "x"}], "the patched workflow is not valid"),
        ({"op": "replace"}, "a patch must be a non-empty JSON array of RFC 6902 operations"),
    ],
)
def test_bad_patches_are_refused_and_write_nothing(
    preserved: Preserved, tmp_path: Path, operations: object, expected: str
) -> None:
    before = snapshot(preserved.store)
    code, _out, err = preserved.cli("reinterpret", "demo", "--patch", _patch(tmp_path, operations))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert snapshot(preserved.store) == before


def test_missing_and_tampered_archives_are_refused_and_write_nothing(preserved: Preserved, tmp_path: Path) -> None:
    patch = _patch(tmp_path, POWER_3)
    before = snapshot(preserved.store)
    code, _, err = preserved.cli("reinterpret", "nothing-here", "--patch", patch)
    assert code == 2 and err == "error: no archive 'nothing-here' in the store " + str(preserved.store) + (
        " (see `nsbiflow archive list`)\n"
    )
    # an altered blob the archive references (the result) is caught before anything runs
    blob = next(p for p in (preserved.store / "blobs").rglob("*") if p.name == preserved.total[7:])
    blob.chmod(0o644)
    blob.write_text("tampered\n")
    before = snapshot(preserved.store)
    code, _, err = preserved.cli("reinterpret", "demo", "--patch", patch)
    assert code == 2 and err.count("\n") == 1
    assert f"failed verification: altered: total.total ({preserved.total})" in err
    assert snapshot(preserved.store) == before
    # an edited record no longer matches its digest
    record = preserved.store / "archives" / "demo" / f"{preserved.digest[7:]}.json"
    record.write_text(record.read_text().replace('"power": 2', '"power": 5'))
    before = snapshot(preserved.store)
    code, _, err = preserved.cli("reinterpret", "demo", "--patch", patch)
    assert code == 2 and err.count("\n") == 1 and "is tampered" in err
    assert snapshot(preserved.store) == before
