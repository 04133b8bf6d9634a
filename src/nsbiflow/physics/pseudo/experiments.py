"""Fits of pseudo-datasets and their summary: coverage with binomial errors, pulls, bias, widths, CLs limits.

Coverage of the 68 % / 95 % intervals is ``t(mu_true) < 1`` / ``< 3.84`` (the profile-likelihood intervals by
Wilks' theorem, as ``nsbiflow.physics.model.toys.run_toys`` records them). Two pulls are reported: the Hessian
pull ``(mu_hat - mu_true) / sigma_hat`` and the likelihood-ratio pull ``sign(mu_hat - mu_true) sqrt(t(mu_true))``
(N(0, 1) by Wilks; it stays meaningful where the Hessian error does not, e.g. near a ``sqrt(mu)`` boundary).
Interval widths are the Hessian ones (2 and 3.92 sigma_hat; a profile scan per toy would cost 20x more).

CLs upper limits under the background-only hypothesis use the asymptotic ``q~_mu`` formulae of
``nsbiflow.physics.model.fit.cls_value`` per toy, with the background-only Asimov ``q~_mu,A`` of the true point
tabulated once per method (the bands' own Asimov), so a toy costs its own fits only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq
from scipy.stats import norm

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.threads import single_thread
from nsbiflow.physics.model.toys import ToyResults, run_toys

FloatArray = NDArray[np.float64]
ProgressFn = Callable[[int, int, str], None]
CHI2_95 = 3.841458820694124
BAND_QUANTILES = {"-2": norm.cdf(-2.0), "-1": norm.cdf(-1.0), "0": 0.5, "+1": norm.cdf(1.0), "+2": norm.cdf(2.0)}


def replay(
    toys: Sequence[Mapping[str, Table]], progress: ProgressFn | None, label: str
) -> Callable[[np.random.Generator], Mapping[str, Table]]:
    """A ``run_toys`` generator handing out the prepared toys in order (their events are drawn already)."""
    state = {"k": 0}

    def generate(rng: np.random.Generator) -> Mapping[str, Table]:
        k = state["k"]
        state["k"] += 1
        if progress:
            progress(k, len(toys), label)
        return toys[k]

    return generate


def fit_toys(
    like: Likelihood,
    toys: Sequence[Mapping[str, Table]],
    truth: Mapping[str, float],
    seed: int,
    progress: ProgressFn | None = None,
    label: str = "",
) -> ToyResults:
    """Fit every toy (auxiliary measurements drawn with ``seed``: the same ones for every method)."""
    return run_toys(like, replay(toys, progress, label), truth, len(toys), seed=seed)


def coverage(hits: int, n: int) -> dict[str, float]:
    """A binomial fraction and its standard error."""
    p = hits / n if n else math.nan
    return {"value": p, "error": math.sqrt(p * (1.0 - p) / n) if n else math.nan, "hits": hits, "toys": n}


def _mean_width(values: FloatArray) -> dict[str, float]:
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "mean_error": math.nan, "width": math.nan, "width_error": math.nan}
    width = float(np.std(values, ddof=1)) if n > 1 else math.nan
    return {
        "mean": float(np.mean(values)),
        "mean_error": width / math.sqrt(n) if n > 1 else math.nan,
        "width": width,
        "width_error": width / math.sqrt(2.0 * (n - 1)) if n > 1 else math.nan,
    }


def summarise(results: ToyResults) -> dict[str, Any]:
    """Coverage (68 %, 95 %), pulls, bias and widths of one method at one point (JSON-ready)."""
    t = np.asarray(results.t_true, dtype=np.float64)
    mu = np.asarray(results.mu_hat, dtype=np.float64)
    sigma = np.asarray(results.sigma, dtype=np.float64)
    n = len(t)
    hessian = (mu - results.truth) / sigma if n else np.zeros(0)
    lr = np.sign(mu - results.truth) * np.sqrt(np.clip(t, 0.0, None))
    median_sigma = float(np.median(sigma)) if n else math.nan
    bias = float(np.mean(mu) - results.truth) if n else math.nan
    return {
        "toys": n,
        "failed": results.failed,
        "coverage_68": coverage(int(np.sum(t < 1.0)), n),
        "coverage_95": coverage(int(np.sum(t < CHI2_95)), n),
        "pull": _mean_width(hessian),
        "lr_pull": _mean_width(lr),
        "bias": bias,
        "bias_error": float(np.std(mu, ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "bias_over_sigma": bias / median_sigma if n and median_sigma > 0 else math.nan,
        "mu_hat_mean": float(np.mean(mu)) if n else math.nan,
        "median_sigma": median_sigma,
        "width_68": 2.0 * median_sigma,
        "width_95": 2.0 * 1.959963984540054 * median_sigma,
        "mu_hat": [float(v) for v in mu],
        "t_true": [float(v) for v in t],
    }


# -- CLs upper limits ------------------------------------------------------------------------------------------


def _cls(q: float, q_a: float) -> float:
    """pyhf's asymptotic CLs of ``q~_mu`` given the Asimov ``q~_mu,A`` (the formula of ``fit.cls_value``; that
    function takes two Profiles, here the Asimov side is a tabulated curve)."""
    sq, sq_a = math.sqrt(max(q, 0.0)), math.sqrt(max(q_a, 1e-300))
    stat = sq - sq_a if sq <= sq_a else (q - q_a) / (2.0 * sq_a)
    clb = float(norm.sf(stat))
    return float(norm.sf(stat + sq_a)) / clb if clb > 0 else 1.0


class AsimovCurve:
    """``q~_mu,A`` of the background-only Asimov dataset at ``values``, tabulated on a grid of the POI."""

    def __init__(self, like: Likelihood, poi: str, values: Mapping[str, float], n_grid: int = 41) -> None:
        i = like.index[poi]
        lo, hi = like.parameters.bounds[i]
        self.poi, self.lo, self.hi = poi, max(lo, 0.0), hi
        self.bounds = {poi: (self.lo, hi)}
        theta = like.point({**values, poi: self.lo}).numpy()
        asimov = like.copy()
        asimov.set_asimov(theta)
        with single_thread():
            best = fit.minimise(asimov, None, theta, bounds=self.bounds)
            profile = fit.Profile(asimov, best, True, self.bounds)
            # denser near the low end, where limits live
            grid = self.lo + (hi - self.lo) * np.linspace(0.0, 1.0, n_grid) ** 2
            mu_hat = float(profile.best.x[i])  # q~: zero below the Asimov best fit (as fit._qtilde)
            self.sqrt_q = np.sqrt([profile.t({poi: float(m)}) if m > mu_hat else 0.0 for m in grid])
        self.grid = grid
        self._f = PchipInterpolator(grid, self.sqrt_q)

    def q(self, mu: float) -> float:
        """``q~_mu,A`` (interpolated)."""
        return float(self._f(min(max(mu, self.lo), self.hi))) ** 2

    def band(self, n_sigma: float, level: float = 0.05) -> float | None:
        """The asymptotic expected upper limit at ``n_sigma`` (``-1`` = the lower edge of the 68 % band)."""

        def f(mu: float) -> float:
            sq_a = math.sqrt(self.q(mu))
            sq = max(sq_a - n_sigma, 0.0)  # background-only: sqrt(q_mu) ~ N(sqrt(q_mu,A), 1)
            clb = float(norm.sf(sq - sq_a))
            return (float(norm.sf(sq)) / clb if clb > 0 else 1.0) - level

        lo = self.lo + 1e-6
        if f(lo) < 0 or f(self.hi) > 0:
            return None
        return float(brentq(f, lo, self.hi, xtol=1e-6))


def toy_upper_limit(like: Likelihood, asimov: AsimovCurve, start: FloatArray, level: float = 0.05) -> float | None:
    """The CLs upper limit of one toy (``like`` holds its data), ``None`` when not bracketed in the bounds."""
    poi = asimov.poi
    i = like.index[poi]
    best = fit.minimise(like, None, start, bounds=asimov.bounds)
    profile = fit.Profile(like, best, True, asimov.bounds)

    def f(mu: float) -> float:
        q = 0.0 if profile.best.x[i] > mu else profile.t({poi: mu})
        return _cls(q, asimov.q(mu)) - level

    lo = max(float(best.x[i]), asimov.lo) + 1e-6
    if f(lo) < 0 or f(asimov.hi) > 0:
        return None
    return float(brentq(f, lo, asimov.hi, xtol=1e-5))


def limit_toys(
    like: Likelihood,
    asimov: AsimovCurve,
    toys: Sequence[Mapping[str, Table]],
    values: Mapping[str, float],
    seed: int,
    progress: ProgressFn | None = None,
    label: str = "",
) -> dict[str, Any]:
    """CLs upper limits of background-only toys at ``values`` and the asymptotic bands next to them."""
    poi = asimov.poi
    ps = like.parameters
    with single_thread():
        theta = like.point({**values, poi: asimov.lo}).numpy()
        toy_like = like.copy()
        rng = np.random.default_rng(seed)
        limits: list[float] = []
        failed = 0
        for k, data in enumerate(toys):
            if progress:
                progress(k, len(toys), label)
            aux = rng.normal(theta[ps.constrained], ps.sigma) if len(ps.constrained) else np.zeros(0)
            toy_like.set_data(data, aux)
            try:
                ul = toy_upper_limit(toy_like, asimov, theta)
            except Exception:  # a fit that fails is counted, never fatal (as in run_toys)
                ul = None
            if ul is None:
                failed += 1
            else:
                limits.append(ul)
        bands = {k: asimov.band(float(k)) for k in BAND_QUANTILES}
    return limit_bands(limits, failed, bands)


def limit_bands(limits: Sequence[float], failed: int, asymptotic: Mapping[str, float | None]) -> dict[str, Any]:
    """The toys' quantiles of the upper limit (at the band probabilities) next to the asymptotic bands."""
    values = np.asarray(limits, dtype=np.float64)
    quantiles = {k: (float(np.quantile(values, q)) if len(values) else None) for k, q in BAND_QUANTILES.items()}
    return {
        "toys": len(values),
        "failed": failed,
        "toys_bands": quantiles,
        "asymptotic_bands": dict(asymptotic),
        "limits": [float(v) for v in values],
    }


def excludes_truth(summary: Mapping[str, Any], truth: float, asimov: AsimovCurve) -> dict[str, float]:
    """How often the 95 % CLs limit of signal toys excludes the true value (``q~`` from the recorded ``t``)."""
    hits = 0
    n = len(summary["t_true"])
    for mu_hat, t in zip(summary["mu_hat"], summary["t_true"], strict=True):
        q = 0.0 if mu_hat > truth else t
        hits += _cls(q, asimov.q(truth)) < 0.05
    return coverage(hits, n)
