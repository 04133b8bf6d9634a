"""The binned comparison: a histogram of one observable as a pyhf HistFactory workspace, fit with pyhf.

Signal and background templates are the simulated samples' weighted histograms scaled to the expected
yields; the background's +-1 sigma detector-scale templates enter as a ``histosys`` modifier (Gaussian
constraint) and the signal strength ``mu`` as a ``normfactor``. The workspace JSON is a stage output, so
``pyhf cls workspace.json`` reproduces the limit.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.limits import Fit, ProfileLikelihood, Result, interval
from nsbiflow.physics.limits import z0 as z0_from_profile

FloatArray = NDArray[np.float64]


def quantile_edges(values: FloatArray, weights: FloatArray, n_bins: int) -> FloatArray:
    """Bin edges with equal weighted content of ``values``, outer edges opened to +-inf-like values."""
    order = np.argsort(values)
    cw = np.cumsum(weights[order])
    cw /= cw[-1]
    inner = np.interp(np.linspace(0, 1, n_bins + 1)[1:-1], cw, values[order])
    return np.concatenate([[-1e30], np.unique(inner), [1e30]])


def histogram(values: FloatArray, weights: FloatArray, edges: FloatArray) -> FloatArray:
    """Weighted counts per bin."""
    return np.histogram(values, bins=edges, weights=weights)[0].astype(np.float64)


def binned_sigma_mu(signal: FloatArray, background: FloatArray, up: FloatArray, down: FloatArray, mu: float) -> float:
    """Expected uncertainty on ``mu`` (Fisher information, alpha profiled) of a binned measurement."""
    lam = np.maximum(mu * signal + background, 1e-12)
    grads = np.stack([signal, (up - down) / 2.0])
    info = (grads / lam) @ grads.T
    info[1, 1] += 1.0
    return float(np.sqrt(np.linalg.inv(info)[0, 0]))


def workspace(
    observed: Sequence[float] | FloatArray,
    signal: Sequence[float] | FloatArray,
    background: Sequence[float] | FloatArray,
    background_up: Sequence[float] | FloatArray,
    background_down: Sequence[float] | FloatArray,
    mu_bounds: tuple[float, float],
    channel: str = "histogram",
) -> dict[str, Any]:
    """A HistFactory workspace (pyhf JSON schema 1.0.0) with a ``mu`` normfactor and an ``alpha`` histosys."""
    floor = 1e-9
    return {
        "version": "1.0.0",
        "channels": [
            {
                "name": channel,
                "samples": [
                    {
                        "name": "signal",
                        "data": [max(float(v), floor) for v in signal],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {
                        "name": "background",
                        "data": [max(float(v), floor) for v in background],
                        "modifiers": [
                            {
                                "name": "alpha",
                                "type": "histosys",
                                "data": {
                                    "hi_data": [max(float(v), floor) for v in background_up],
                                    "lo_data": [max(float(v), floor) for v in background_down],
                                },
                            }
                        ],
                    },
                ],
            }
        ],
        "observations": [{"name": channel, "data": [float(v) for v in observed]}],
        "measurements": [
            {
                "name": "toy",
                "config": {"poi": "mu", "parameters": [{"name": "mu", "bounds": [list(mu_bounds)], "inits": [1.0]}]},
            }
        ],
    }


def for_limits(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of the workspace with ``mu`` bounded below at zero, as CLs with q~_mu (``pyhf cls``) expects."""
    bounded = copy.deepcopy(spec)
    parameter = bounded["measurements"][0]["config"]["parameters"][0]
    parameter["bounds"] = [[0.0, float(parameter["bounds"][0][1])]]
    return bounded


def observed_upper_limit(data: Any, model: Any, level: float = 0.05, rtol: float = 1e-4) -> float:
    """The observed asymptotic CLs upper limit (q~_mu) of a pyhf model: pyhf's ``toms748_scan``, observed only.

    pyhf's ``upper_limit`` also solves for the five expected-band limits, which the analysis does not report;
    solving only the observed one needs about a fifth of the hypothesis tests. Same root finder, bracket start
    and tolerances as pyhf's, so the value agrees with ``upper_limit(...)[0]`` within ``rtol``.
    """
    import pyhf
    from scipy.optimize import toms748

    low, high = (float(b) for b in model.config.suggested_bounds()[model.config.poi_index])
    cache: dict[float, float] = {}

    def excess(mu: float) -> float:
        if mu not in cache:
            cache[mu] = float(pyhf.infer.hypotest(mu, data, model, test_stat="qtilde")) - level
        return cache[mu]

    for _ in range(8):  # like pyhf: widen the bracket until CLs falls below the level
        if excess(high) < 0:
            break
        high *= 2
    else:
        raise StageError(f"histogram CLs limit: CLs stays above {level} up to mu = {high}; raise mu_bounds")
    return float(toms748(excess, low, high, k=2, xtol=2e-12, rtol=rtol))


def analyse_workspace(spec: dict[str, Any], n_scan: int = 61) -> Result:
    """Fit the workspace with pyhf (minuit optimizer): profile scan, intervals, CLs upper limit, Z0."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    ws = pyhf.Workspace(spec)
    model = ws.model()
    data = np.asarray(ws.data(model), dtype=np.float64)
    poi = model.config.poi_index
    alpha_index = model.config.par_order.index("alpha")
    bounds = tuple(model.config.suggested_bounds()[poi])
    mu_bounds = (float(bounds[0]), float(bounds[1]))

    def twice_nll_fixed(mu: float) -> tuple[float, float]:
        pars, val = pyhf.infer.mle.fixed_poi_fit(mu, data, model, return_fitted_val=True)
        return float(val), float(pars[alpha_index])

    def unused(mu: float, alpha: float) -> float:
        raise NotImplementedError

    pl = ProfileLikelihood(unused, mu_bounds, profiler=twice_nll_fixed)
    pars, val = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    best = Fit(float(pars[poi]), float(pars[alpha_index]), float(val))
    grid = np.linspace(*mu_bounds, n_scan)
    t = [pl.profile(float(mu)) - best.twice_nll for mu in grid]
    # q~_mu (CLs) is defined for mu >= 0: the limit uses the same workspace with mu bounded below at zero
    bounded_ws = pyhf.Workspace(for_limits(spec))
    bounded_model = bounded_ws.model()
    observed_limit = observed_upper_limit(np.asarray(bounded_ws.data(bounded_model)), bounded_model)
    return Result(
        mu_hat=best.mu,
        alpha_hat=best.alpha,
        interval_68=interval(pl, best, 0.6826894921370859),
        interval_95=interval(pl, best, 0.95),
        cls_upper_limit_95=observed_limit,
        z0=z0_from_profile(pl, best),
        scan_mu=[float(m) for m in grid],
        scan_t=[float(v) for v in t],
    )
