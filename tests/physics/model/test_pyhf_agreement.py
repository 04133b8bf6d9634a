"""A binned-only model gives pyhf's numbers: best fit, errors, intervals, CLs, and the Asimov construction."""

from __future__ import annotations

import math

import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.analysis import analyse
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.histogram import to_pyhf
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data

EDGES = [0.0, 1.0, 2.0, 3.0, 4.0]


def _sample(name: str, counts: list[float]) -> Table:
    # one event per bin centre, weighted by the bin content: the histogram is exactly ``counts``
    centres = np.array([0.5, 1.5, 2.5, 3.5])
    return Table(name, {"m": centres, "weight": np.array(counts, dtype=np.float64)})


def _model() -> dict:
    return {
        "apiVersion": "nsbiflow/v1",
        "kind": "Model",
        "metadata": {"name": "binned"},
        "parameters": {
            "mu": {"poi": True, "init": 1.0, "bounds": [0.0, 10.0]},
            "k_bkg": {"constraint": "none", "init": 1.0, "bounds": [0.1, 5.0]},
            "shape": {},
            "norm": {},
            "lumi": {"constraint": {"type": "gaussian", "sigma": 0.02}, "init": 1.0, "bounds": [0.8, 1.2]},
        },
        "regions": {
            "SR": {
                "type": "binned",
                "observable": "m",
                "edges": EDGES,
                "data": {"counts": [58, 62, 41, 30]},
                "processes": {
                    "signal": {
                        "sample": "sig",
                        "yield": {"sum_of_weights": True},
                        "coefficient": "mu",
                        "modifiers": [{"type": "lumi", "parameter": "lumi"}],
                    },
                    "bkg": {
                        "sample": "bkg",
                        "yield": {"sum_of_weights": True},
                        "modifiers": [
                            {"type": "histosys", "parameter": "shape", "up": "bkg_up", "down": "bkg_down"},
                            {"type": "normsys", "parameter": "norm", "lo": 0.9, "hi": 1.15},
                            {"type": "normfactor", "parameter": "k_bkg"},
                            {"type": "lumi", "parameter": "lumi"},
                        ],
                    },
                },
            },
            "CR": {
                "type": "binned",
                "observable": "m",
                "edges": [0.0, 2.0, 4.0],
                "data": {"counts": [205, 190]},
                "processes": {
                    "bkg": {
                        "sample": "bkg_cr",
                        "yield": {"sum_of_weights": True},
                        "modifiers": [{"type": "normfactor", "parameter": "k_bkg"}],
                    }
                },
            },
        },
    }


@pytest.fixture(scope="module")
def pair() -> tuple[Likelihood, pyhf.pdf.Model, np.ndarray]:
    tables = {
        "sig": _sample("sig", [2.0, 8.0, 12.0, 6.0]),
        "bkg": _sample("bkg", [50.0, 45.0, 30.0, 20.0]),
        "bkg_up": _sample("bkg_up", [55.0, 47.0, 29.0, 17.0]),
        "bkg_down": _sample("bkg_down", [46.0, 42.0, 32.0, 22.0]),
        "bkg_cr": Table("bkg_cr", {"m": np.array([1.0, 3.0]), "weight": np.array([200.0, 200.0])}),
    }
    like = Likelihood(model_from_data(_model()), tables)
    spec, reason = to_pyhf(like)
    assert spec is not None, reason
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    ws = pyhf.Workspace(spec)
    model = ws.model()
    return like, model, np.asarray(ws.data(model))


def _pyhf_t(model: pyhf.pdf.Model, data: np.ndarray, mu: float) -> float:
    best = float(pyhf.infer.mle.fit(data, model, return_fitted_val=True)[1])
    return float(pyhf.infer.mle.fixed_poi_fit(mu, data, model, return_fitted_val=True)[1]) - best


def test_best_fit_and_twice_nll_differences_match_pyhf(pair) -> None:
    like, model, data = pair
    pars = pyhf.infer.mle.fit(data, model)
    ours = fit.minimise(like)
    for name in ("mu", "k_bkg", "shape", "norm", "lumi"):
        j = model.config.par_slice(name).start
        assert ours.x[like.index[name]] == pytest.approx(float(pars[j]), abs=1e-3), name
    # the profile likelihood ratio at a few points (constants cancel)
    prof = fit.Profile(like, ours)
    for mu in (0.0, 0.5, 2.0):
        assert prof.t({"mu": mu}) == pytest.approx(_pyhf_t(model, data, mu), abs=1e-3)


def test_intervals_and_cls_match_pyhf(pair) -> None:
    like, model, data = pair
    result = analyse(like, n_scan=5, with_impacts=False)
    mu = result["pois"]["mu"]
    best = float(pyhf.infer.mle.fit(data, model)[model.config.poi_index])
    for key, crit in (("interval_68", 1.0), ("interval_95", 3.841458820694124)):
        lo = (
            brentq(lambda m, c=crit: _pyhf_t(model, data, m) - c, 0.0, best)
            if _pyhf_t(model, data, 0.0) > crit
            else 0.0
        )
        hi = brentq(lambda m, c=crit: _pyhf_t(model, data, m) - c, best, 10.0)
        assert mu[key]["lo"] == pytest.approx(lo, abs=1e-3)
        assert mu[key]["hi"] == pytest.approx(hi, abs=1e-3)
    data_p, asimov_p = fit.cls_profiles(like, "mu")
    for test_mu in (1.0, 2.0, 3.0):
        ours = fit.cls_value(data_p, asimov_p, "mu", test_mu)
        theirs = float(pyhf.infer.hypotest(test_mu, data, model, test_stat="qtilde"))
        assert ours == pytest.approx(theirs, abs=1e-3)
    obs_limit = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=None, rtol=1e-6)[0]
    assert mu["cls_upper_limit_95"] == pytest.approx(float(obs_limit), abs=1e-3)


def test_asimov_construction_matches_pyhf(pair) -> None:
    """Background-only Asimov at the conditional fit, auxiliary data moved to the fitted nuisances."""
    like, model, data = pair
    init = model.config.suggested_init()
    bounds = model.config.suggested_bounds()
    fixed = model.config.suggested_fixed()
    theirs = pyhf.infer.calculators.generate_asimov_data(0.0, data, model, init, bounds, fixed)
    _, asimov = fit.cls_profiles(like, "mu")
    n_main = sum(model.config.channel_nbins.values())
    main = np.concatenate([r.counts.numpy() for r in asimov.like.regions])
    order = [model.config.channels.index(r.name) for r in asimov.like.regions]
    slices = np.split(theirs[:n_main], np.cumsum([model.config.channel_nbins[c] for c in model.config.channels])[:-1])
    assert main == pytest.approx(np.concatenate([slices[k] for k in order]), rel=1e-4)
    aux_theirs = dict(zip([p for p in model.config.auxdata_order], theirs[n_main:], strict=False))
    for name in ("shape", "norm", "lumi"):
        k = list(like.parameters.constrained).index(like.index[name])
        assert float(asimov.like.aux[k]) == pytest.approx(float(aux_theirs[name]), abs=1e-4)
    assert math.isfinite(float(asimov.best.twice_nll))
