"""Pseudo-experiments without training: held-out resampling, the toy's generator, the summary and its refusals.

The samples carry the toy's exact log-ratios (what perfect ensembles would give), so the NSBI likelihood is the
true one and the toys' figures must follow their distributions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nsbiflow.physics.checks_summary import collect_checks, render
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.pseudo import experiments
from nsbiflow.physics.pseudo.generators import expected_counts, generator, holdout_generator
from nsbiflow.physics.pseudo.parallel import FitPool
from nsbiflow.physics.toy_model import ToyModel
from nsbiflow.physics.truth import truth_from_spec
from tests.physics.model.conftest import TOY_MODEL, toy_table

TOY = ToyModel()


def _setup():
    rng = np.random.default_rng(11)
    tables = {p: toy_table(TOY, p, TOY.sample(p, 6000, rng)) for p in ("signal", "background", "reference")}
    for p in ("background_up", "background_down"):
        tables[p] = toy_table(TOY, p, TOY.sample(p, 6000, rng))
    tables["observed"] = toy_table(TOY, "observed", TOY.sample_mixture(100, 1000, rng))
    model = load_model(TOY_MODEL)
    return model, tables, Likelihood(model, tables, "nsbi")


def build_nsbi() -> dict[str, Likelihood]:
    """A worker's likelihoods (the same seeded samples as the fixture's)."""
    return {"nsbi": _setup()[2]}


@pytest.fixture(scope="module")
def setup():
    return _setup()


def test_holdout_toys_have_poisson_counts_and_fit_without_bias(setup) -> None:
    model, tables, like = setup
    values = {"mu": 1.0, "alpha": 1.0, "bkg_norm": 1.0}
    draw = holdout_generator(model, like, tables, values)
    expected = expected_counts(like, values)["SR"]
    assert math.isclose(expected["background"], 1050.0) and math.isclose(expected["signal"], 100.0)
    rng = np.random.default_rng(3)
    toys = [draw(rng) for _ in range(30)]
    counts = np.array([len(t["SR"]) for t in toys])
    assert abs(counts.mean() - 1150.0) < 4 * math.sqrt(1150.0 / 30), counts.mean()
    assert all(np.all(t["SR"].weights == 1.0) and "logr_signal" in t["SR"].columns for t in toys)
    summary = experiments.summarise(experiments.fit_toys(like, toys, values, seed=4))
    assert summary["failed"] == 0 and summary["toys"] == 30
    assert abs(summary["bias"]) < 3.5 * summary["bias_error"], summary["bias"]
    assert 0.3 < summary["coverage_68"]["value"] <= 1.0


def test_worker_processes_fit_the_same_toys_to_the_same_results(setup) -> None:
    """Chunks in two spawned workers continue the serial auxiliary-measurement stream: identical figures."""
    model, tables, like = setup
    values = {"mu": 1.0, "alpha": 1.0, "bkg_norm": -1.0}
    draw = holdout_generator(model, like, tables, values)
    rng = np.random.default_rng(5)
    toys = [draw(rng) for _ in range(6)]
    serial = experiments.fit_toys(like, toys, values, seed=9)
    with FitPool(build_nsbi, workers=2) as pool:
        parallel = pool.fit_all(["nsbi"], toys, values, seed=9)["nsbi"]  # 3 chunks of 2 toys
    assert serial.failed == parallel.failed == 0 and len(parallel.mu_hat) == 6
    assert parallel.mu_hat == serial.mu_hat and parallel.t_true == serial.t_true and parallel.sigma == serial.sigma
    shifted = experiments.fit_toys(like, toys, values, seed=10)  # the test can fail: the aux draws matter
    assert shifted.t_true != serial.t_true


def test_toy_generator_draws_the_point_and_the_holdout_refuses_what_it_cannot_draw(setup) -> None:
    model, tables, like = setup
    truth = truth_from_spec("toy", {})
    draw = generator(model, truth, like, {"mu": 2.0, "alpha": 0.0, "bkg_norm": 0.0})
    sizes = [len(draw(np.random.default_rng(k))["SR"]) for k in range(20)]
    assert abs(np.mean(sizes) - 1200.0) < 4 * math.sqrt(1200.0 / 20)
    with pytest.raises(StageError, match=r"alpha=0.5.*declare a truth"):
        holdout_generator(model, like, tables, {"mu": 1.0, "alpha": 0.5})
    negative = dict(tables)
    negative["signal"] = tables["signal"].take(np.arange(len(tables["signal"])))
    negative["signal"].columns["weight"] = -np.ones(len(tables["signal"]))
    with pytest.raises(StageError, match="negative weights"):
        holdout_generator(model, like, negative, {"mu": 1.0})


def test_summary_counts_verdicts_and_keeps_failures_visible() -> None:
    metrics = {
        "label": "signal", "passed": False, "members": 8, "max_chi2_ndf": 3.4, "normalisation": 1.01,
        "calibration": {"ece": 0.01}, "tolerances": {"max_chi2_ndf": 3.0, "max_norm_deviation": 0.1, "max_ece": 0.05},
        "failures": ["closure of 'signal' in x0: chi2/ndf = 3.40 exceeds the tolerance 3 by 0.40"],
    }
    toys = {"toys_per_point": 0}
    gate = {"checks": [{"check": "bias gate mu", "what": "|bias| < 0.2 sigma", "passed": True, "numbers": "0.05"}]}
    checks = collect_checks(None, [metrics], {"max_ratio": 6.0, "outside_fraction": {"signal": 0.02}}, toys, [gate])
    text = render("Checks", checks)
    assert "0 passed" not in text and "1 passed, 1 failed, 0 warned (failed, not enforced), 2 informational." in text
    assert "| calibrate signal |" in text and "**FAIL**" in text and "exceeds the tolerance 3 by 0.40" in text
    assert "signal 2.00 %" in text and "| bias gate mu |" in text and "not run (n_toys: 0)" in text


def test_summary_renders_bias_gate_points_and_advisory_gates_as_warnings() -> None:
    """A failed bias point is FAIL when enforced and warn when not; an advisory calibrate failure is a warning."""
    point = {"name": "mu=1, alpha=1", "bias": -0.1, "bias_over_sigma": -0.5, "resolution": 0.04, "toys": 20}
    gate = {"poi": "mu", "max_bias": 0.2, "reference": "exact", "points": [{**point, "passed": False}]}
    calibrate = {
        "label": "signal",
        "passed": True,
        "tolerances": {"max_ratio_closure_z": 3.09},
        "ratio_closure": {"z": 3.5},
        "advisory_failures": ["closure of 'signal' in bins of the learned ratio: z = 3.5 exceeds 3.09"],
    }
    for enforced, verdict in ((True, "**FAIL**"), (False, "**warn** (not enforced)")):
        checks = collect_checks(None, [calibrate], None, None, [{**gate, "enforced": enforced}])
        text = render("t", checks)
        row = next(line for line in text.splitlines() if line.startswith("| bias gate at mu=1, alpha=1 |"))
        assert verdict in row and "-0.50 sigma" in row and "vs the exact fit" in row
        calibrate_row = next(line for line in text.splitlines() if line.startswith("| calibrate signal |"))
        assert "**warn**" in calibrate_row and "log-r closure z 3.50" in calibrate_row
