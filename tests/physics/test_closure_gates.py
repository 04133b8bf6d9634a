"""The calibrate gates with power, both directions: the exact ratio passes with margin; degraded ratios fail.

The tolerances (z = 3.09 for the closure in bins of the learned ratio and for the classifier two-sample
test) come from how the exact ratio scores at the workflow's held-out sizes (20 000 events per sample):
``benchmarks/closure_null.py`` measures that spread (docs/physics.md). Here the exact ratio must pass with
margin, a ratio tempered by 5 % in ``log r`` (the learned signal ratio's known failure, overshoot where it is
largest) must fail the new gate while passing every old one, and a one-epoch ensemble must fail the stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics import diagnostics
from nsbiflow.physics.toy_model import ToyModel
from tests.physics.conftest import must, run_step

N = 20_000  # the workflow's held-out events per sample
OBSERVABLES = [f"x{j}" for j in range(5)]


def _metrics(x_num: np.ndarray, x_ref: np.ndarray, lr_num: np.ndarray, lr_ref: np.ndarray) -> dict:
    """Every calibrate diagnostic of a ratio given on both samples (unit weights), as the stage computes them."""
    w_num, w_ref = np.ones(len(x_num)), np.ones(len(x_ref))
    r = np.exp(lr_ref)
    norm = diagnostics.normalisation(w_ref, r)
    log_norm = float(np.log(norm))
    closure = diagnostics.closure(x_num, w_num, x_ref, w_ref, r / norm, OBSERVABLES)
    return {
        "label": "test",
        "normalisation": norm,
        "closure": closure,
        "max_chi2_ndf": max(c["chi2_ndf"] for c in closure.values()),
        "calibration": diagnostics.calibration_curve(lr_num - log_norm, w_num, lr_ref - log_norm, w_ref),
        "ratio_closure": diagnostics.ratio_closure(lr_num, w_num, lr_ref, w_ref, r / norm),
        "two_sample": diagnostics.two_sample(x_num, w_num, x_ref, w_ref, r / norm),
    }


@pytest.fixture(scope="module")
def signal_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    toy = ToyModel()
    rng = np.random.default_rng(0)
    x_num, x_ref = toy.sample("signal", N, rng), toy.sample("reference", N, rng)
    return x_num, x_ref, toy.log_ratio("signal", "reference", x_num), toy.log_ratio("signal", "reference", x_ref)


def test_exact_ratio_passes_the_new_gates_with_margin(signal_samples) -> None:
    tol = diagnostics.Tolerances()
    m = _metrics(*signal_samples)
    assert diagnostics.check(m, tol) == []
    # margin: at least 1.5 standard deviations below each tolerance
    assert m["ratio_closure"]["z"] < tol.max_ratio_closure_z - 1.5, m["ratio_closure"]
    assert m["two_sample"]["z"] < tol.max_two_sample_z - 1.5, m["two_sample"]
    assert abs(m["two_sample"]["auc"] - 0.5) < 3 * m["two_sample"]["auc_error"]


def test_exact_shape_ratio_passes_too() -> None:
    """A +-1 sigma shape ratio (background_up / background): small ratios, the other regime of the gates."""
    toy = ToyModel()
    rng = np.random.default_rng(1)
    x_num, x_ref = toy.sample("background_up", N, rng), toy.sample("background", N, rng)
    m = _metrics(
        x_num,
        x_ref,
        toy.log_ratio("background_up", "background", x_num),
        toy.log_ratio("background_up", "background", x_ref),
    )
    assert diagnostics.check(m, diagnostics.Tolerances()) == []
    assert m["ratio_closure"]["z"] < 3.09 - 1.5 and m["two_sample"]["z"] < 3.09 - 1.5


@pytest.mark.parametrize("power", [1.05, 0.96])
def test_tempered_ratio_fails_the_ratio_closure_while_the_old_gates_pass(signal_samples, power: float) -> None:
    """``r ** 1.05`` overshoots where r is large, ``r ** 0.96`` undershoots: the 1-D marginals, the
    normalisation and the ECE all stay inside their tolerances; the closure in bins of r does not."""
    x_num, x_ref, lr_num, lr_ref = signal_samples
    m = _metrics(x_num, x_ref, power * lr_num, power * lr_ref)
    failures = diagnostics.check(m, diagnostics.Tolerances())
    assert m["max_chi2_ndf"] < 3.0 and abs(m["normalisation"] - 1) < 0.1 and m["calibration"]["ece"] < 0.05
    assert len(failures) == 1 and "bins of the learned ratio" in failures[0], failures
    assert m["ratio_closure"]["z"] > 4.0


def test_one_epoch_ensemble_fails_calibrate(tmp_path: Path) -> None:
    """The stage itself: a 2-member ensemble trained for one epoch fails, and its error names the new gates."""
    samples = tmp_path / "samples"
    samples.mkdir()
    for process in ("signal", "reference"):
        must(
            run_step(
                "generate",
                {"process": process, "seed": 5, "n_events": 5_000, "n_holdout": 10_000},
                outputs={"events": samples / f"{process}.e.parquet", "holdout": samples / f"{process}.h.parquet"},
            )
        )
    ensemble, report = tmp_path / "ensemble", tmp_path / "report"
    ensemble.mkdir()
    report.mkdir()
    must(
        run_step(
            "train-ratio",
            {"label": "signal", "members": 2, "hidden": [32, 32], "max_epochs": 1, "seed": 1},
            [("numerator", samples / "signal.e.parquet"), ("reference", samples / "reference.e.parquet")],
            {"ensemble": ensemble},
        )
    )
    result = run_step(
        "calibrate",
        {"max_chi2_ndf": 1000.0, "max_norm_deviation": 1.0, "max_ece": 1.0},  # only the new gates are live
        [
            ("ensemble", ensemble),
            ("numerator", samples / "signal.h.parquet"),
            ("reference", samples / "reference.h.parquet"),
        ],
        {"report": report},
    )
    assert result.exit_code != 0
    assert "bins of the learned ratio" in result.stderr and "(and 1 more)" in result.stderr, result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["passed"] is False
    assert metrics["ratio_closure"]["z"] > 10 and metrics["two_sample"]["z"] > 10
    assert (report / "closure_signal.png").stat().st_size > 10_000
