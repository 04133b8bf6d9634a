"""The scan toy: a Gaussian signal of mass ``m`` and strength ``mu`` on a falling exponential background.

Binned in an observable ``x``; the background normalisation has a Gaussian-constrained uncertainty (one
nuisance parameter, profiled). The per-point analysis *simulates* the signal template from Monte Carlo events
at the point's mass, then computes the asymptotic CLs of ``mu`` with the exact (binned Poisson) likelihood.
The exact contour uses the analytic template instead: it is the truth the scan is checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr

from nsbiflow.physics.limits import Fit, ProfileLikelihood, cls, upper_limit


class ScanToy(BaseModel):
    """The toy's physics: the observable, the background, the signal shape, the observed data's seed."""

    model_config = ConfigDict(extra="forbid")

    x_range: list[float] = Field([0.0, 10.0], min_length=2, max_length=2, description="range of the observable")
    bins: int = Field(40, ge=4, le=400)
    nu_b: float = Field(2000.0, gt=0, description="expected background events")
    slope: float = Field(0.3, gt=0, description="background exponential slope")
    b_uncertainty: float = Field(0.05, ge=0, lt=1, description="relative background normalisation uncertainty")
    nu_s: float = Field(50.0, gt=0, description="expected signal events at mu = 1")
    width: float = Field(0.4, gt=0, description="signal width (resolution)")
    data_seed: int = Field(7, description="seed of the observed (background-only) data set")


@dataclass
class PointResult:
    """One analysed scan point."""

    mass: float
    mu: float
    cls: float


def edges(toy: ScanToy) -> np.ndarray:
    """Bin edges of the observable."""
    return np.linspace(toy.x_range[0], toy.x_range[1], toy.bins + 1)


def background(toy: ScanToy) -> np.ndarray:
    """Expected background per bin (the truncated exponential, exactly integrated)."""
    e = edges(toy)
    cdf = -np.exp(-toy.slope * e)
    frac = np.diff(cdf) / (cdf[-1] - cdf[0])
    return toy.nu_b * frac


def exact_signal(toy: ScanToy, mass: float) -> np.ndarray:
    """Expected signal per bin at ``mu = 1`` (analytic Gaussian bin integrals)."""
    cdf = ndtr((edges(toy) - mass) / toy.width)
    return toy.nu_s * np.diff(cdf)


def simulated_signal(toy: ScanToy, mass: float, events: int, seed: int) -> np.ndarray:
    """Expected signal per bin at ``mu = 1`` estimated from ``events`` simulated signal events."""
    rng = np.random.default_rng([seed, round(mass * 1e6)])
    x = rng.normal(mass, toy.width, size=events)
    counts, _ = np.histogram(x, bins=edges(toy))
    return toy.nu_s * counts / events


def observed(toy: ScanToy) -> np.ndarray:
    """The observed data: one background-only Poisson draw (fixed by ``data_seed``)."""
    return np.random.default_rng(toy.data_seed).poisson(background(toy)).astype(float)


def _likelihoods(
    toy: ScanToy, signal: np.ndarray
) -> tuple[tuple[ProfileLikelihood, Fit], tuple[ProfileLikelihood, Fit]]:
    b = background(toy)
    bounds = (-0.5, 8.0)

    def make(data: np.ndarray) -> tuple[ProfileLikelihood, Fit]:
        def twice_nll(mu: float, alpha: float) -> float:
            nu = np.clip(mu * signal + b * (1.0 + toy.b_uncertainty * alpha), 1e-9, None)
            return float(2.0 * np.sum(nu - data * np.log(nu)) + alpha * alpha)

        pl = ProfileLikelihood(twice_nll, bounds, alpha_bounds=(-5.0, 5.0))
        return pl, pl.fit()

    return make(observed(toy)), make(b)


def point_cls(toy: ScanToy, mass: float, mu: float, signal: np.ndarray | None = None) -> float:
    """Asymptotic CLs of ``(mass, mu)`` (``signal``: the template; the exact one when ``None``)."""
    data, asimov = _likelihoods(toy, exact_signal(toy, mass) if signal is None else signal)
    return cls(data, asimov, mu)


def exact_limit(toy: ScanToy, mass: float, level: float = 0.05) -> float:
    """The exact CLs upper limit on ``mu`` at ``mass``: the truth contour is ``mu = exact_limit(mass)``
    (infinite when no ``mu`` in the likelihood's range is excluded)."""
    data, asimov = _likelihoods(toy, exact_signal(toy, mass))
    limit = upper_limit(data, asimov, level)
    return limit if math.isfinite(limit) else math.inf


def exact_contour(
    toy: ScanToy, mass_range: list[float], masses: int = 29, level: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """``(mass, mu_up)`` of the exact contour at ``masses`` points across ``mass_range``."""
    grid = np.linspace(mass_range[0], mass_range[1], masses)
    return grid, np.array([exact_limit(toy, float(m), level) for m in grid])
