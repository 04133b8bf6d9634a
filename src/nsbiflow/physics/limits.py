"""Profile-likelihood results from any ``-2 ln L(mu, alpha)`` of one nuisance parameter: best fit, CLs, Z0.

Used only by the active-learning scan's per-point toy (``physics/active/toy.py``: a binned likelihood with
one constrained background normalisation, many thousands of cheap CLs evaluations). The analyses' own
statistics (many parameters, regions, modifiers) are ``physics/model``; moving the scan toy onto it, so this
module can go, is open work.

Asymptotic formulae (Cowan, Cranmer, Gross, Vitells 2011): intervals where the profile likelihood ratio
``t(mu) = -2 ln L(mu, alpha_hat_hat) + 2 ln L(mu_hat, alpha_hat)`` crosses the chi2(1) quantiles (1 for
68.27 %, 3.841 for 95 %); the 95 % CLs upper limit from ``q~_mu`` and its value on the background-only
Asimov dataset (the same construction as pyhf's asymptotic calculator); the discovery significance
``Z0 = sqrt(q0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from iminuit import Minuit
from scipy.optimize import brentq
from scipy.stats import chi2, norm

TwiceNLL = Callable[[float, float], float]


@dataclass
class Fit:
    """Minimum of ``-2 ln L``."""

    mu: float
    alpha: float
    twice_nll: float


class ProfileLikelihood:
    """Profiles ``alpha`` (1 nuisance parameter) at fixed ``mu`` with iminuit; caches profile values."""

    def __init__(
        self,
        twice_nll: TwiceNLL,
        mu_bounds: tuple[float, float],
        alpha_bounds: tuple[float, float] = (-5, 5),
        profiler: Callable[[float], tuple[float, float]] | None = None,
    ) -> None:
        self.f = twice_nll
        self.mu_bounds = mu_bounds
        self.alpha_bounds = alpha_bounds
        self._profiler = profiler
        self._cache: dict[float, tuple[float, float]] = {}

    def fit(self) -> Fit:
        """Global minimum over (mu, alpha), started from a coarse scan in mu."""
        grid = np.linspace(*self.mu_bounds, 21)
        start = min(grid, key=lambda m: self.profile(float(m)))
        m = Minuit(lambda mu, alpha: self.f(mu, alpha), mu=float(start), alpha=self.profile_alpha(float(start)))
        m.errordef = Minuit.LEAST_SQUARES
        m.limits["mu"] = self.mu_bounds
        m.limits["alpha"] = self.alpha_bounds
        m.migrad()
        best = Fit(float(m.values["mu"]), float(m.values["alpha"]), float(m.fval))
        # the profile at the scan minimum can only be higher than the global minimum
        prof = self.profile(best.mu)
        if prof < best.twice_nll:
            best = Fit(best.mu, self.profile_alpha(best.mu), prof)
        return best

    def _profile(self, mu: float) -> tuple[float, float]:
        key = round(float(mu), 12)
        if key not in self._cache and self._profiler is not None:
            self._cache[key] = self._profiler(float(mu))
        if key not in self._cache:
            m = Minuit(lambda alpha: self.f(mu, alpha), alpha=0.0)
            m.errordef = Minuit.LEAST_SQUARES
            m.limits["alpha"] = self.alpha_bounds
            m.migrad()
            self._cache[key] = (float(m.fval), float(m.values["alpha"]))
        return self._cache[key]

    def profile(self, mu: float) -> float:
        """``min_alpha -2 ln L(mu, alpha)``."""
        return self._profile(mu)[0]

    def profile_alpha(self, mu: float) -> float:
        """The conditional best ``alpha`` at ``mu``."""
        return self._profile(mu)[1]


def interval(pl: ProfileLikelihood, best: Fit, level: float) -> tuple[float, float]:
    """Where ``t(mu)`` crosses the chi2(1) quantile of ``level``; clipped to the scan bounds."""
    crit = float(chi2.ppf(level, 1))

    def t(mu: float) -> float:
        return pl.profile(mu) - best.twice_nll - crit

    lo_b, hi_b = pl.mu_bounds
    lo = brentq(t, lo_b, best.mu, xtol=1e-5) if t(lo_b) > 0 else lo_b
    hi = brentq(t, best.mu, hi_b, xtol=1e-5) if t(hi_b) > 0 else hi_b
    return float(lo), float(hi)


def qtilde(pl: ProfileLikelihood, best: Fit, mu: float) -> float:
    """The test statistic ``q~_mu`` for upper limits (zero when mu_hat > mu; uses mu_hat >= 0)."""
    if best.mu > mu:
        return 0.0
    reference = best.twice_nll if best.mu >= 0 else pl.profile(0.0)
    return max(pl.profile(mu) - reference, 0.0)


def cls(data: tuple[ProfileLikelihood, Fit], asimov: tuple[ProfileLikelihood, Fit], mu: float) -> float:
    """Asymptotic CLs of signal strength ``mu`` (``asimov``: background-only Asimov dataset)."""
    q = qtilde(*data, mu)
    q_a = qtilde(*asimov, mu)
    sq, sq_a = math.sqrt(q), math.sqrt(max(q_a, 1e-12))
    stat = sq - sq_a if sq <= sq_a else (q - q_a) / (2.0 * sq_a)
    clsb = float(norm.sf(stat + sq_a))
    clb = float(norm.sf(stat))
    return clsb / clb if clb > 0 else 1.0


def upper_limit(
    data: tuple[ProfileLikelihood, Fit], asimov: tuple[ProfileLikelihood, Fit], level: float = 0.05
) -> float:
    """The ``mu`` where CLs = ``level`` (NaN when not bracketed by the scan bounds)."""
    lo = max(data[1].mu, 0.0) + 1e-4
    hi = data[0].mu_bounds[1]
    f = lambda mu: cls(data, asimov, mu) - level  # noqa: E731
    if f(lo) < 0 or f(hi) > 0:
        return float("nan")
    return float(brentq(f, lo, hi, xtol=1e-4))


def z0(pl: ProfileLikelihood, best: Fit) -> float:
    """Discovery significance ``sqrt(q0)`` (0 when mu_hat <= 0)."""
    if best.mu <= 0 or pl.mu_bounds[0] > 0:
        return 0.0
    return math.sqrt(max(pl.profile(0.0) - best.twice_nll, 0.0))


@dataclass
class Result:
    """Everything one method reports."""

    mu_hat: float
    alpha_hat: float
    interval_68: tuple[float, float]
    interval_95: tuple[float, float]
    cls_upper_limit_95: float
    z0: float
    scan_mu: list[float]
    scan_t: list[float]

    def summary(self) -> dict[str, object]:
        """The ``results.json`` entry."""
        return {
            "mu_hat": self.mu_hat,
            "alpha_hat": self.alpha_hat,
            "interval_68": list(self.interval_68),
            "interval_95": list(self.interval_95),
            "width_68": self.interval_68[1] - self.interval_68[0],
            "width_95": self.interval_95[1] - self.interval_95[0],
            "cls_upper_limit_95": self.cls_upper_limit_95,
            "z0": self.z0,
        }


def analyse(data_nll: TwiceNLL, asimov_nll: TwiceNLL, mu_bounds: tuple[float, float], n_scan: int = 61) -> Result:
    """Best fit, 68/95 % intervals, CLs upper limit and Z0 of one likelihood (plus the scan for plots)."""
    pl = ProfileLikelihood(data_nll, mu_bounds)
    best = pl.fit()
    pl_a = ProfileLikelihood(asimov_nll, mu_bounds)
    best_a = pl_a.fit()
    grid = np.linspace(*mu_bounds, n_scan)
    t = [pl.profile(float(mu)) - best.twice_nll for mu in grid]
    return Result(
        mu_hat=best.mu,
        alpha_hat=best.alpha,
        interval_68=interval(pl, best, float(chi2.cdf(1.0, 1))),
        interval_95=interval(pl, best, 0.95),
        cls_upper_limit_95=upper_limit((pl, best), (pl_a, best_a)),
        z0=z0(pl, best),
        scan_mu=[float(m) for m in grid],
        scan_t=[float(v) for v in t],
    )
