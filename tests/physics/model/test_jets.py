"""The exact Hessian (``Likelihood.jet``) and the Newton fits built on it agree with the gradient path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data

POINTS = (
    {"mu": 1.2, "alpha": 0.3, "bkg_norm": -0.4},
    {"mu": 0.8, "alpha": -1.7, "bkg_norm": 1.2},  # alpha on code 4's exponential branch
    {"mu": 0.5, "alpha": 1.3, "bkg_norm": 0.0},
)


def _rich_model(toy_model: Any, toy_tables: dict[str, Table]) -> Likelihood:
    """The toy plus a second shape systematic and mcstat on both processes (the general, many-process path)."""
    data = toy_model.model_dump(by_alias=True, exclude_none=True)
    data["parameters"]["tilt"] = {"constraint": "gaussian"}
    data["ratios"]["tilt_up"] = {"numerator": "tilt_up", "denominator": "signal"}
    data["ratios"]["tilt_down"] = {"numerator": "tilt_down", "denominator": "signal"}
    processes = data["regions"]["SR"]["processes"]
    processes["signal"].setdefault("modifiers", []).extend(
        [{"type": "shapesys", "parameter": "tilt", "up": "tilt_up", "down": "tilt_down"}, {"type": "mcstat"}]
    )
    processes["background"]["modifiers"].append({"type": "mcstat"})
    tables = {}
    for name, t in toy_tables.items():
        cols = dict(t.columns)
        cols["logr_background_std"] = 0.02 + 0.01 * np.abs(cols["x0"])
        cols["logr_signal_std"] = 0.03 + 0.01 * np.abs(cols["x1"])
        cols["logr_tilt_up"] = 0.1 * np.tanh(cols["x2"])
        cols["logr_tilt_down"] = -0.08 * np.tanh(cols["x2"])
        tables[name] = Table(name, cols, t.meta)
    return Likelihood(model_from_data(data), tables)


@pytest.mark.parametrize("rich", [False, True])
def test_exact_hessian_matches_finite_differences(toy_model, toy_tables, rich: bool) -> None:
    like = _rich_model(toy_model, toy_tables) if rich else Likelihood(toy_model, toy_tables)
    free = list(range(len(like.parameters.names)))
    for point in POINTS:
        x = like.point({**point, **({"tilt": -0.6} if rich else {})}).numpy()
        if rich:
            x[-2:] = (0.7, -1.2)  # the two mcstat parameters
        jet = like.jet(x)
        assert jet is not None
        value, grad = like.value_and_grad(x)
        assert jet[0] == pytest.approx(value, rel=1e-13, abs=1e-9)
        np.testing.assert_allclose(jet[1], grad, rtol=1e-10, atol=1e-9)
        numeric = fit.finite_difference_hessian(like, x, free)
        np.testing.assert_allclose(jet[2], numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_newton_fit_agrees_with_the_gradient_path(toy_model, toy_tables) -> None:
    """Same minimum, same Hessian errors and same profile t as L-BFGS-B + finite differences, in fewer passes."""
    like = Likelihood(toy_model, toy_tables)
    slow = like.copy(exact_hessian=False)
    fast_best, slow_best = fit.minimise(like), fit.minimise(slow)
    assert fast_best.converged and fast_best.calls < slow_best.calls
    assert fast_best.twice_nll <= slow_best.twice_nll + 1e-8
    _, fast_cov = fit.covariance(like, fast_best.x)
    _, slow_cov = fit.covariance(slow, slow_best.x)
    errors = np.sqrt(np.diag(fast_cov))
    np.testing.assert_allclose(fast_best.x, slow_best.x, atol=1e-4 * errors.min())  # < 1e-4 sigma
    np.testing.assert_allclose(errors, np.sqrt(np.diag(slow_cov)), rtol=1e-5)
    fast, plain = fit.Profile(like, fast_best), fit.Profile(slow, slow_best)
    for mu in (0.2, 0.6, 1.4):
        assert fast.t({"mu": mu}) == pytest.approx(plain.t({"mu": mu}), abs=1e-6)


def test_newton_hands_over_at_an_active_bound(toy_model, toy_tables) -> None:
    """A bound the minimum sits on ends the Newton steps; L-BFGS-B finishes at the same point as before."""
    like = Likelihood(toy_model, toy_tables)
    bounds = {"mu": (1.5, 4.0)}  # the unconstrained minimum is below 1.5
    fast = fit.minimise(like, bounds=bounds)
    slow = fit.minimise(like.copy(exact_hessian=False), bounds=bounds)
    assert fast.x[0] == pytest.approx(1.5) and fast.twice_nll == pytest.approx(slow.twice_nll, abs=1e-8)


def test_exact_method_has_no_jet(toy_model, toy_tables) -> None:
    from nsbiflow.physics.truth import truth_from_spec

    like = Likelihood(toy_model, toy_tables, "exact", truth_from_spec("toy", {}))
    assert like.jet(like.parameters.init) is None
