"""Fits of a ``Likelihood``: best fit with Hessian errors, profiles, intervals, CLs, Z0, pulls, impacts.

Minimisation is Newton's method with the likelihood's exact Hessian (``Likelihood.jet``: one pass over the
events gives value, gradient and Hessian) where it is available -- the NSBI method's unbinned and binned
regions -- converging in a few passes; otherwise (the exact method, a bound that becomes active, a step that
fails) scipy's L-BFGS-B on the free parameters with the autograd gradient (bounded, and fast with hundreds of
parameters). The Hessian at the minimum is the exact one where available, else the finite difference of the
exact gradient (2N gradient calls, which also works for the exact method, whose truth densities are
differentiated numerically).
Asymptotic formulae (Cowan, Cranmer, Gross, Vitells 2011) with pyhf's conventions: ``t_mu`` crossings of the
chi2(1) quantiles for intervals; ``q~_mu`` with the background-only Asimov dataset built at the conditional
fit to the data, *auxiliary measurements moved to the fitted nuisance values* (pyhf's construction), for CLs.
Profile fits start from the nearest already profiled point (or the global best), and a profile that finds a
lower minimum than the global fit replaces it (reported), so a scan never sees a negative ``t``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import brentq, minimize
from scipy.stats import chi2, norm

from nsbiflow.physics.model.likelihood import Likelihood

FloatArray = NDArray[np.float64]
LEVEL_68 = float(chi2.cdf(1.0, 1))


@dataclass
class Minimum:
    """A (conditional) minimum of ``-2 ln L``."""

    x: FloatArray
    twice_nll: float
    converged: bool
    calls: int = 0
    nonpositive: int = 0


@dataclass
class Curvature:
    """The Hessian ``H`` of ``-2 ln L`` at the best fit over parameter indices ``free``: a profile fit's Newton
    steps use it (a chord method), so each warm-started profile point costs a few gradient calls."""

    free: list[int]
    hessian: FloatArray
    exact: bool = False  # the likelihood's exact Hessian (then profile fits use it at every iterate instead)
    _inverse: dict[tuple[int, ...], FloatArray] = field(default_factory=dict)

    def inverse(self, free: Sequence[int]) -> FloatArray | None:
        """``H^-1`` restricted to ``free`` (``None`` if a parameter is unknown or the block is singular)."""
        key = tuple(free)
        if key not in self._inverse:
            pos = {i: a for a, i in enumerate(self.free)}
            if any(i not in pos for i in free):
                return None
            block = self.hessian[np.ix_([pos[i] for i in free], [pos[i] for i in free])]
            try:
                self._inverse[key] = np.asarray(np.linalg.inv(block), dtype=np.float64)
            except np.linalg.LinAlgError:
                return None
        return self._inverse[key]


def _newton(
    like: Likelihood, x0: FloatArray, free: NDArray[np.int64], lims: Sequence[tuple[float, float]], h_inv: FloatArray
) -> tuple[FloatArray, int] | None:
    """Bounded Newton iterations with a fixed inverse Hessian and backtracking; ``None`` when they do not converge.

    Hand-written because no minimiser in scipy/iminuit takes a known Hessian as its starting curvature with box
    bounds; L-BFGS-B rebuilds it from scratch at every profile point (~40 gradient calls with 50 parameters).
    """
    lo = np.array([a for a, _ in lims])
    hi = np.array([b for _, b in lims])
    x = x0.copy()
    f, g = like.value_and_grad(x)
    calls = 1
    for _ in range(30):
        step = -h_inv @ g[free]
        decrement = float(-g[free] @ step)
        if decrement < 0:  # not a descent direction: leave it to L-BFGS-B
            return None
        if decrement < 2e-9:
            return x, calls
        t = 1.0
        while True:
            trial = x.copy()
            trial[free] = np.clip(x[free] + t * step, lo, hi)
            ft, gt = like.value_and_grad(trial)
            calls += 1
            if ft <= f - 1e-4 * t * decrement:
                break
            t *= 0.5
            if t < 1e-3:
                return None
        at_bound = np.any((trial[free] <= lo) | (trial[free] >= hi))
        x, f, g = trial, ft, gt
        if at_bound:  # a bound is active: projected steps are not Newton steps any more
            return None
    return None


def _newton_step(h: FloatArray, g: FloatArray) -> tuple[FloatArray, bool]:
    """``-H^-1 g`` and whether ``H`` was positive definite; else Levenberg-damped until it is."""
    try:
        c = np.linalg.cholesky(h)
        return -np.linalg.solve(c.T, np.linalg.solve(c, g)), True
    except np.linalg.LinAlgError:
        pass
    scale = max(float(np.max(np.abs(np.diag(h)))), 1e-12)
    damping = 1e-6
    while damping < 1e12:
        try:
            c = np.linalg.cholesky(h + damping * scale * np.eye(len(g)))
            return -np.linalg.solve(c.T, np.linalg.solve(c, g)), False
        except np.linalg.LinAlgError:
            damping *= 10.0
    return -g / scale, False


def _newton_exact(
    like: Likelihood, x0: FloatArray, free: NDArray[np.int64], lims: Sequence[tuple[float, float]]
) -> tuple[FloatArray, float, int] | None:
    """Newton iterations with the exact Hessian at every iterate, damped where it is not positive definite, with
    backtracking; ``None`` when the likelihood has no exact Hessian or the iterations do not converge cleanly.

    Hand-written because scipy's Hessian-using minimisers either take no box bounds (``trust-exact``,
    ``trust-ncg``) or are interior-point methods needing many more passes (``trust-constr``), and they stop on
    a gradient norm, which is not scale-free; the Newton decrement ``g' H^-1 g`` (in units of ``-2 ln L``) is.
    """
    lo = np.array([a for a, _ in lims])
    hi = np.array([b for _, b in lims])
    x = x0.copy()
    jet = like.jet(x)
    if jet is None:
        return None
    f, g, h = jet
    calls = 1
    for _ in range(50):
        step, exact = _newton_step(h[np.ix_(free, free)], g[free])
        decrement = float(-g[free] @ step)
        if exact and decrement < 2e-9:
            return x, f, calls
        if decrement < 0:
            return None
        t = 1.0
        while True:
            trial = x.copy()
            trial[free] = np.clip(x[free] + t * step, lo, hi)
            found = like.jet(trial)
            calls += 1
            if found is None:
                return None
            # a tiny decrement is below the value's rounding: the quadratic model is then trusted as it is
            if found[0] <= f - 1e-4 * t * decrement or (exact and decrement < 1e-6 and found[0] <= f + 1e-6):
                break
            t *= 0.5
            if t < 1e-4:
                return None
        if np.any((trial[free] <= lo) | (trial[free] >= hi)):  # an active bound: leave it to L-BFGS-B
            return None
        x, (f, g, h) = trial, found
    return None


def minimise(
    like: Likelihood,
    fixed: Mapping[str, float] | None = None,
    start: FloatArray | None = None,
    use_gradient: bool = True,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    curvature: Curvature | None = None,
) -> Minimum:
    """Minimise over the free parameters (model-fixed ones and ``fixed`` held).

    With the gradient: given ``curvature``, Newton steps with that fixed Hessian are tried first (cheap
    gradient-only calls: what toy fits starting at the truth want); then Newton steps with the exact Hessian
    (where the likelihood has one: quadratic convergence, what a fit from afar or a large model wants);
    L-BFGS-B from ``start`` finishes whenever they do not converge cleanly (an active bound, a bad step).
    """
    ps = like.parameters
    x0 = np.array(ps.init if start is None else start, dtype=np.float64)
    mask = ~ps.fixed.copy()
    for name, value in (fixed or {}).items():
        i = like.index[name]
        x0[i] = value
        mask[i] = False
    free = np.flatnonzero(mask)
    lims = [bounds[ps.names[i]] if bounds and ps.names[i] in bounds else ps.bounds[i] for i in free]
    x0[free] = [min(max(x0[i], lo), hi) for i, (lo, hi) in zip(free, lims, strict=True)]
    calls = 0

    def full(z: FloatArray) -> FloatArray:
        x = x0.copy()
        x[free] = z
        return x

    if len(free) == 0:
        return Minimum(x0, like.value(x0), True)

    if use_gradient and curvature is not None:
        h_inv = curvature.inverse([int(i) for i in free])
        newton = _newton(like, x0, free, lims, h_inv) if h_inv is not None else None
        if newton is not None:
            x, calls = newton
            tensor, bad = like.evaluate(torch.as_tensor(x))
            return Minimum(x, float(tensor), True, calls, bad)

    if use_gradient:
        exact = _newton_exact(like, x0, free, lims)
        if exact is not None:
            return Minimum(exact[0], exact[1], True, exact[2], 0)

    if use_gradient:

        def f(z: FloatArray) -> tuple[float, FloatArray]:
            nonlocal calls
            calls += 1
            v, g = like.value_and_grad(full(z))
            return v, g[free]

        res = minimize(
            f,
            x0[free],
            jac=True,
            method="L-BFGS-B",
            bounds=lims,
            options={"ftol": 1e-13, "gtol": 1e-7, "maxiter": 5000},
        )
    else:

        def f0(z: FloatArray) -> float:
            nonlocal calls
            calls += 1
            return like.value(full(z))

        res = minimize(
            f0, x0[free], method="L-BFGS-B", bounds=lims, options={"ftol": 1e-13, "gtol": 1e-7, "maxiter": 5000}
        )
    x = full(np.asarray(res.x))
    final, bad = like.evaluate(torch.as_tensor(x))
    return Minimum(x, float(final), bool(res.success), calls, bad)


def hessian(like: Likelihood, x: FloatArray, free: Sequence[int]) -> FloatArray:
    """Hessian of ``-2 ln L`` over ``free``: the exact one (``Likelihood.jet``) where the likelihood has it,
    else central differences of the gradient, symmetrised."""
    jet = like.jet(x)
    if jet is not None:
        return np.asarray(jet[2][np.ix_(list(free), list(free))], dtype=np.float64)
    return finite_difference_hessian(like, x, free)


def finite_difference_hessian(like: Likelihood, x: FloatArray, free: Sequence[int]) -> FloatArray:
    """Hessian of ``-2 ln L`` over ``free`` (central differences of the gradient, 2N calls), symmetrised."""
    n = len(free)
    h = np.zeros((n, n))
    for a, i in enumerate(free):
        step = 1e-4 * max(1.0, abs(x[i]))
        lo_b, hi_b = like.parameters.bounds[i]
        up, down = x.copy(), x.copy()
        up[i] = min(x[i] + step, hi_b)
        down[i] = max(x[i] - step, lo_b)
        gu = like.value_and_grad(up)[1]
        gd = like.value_and_grad(down)[1]
        h[a] = (gu[list(free)] - gd[list(free)]) / (up[i] - down[i])
    return 0.5 * (h + h.T)


def covariance(
    like: Likelihood, x: FloatArray, curvature: list[Curvature] | None = None
) -> tuple[list[int], FloatArray]:
    """Free parameter indices and the covariance ``2 H^-1`` (``H`` of ``-2 ln L``); ``curvature`` receives ``H``."""
    free = [i for i in range(len(x)) if not like.parameters.fixed[i]]
    jet = like.jet(x)
    h = np.asarray(jet[2][np.ix_(free, free)]) if jet is not None else finite_difference_hessian(like, x, free)
    if curvature is not None:
        curvature.append(Curvature(free, h, jet is not None))
    try:
        cov = np.asarray(2.0 * np.linalg.inv(h), dtype=np.float64)
    except np.linalg.LinAlgError:
        cov = np.asarray(2.0 * np.linalg.pinv(h), dtype=np.float64)
    return free, cov


@dataclass
class Interval:
    """A confidence interval of one parameter of interest."""

    lo: float
    hi: float
    lo_clipped: bool
    hi_clipped: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"lo": self.lo, "hi": self.hi, "lo_clipped": self.lo_clipped, "hi_clipped": self.hi_clipped}


@dataclass
class Profile:
    """Profiles of ``-2 ln L`` in the parameters of interest, warm-started and cached."""

    like: Likelihood
    best: Minimum
    use_gradient: bool = True
    poi_bounds: Mapping[str, tuple[float, float]] | None = None
    cache: dict[tuple[tuple[str, float], ...], Minimum] = field(default_factory=dict)
    replaced_best: int = 0
    curvature: Curvature | None = None

    def at(self, values: Mapping[str, float]) -> Minimum:
        """The conditional minimum with ``values`` fixed."""
        key = tuple(sorted((k, round(float(v), 12)) for k, v in values.items()))
        if key in self.cache:
            return self.cache[key]
        start = self._nearest(values)
        m = minimise(self.like, values, start, self.use_gradient, self.poi_bounds, self.curvature)
        if m.twice_nll < self.best.twice_nll - 1e-7:
            # a lower minimum than the global fit: refit from here and use it as the best fit
            free = minimise(self.like, None, m.x, self.use_gradient, self.poi_bounds)
            self.best = free if free.twice_nll < m.twice_nll else m
            self.replaced_best += 1
        self.cache[key] = m
        return m

    def _nearest(self, values: Mapping[str, float]) -> FloatArray:
        """The start of a profile fit: the nearest profiled point (or the best fit); in one POI, the line through
        the two nearest, evaluated at the new value (a scan's next point then starts within O(step^2))."""
        idx = self.like.index
        points = [self.best.x] + [m.x for m in self.cache.values()]
        distances = [sum((x[idx[k]] - v) ** 2 for k, v in values.items()) for x in points]
        order = np.argsort(distances, kind="stable")
        nearest = points[int(order[0])]
        if len(values) != 1 or len(points) < 2:
            return nearest
        ((name, value),) = values.items()
        i = idx[name]
        other = points[int(order[1])]
        span = float(other[i] - nearest[i])
        reach = float(value - nearest[i])
        if abs(span) < 1e-12 or abs(reach) > 2 * abs(span):  # no line, or too far along it
            return nearest
        return np.asarray(nearest + (other - nearest) * (reach / span), dtype=np.float64)

    def t(self, values: Mapping[str, float]) -> float:
        """``t = -2 ln L(values, hat-hat) + 2 ln L(hat)`` (>= 0)."""
        return max(self.at(values).twice_nll - self.best.twice_nll, 0.0)


def interval(profile: Profile, poi: str, level: float, sigma: float) -> Interval:
    """Where ``t`` crosses the chi2(1) quantile of ``level``, walking out from the best fit; never raises."""
    crit = float(chi2.ppf(level, 1))
    i = profile.like.index[poi]
    lo_b, hi_b = (profile.poi_bounds or {}).get(poi, profile.like.parameters.bounds[i])
    ends: list[float] = []
    clipped: list[bool] = []
    for direction in (-1.0, 1.0):
        bound = lo_b if direction < 0 else hi_b
        mu_hat = float(profile.best.x[i])
        step = max(abs(sigma), 1e-3) * 0.5 * math.sqrt(crit)
        prev, prev_t = mu_hat, 0.0
        found = None
        for _ in range(200):
            mu = prev + direction * step
            if (mu - bound) * direction >= 0:
                mu = bound
            tv = profile.t({poi: mu}) - crit
            if tv > 0:
                found = (prev, mu)
                break
            prev, prev_t = mu, tv
            if mu == bound:
                break
        mu_hat = float(profile.best.x[i])
        if found is None:
            ends.append(bound)
            clipped.append(True)
            continue
        a, b = found
        fa, fb = profile.t({poi: a}) - crit, profile.t({poi: b}) - crit
        if fa >= 0:  # the best fit moved: the crossing is at the bracket's start
            ends.append(a)
        elif fa * fb < 0:
            ends.append(float(brentq(lambda m: profile.t({poi: m}) - crit, a, b, xtol=1e-6)))
        else:
            ends.append(b)
        clipped.append(False)
        _ = mu_hat, prev_t
    return Interval(ends[0], ends[1], clipped[0], clipped[1])


def cls_value(profile: Profile, asimov: Profile, poi: str, mu: float) -> float:
    """Asymptotic CLs of ``mu`` with ``q~_mu`` (pyhf's AsymptoticCalculator, qtilde)."""
    q = _qtilde(profile, poi, mu)
    q_a = _qtilde(asimov, poi, mu)
    sq, sq_a = math.sqrt(q), math.sqrt(max(q_a, 1e-300))
    stat = sq - sq_a if sq <= sq_a else (q - q_a) / (2.0 * sq_a)
    clsb = float(norm.sf(stat + sq_a))
    clb = float(norm.sf(stat))
    return clsb / clb if clb > 0 else 1.0


def _qtilde(profile: Profile, poi: str, mu: float) -> float:
    i = profile.like.index[poi]
    if profile.best.x[i] > mu:
        return 0.0
    return max(profile.at({poi: mu}).twice_nll - profile.best.twice_nll, 0.0)


def cls_profiles(
    like: Likelihood, poi: str, use_gradient: bool = True, curvature: Curvature | None = None
) -> tuple[Profile, Profile]:
    """Profiles for CLs: the data's and the background-only Asimov dataset's, with the POI bounded at 0.

    pyhf's construction: the Asimov data are the expectation at the conditional fit of the data with the POI
    at 0, and the auxiliary measurements are moved to that fit's nuisance values.
    """
    i = like.index[poi]
    lo, hi = like.parameters.bounds[i]
    bounds = {poi: (max(lo, 0.0), hi)}
    best = minimise(like, None, None, use_gradient, bounds)
    data = Profile(like, best, use_gradient, bounds, curvature=curvature)
    conditional = data.at({poi: max(lo, 0.0)})
    asimov_like = like.copy()
    asimov_like.set_asimov(conditional.x)
    start = conditional.x.copy()
    asimov_best = minimise(asimov_like, None, start, use_gradient, bounds)
    return data, Profile(asimov_like, asimov_best, use_gradient, bounds, curvature=curvature)


def upper_limit(data: Profile, asimov: Profile, poi: str, level: float = 0.05) -> float | None:
    """The ``mu`` where CLs = ``level`` (``None`` when not bracketed within the POI's bounds)."""
    i = data.like.index[poi]
    hi = data.like.parameters.bounds[i][1]
    lo = max(float(data.best.x[i]), 0.0) + 1e-6

    def f(m: float) -> float:
        return cls_value(data, asimov, poi, m) - level

    if f(lo) < 0 or f(hi) > 0:
        return None
    return float(brentq(f, lo, hi, xtol=1e-6, rtol=1e-8))


def z0(profile: Profile, poi: str) -> float:
    """Discovery significance ``sqrt(q0)``, ``q0 = t(poi = 0)`` (0 when the best fit is <= 0 or 0 is above the bounds).

    A lower bound just above 0 (``mu >= 1e-4``, kept so that the gradient of ``sqrt(mu)`` stays finite in the
    fits) does not hide the background-only hypothesis: the conditional fit holds the parameter *at* 0, where
    the coefficients are finite (``sqrt`` and ``log`` clamp at a tiny floor) and its own gradient is not used.
    """
    i = profile.like.index[poi]
    _, hi = profile.like.parameters.bounds[i]
    if profile.best.x[i] <= 0 or hi < 0:
        return 0.0
    q0 = profile.t({poi: 0.0})
    return math.sqrt(q0) if math.isfinite(q0) else 0.0


def impacts(
    like: Likelihood,
    best: Minimum,
    free: Sequence[int],
    cov: FloatArray,
    poi: str,
    use_gradient: bool = True,
    curvature: Curvature | None = None,
) -> list[dict[str, Any]]:
    """Post-fit impact of every nuisance parameter on ``poi``: refit with it at its best +- its error."""
    i_poi = like.index[poi]
    out = []
    for a, i in enumerate(free):
        name = like.parameters.names[i]
        if name in like.parameters.pois:
            continue
        err = math.sqrt(max(cov[a, a], 0.0))
        shifts = {}
        for side, sign in (("up", 1.0), ("down", -1.0)):
            lo, hi = like.parameters.bounds[i]
            value = min(max(best.x[i] + sign * err, lo), hi)
            m = minimise(like, {name: value}, best.x, use_gradient, None, curvature)
            shifts[side] = float(m.x[i_poi] - best.x[i_poi])
        out.append(
            {
                "parameter": name,
                "up": shifts["up"],
                "down": shifts["down"],
                "impact": max(abs(shifts["up"]), abs(shifts["down"])),
            }
        )
    return sorted(out, key=lambda d: -float(d["impact"]))
