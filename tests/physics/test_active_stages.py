"""The active scan's stage programs through the step contract: outputs, the loop's JSON fields, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsbiflow.physics.active.toy import ScanToy, point_cls, simulated_signal
from tests.physics.conftest import must, run_step


def test_choose_scan_update_and_report(tmp_path: Path) -> None:
    points = tmp_path / "points.json"
    must(run_step("choose-points", {"initial": 5}, outputs={"points": points}))
    chosen = json.loads(points.read_text())["points"]
    assert len(chosen) == 5
    assert all(1.5 <= p["mass"] <= 8.5 and 0.0 <= p["mu"] <= 2.0 for p in chosen)
    results = []
    for index, p in enumerate(chosen):
        result = tmp_path / f"r{index}.json"
        must(run_step("scan-point", {"mass": p["mass"], "mu": p["mu"]}, outputs={"result": result}))
        value = json.loads(result.read_text())
        toy = ScanToy()
        assert value["cls"] == pytest.approx(
            point_cls(toy, p["mass"], p["mu"], simulated_signal(toy, p["mass"], 20000, 1))
        )
        results.append(result)
    history, status = tmp_path / "history.json", tmp_path / "status.json"
    must(
        run_step(
            "update-surrogate",
            {"iteration": 0},
            [("results", r) for r in results],
            {"history": history, "status": status},
        )
    )
    state = json.loads(status.read_text())
    assert state["points"] == 5 and state["iteration"] == 0 and isinstance(state["done"], bool)
    assert 0.0 <= state["expected_misclassified"] <= 1.0
    # the next batch comes from the history: new points, not the initial design again
    must(run_step("choose-points", {"batch": 3}, [("history", history)], {"points": points}))
    batch = json.loads(points.read_text())["points"]
    assert len(batch) == 3 and not {(p["mass"], p["mu"]) for p in batch} & {(p["mass"], p["mu"]) for p in chosen}
    report, plots = tmp_path / "results.json", tmp_path / "plots"
    must(run_step("scan-report", {"exact_masses": 7}, [("history", history)], {"results": report, "plots": plots}))
    summary = json.loads(report.read_text())
    assert summary["active"]["points"] == 5 and 0.0 <= summary["active"]["misclassified"] <= 1.0
    assert (plots / "contour.png").stat().st_size > 1000 and (plots / "surrogate.png").stat().st_size > 1000


def test_a_bad_history_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "history.json"
    bad.write_text('{"nope": 1}')
    run = run_step("choose-points", {}, [("history", bad)], {"points": tmp_path / "p.json"})
    assert run.exit_code == 1
    assert run.stderr.strip().count("\n") == 0 and "is not a scan history" in run.stderr
