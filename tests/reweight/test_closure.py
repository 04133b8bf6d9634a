"""Both reweighters close on the truth-known toy within declared tolerances; a wrong weight fails the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsbiflow.physics.events import read_events
from nsbiflow.physics.objects import read_object_events
from nsbiflow.physics.reweight.bdt import BDTConfig
from nsbiflow.physics.reweight.closure import ClosureTolerances, check, closure, truth_comparison
from nsbiflow.physics.reweight.deepsets import DeepSetsConfig
from nsbiflow.physics.reweight.model import Reweighter
from nsbiflow.physics.reweight.toy import ObjectToy
from nsbiflow.physics.reweight.train import train_reweighter
from tests.physics.conftest import must, run_step
from tests.reweight.conftest import Samples

SUMMARY = ["n_obj", "ht", "pt1", "pt2", "eta1", "eta2"]
# the declared tolerances (those of workflows/examples/reweighting.yaml at gate_scale 1)
TOLERANCES = ClosureTolerances(max_chi2_ndf=3.0, max_chi2_ndf_untrained=3.0, max_auc_deviation=0.03, min_ks_pvalue=1e-3)
CLASSIFIER = {"folds": 3, "seed": 0, "max_events": 8000}
# RMS of log w - log w_exact that each method must reach (the exact log w has an RMS of 0.29)
MAX_RMS = {"deepsets": 0.12, "bdt": 0.26}


def _closure(samples: Samples, log_w: np.ndarray, trained: list[str], classifier: bool = True) -> dict[str, Any]:
    metrics = closure(samples.a_hold, np.exp(log_w), samples.b_hold, trained, 20, CLASSIFIER if classifier else None)
    metrics["truth"] = truth_comparison(log_w, samples.toy.exact_log_weight(samples.a_hold), samples.a_hold.weights)
    return metrics


@pytest.fixture(scope="module")
def trained(samples: Samples, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reweighter]:
    root = tmp_path_factory.mktemp("reweighters")
    ds = DeepSetsConfig(members=1, max_epochs=15, batch_size=512, seed=1)
    bdt = BDTConfig(members=2, seed=1)
    return {
        "deepsets": train_reweighter(
            samples.a, samples.b, ds, root / "ds", fields=["pt", "eta", "phi", "e"], observables=[]
        ),
        "bdt": train_reweighter(samples.a, samples.b, bdt, root / "bdt", fields=[], observables=SUMMARY),
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", ["deepsets", "bdt"])
def test_reweighter_closes_on_the_truth_known_example(
    samples: Samples, trained: dict[str, Reweighter], method: str
) -> None:
    rw = trained[method]
    log_w, _ = rw.log_weights(samples.a_hold)
    metrics = _closure(samples, log_w, rw.trained)
    assert check(metrics, TOLERANCES, method) == []
    assert metrics["truth"]["rms_log_error"] < MAX_RMS[method], metrics["truth"]
    assert abs(metrics["normalisation"] - 1) < 0.03
    untrained = [k for k, v in metrics["projections"].items() if not v["trained"]]
    assert {"m12", "dr12", "sum_e"} <= set(untrained)


@pytest.mark.slow
def test_deep_sets_see_what_the_summary_lacks(samples: Samples, trained: dict[str, Reweighter]) -> None:
    """The exact weight depends on sum_e, which the BDT's event-level summary does not carry."""
    rms = {
        m: _closure(samples, rw.log_weights(samples.a_hold)[0], rw.trained)["truth"]["rms_log_error"]
        for m, rw in trained.items()
    }
    assert rms["deepsets"] < 0.7 * rms["bdt"], rms


@pytest.mark.slow
def test_exact_weight_closes_and_a_wrong_one_fails(samples: Samples) -> None:
    exact = samples.toy.exact_log_weight(samples.a_hold)
    metrics = _closure(samples, exact, [])
    assert check(metrics, TOLERANCES, "exact") == []
    unweighted = _closure(samples, np.zeros_like(exact), [])
    assert unweighted["classifier"]["auc"] > 0.55  # the two configurations do differ, and the test sees it
    # the multiplicity term forgotten: right energy spectrum, wrong number of objects
    wrong = ObjectToy(lambda_b=samples.toy.lambda_a).exact_log_weight(samples.a_hold)
    failures = check(_closure(samples, wrong, [], False), TOLERANCES, "wrong")
    assert failures and failures[0].startswith("closure of 'wrong' in ")
    assert any("n_obj (untrained): chi2/ndf" in f and "exceeds the tolerance 3 by" in f for f in failures), failures


