"""One method's complete result: best fit, errors, correlations, pulls, scans, intervals, CLs, Z0, impacts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.threads import single_thread


def analyse(
    like: Likelihood,
    n_scan: int = 41,
    scan_2d: tuple[str, str] | None = None,
    n_scan_2d: int = 11,
    with_cls: bool = True,
    with_impacts: bool = True,
    use_gradient: bool = True,
) -> dict[str, Any]:
    """Everything the results JSON reports for one likelihood (see ``results.MethodResult``)."""
    with single_thread():
        return _analyse(like, n_scan, scan_2d, n_scan_2d, with_cls, with_impacts, use_gradient)


def _analyse(
    like: Likelihood,
    n_scan: int,
    scan_2d: tuple[str, str] | None,
    n_scan_2d: int,
    with_cls: bool,
    with_impacts: bool,
    use_gradient: bool,
) -> dict[str, Any]:
    ps = like.parameters
    best = fit.minimise(like, use_gradient=use_gradient)
    curvature: list[fit.Curvature] = []
    free, cov = fit.covariance(like, best.x, curvature)
    # with the exact Hessian the profile fits take exact Newton steps; else chord steps with the best fit's
    profile = fit.Profile(like, best, use_gradient, curvature=None if curvature[0].exact else curvature[0])
    errors = {ps.names[i]: math.sqrt(max(cov[a, a], 0.0)) for a, i in enumerate(free)}
    pois: dict[str, Any] = {}
    for poi in ps.pois:
        if ps.fixed[like.index[poi]]:
            continue
        sigma = errors[poi]
        i68 = fit.interval(profile, poi, fit.LEVEL_68, sigma)
        i95 = fit.interval(profile, poi, 0.95, sigma)
        lo, hi = ps.bounds[like.index[poi]]
        grid = np.linspace(lo, hi, n_scan)
        scan = [profile.t({poi: float(v)}) for v in grid]
        entry: dict[str, Any] = {
            "interval_68": i68.as_dict(),
            "interval_95": i95.as_dict(),
            "width_68": i68.hi - i68.lo,
            "width_95": i95.hi - i95.lo,
            "scan": {"values": [float(v) for v in grid], "t": scan},
            "z0": fit.z0(profile, poi),
            "cls_upper_limit_95": None,
        }
        if with_cls:
            data, asimov = fit.cls_profiles(like, poi, use_gradient, curvature[0])
            entry["cls_upper_limit_95"] = fit.upper_limit(data, asimov, poi)
        pois[poi] = entry
    best = profile.best  # a profile may have found a lower minimum
    for poi, entry in pois.items():
        entry["hat"] = float(best.x[like.index[poi]])
        entry["error"] = errors[poi]
    constrained = {
        int(i): (float(s), float(a)) for i, s, a in zip(ps.constrained, ps.sigma, like.aux.numpy(), strict=True)
    }
    parameters = {}
    for i, name in enumerate(ps.names):
        item: dict[str, Any] = {"value": float(best.x[i]), "error": errors.get(name), "fixed": bool(ps.fixed[i])}
        if i in constrained and name in errors:
            sigma, aux = constrained[i]
            item["pull"] = (float(best.x[i]) - aux) / sigma
            item["constraint"] = errors[name] / sigma
        parameters[name] = item
    sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
    corr = cov / np.outer(sd, sd)
    result: dict[str, Any] = {
        "twice_nll": best.twice_nll,
        "converged": best.converged,
        "nonpositive_density_events": best.nonpositive,
        "profile_found_lower_minimum": profile.replaced_best,
        "parameters": parameters,
        "pois": pois,
        "correlation": {"names": [ps.names[i] for i in free], "matrix": corr.tolist()},
        "impacts": [],
        "scan_2d": None,
    }
    if with_impacts and ps.pois:
        result["impacts"] = fit.impacts(like, best, free, cov, ps.pois[0], use_gradient, curvature[0])
    if scan_2d is not None:
        a, b = scan_2d
        ga = np.linspace(*ps.bounds[like.index[a]], n_scan_2d)
        gb = np.linspace(*ps.bounds[like.index[b]], n_scan_2d)
        t2 = [[profile.t({a: float(x), b: float(y)}) for y in gb] for x in ga]
        result["scan_2d"] = {"x": a, "y": b, "x_values": ga.tolist(), "y_values": gb.tolist(), "t": t2}
    return result