def _chain(tmp: Path, method: str, n: int = 5000) -> dict[str, Path]:
    paths = {}
    for conf in "ab":
        paths[conf], paths[f"{conf}_hold"] = tmp / f"{conf}.parquet", tmp / f"{conf}_hold.parquet"
        params = {"configuration": conf, "n_events": n, "n_holdout": n, "seed": 4}
        must(run_step("generate-objects", params, outputs={"events": paths[conf], "holdout": paths[f"{conf}_hold"]}))
    paths["rw"] = tmp / "rw"
    params = {"method": method, "members": 1, "max_epochs": 8, "batch_size": 512, "label": method}
    must(
        run_step(
            "train-reweighter", params, [("source", paths["a"]), ("target", paths["b"])], {"reweighter": paths["rw"]}
        )
    )
    paths["varied"], paths["weights"] = tmp / "varied.parquet", tmp / "weights.parquet"
    outs = {"events": paths["varied"], "weights": paths["weights"]}
    must(run_step("apply-reweighter", {}, [("reweighter", paths["rw"]), ("events", paths["a_hold"])], outs))
    return paths


@pytest.mark.slow
def test_stage_chain_writes_a_varied_sample_and_gates(tmp_path: Path) -> None:
    p = _chain(tmp_path, "bdt")
    nominal, varied = read_object_events(p["a_hold"]), read_object_events(p["varied"])
    w = pq.read_table(p["weights"]).column("w").to_numpy()
    assert varied.events.process == "mc_a_bdt" and varied.events.meta["reweighting"]["nominal"] == "mc_a"
    np.testing.assert_array_equal(varied.weights, nominal.weights * w)
    assert np.array_equal(varied.counts, nominal.counts) and varied.events.observables == nominal.events.observables
    assert read_events(p["varied"]).observables == SUMMARY  # an ordinary events file for the model's ratios
    assert p["weights"].stat().st_size < p["a_hold"].stat().st_size / 3  # a column, not a sample
    report = tmp_path / "report"
    inputs = [("source", p["a_hold"]), ("target", p["b_hold"]), ("weights", p["weights"])]
    # a 1-member BDT on 5000 events is rough: report without gating, then check what was recorded
    run = run_step("reweight-closure", {"gate": False, "max_events": 3000}, inputs, {"report": report})
    assert run.exit_code == 0, run.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert np.isfinite(metrics["truth"]["rms_log_error"]) and metrics["passed"] == (not metrics["failures"])
    assert (report / "weights_bdt.png").exists()
    assert sorted(x.name for x in report.glob("closure_bdt_*.png"))
    # a deliberately wrong weight column (the learned one squared) fails with one line naming the projection
    table = pq.read_table(p["weights"])
    bad = table.set_column(0, "w", pa.array(table.column("w").to_numpy() ** 3))
    pq.write_table(bad, tmp_path / "bad.parquet")
    inputs = [("source", p["a_hold"]), ("target", p["b_hold"]), ("weights", tmp_path / "bad.parquet")]
    run = run_step("reweight-closure", {"classifier": False}, inputs, {"report": tmp_path / "bad-report"})
    assert run.exit_code == 1
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: reweight-closure: closure of 'bdt' in ") and (
        "exceeds the tolerance" in line or "is below" in line
    )


def test_closure_stage_errors_are_one_line(tmp_path: Path, samples: Samples) -> None:
    from nsbiflow.physics.objects import write_object_events

    write_object_events(samples.a_hold, tmp_path / "a.parquet")
    write_object_events(samples.b_hold, tmp_path / "b.parquet")
    inputs = [("source", tmp_path / "a.parquet"), ("target", tmp_path / "b.parquet")]
    run = run_step("reweight-closure", {}, inputs, {"report": tmp_path / "r"})
    assert run.exit_code == 1 and "bind 'reweighter' or 'weights'" in run.stderr
    pq.write_table(pq.read_table(tmp_path / "a.parquet").slice(0, 10).select(["weight"]), tmp_path / "w.parquet")
    run = run_step("reweight-closure", {}, [*inputs, ("weights", tmp_path / "w.parquet")], {"report": tmp_path / "r"})
    assert run.exit_code == 1 and "no readable weight column 'w'" in run.stderr
