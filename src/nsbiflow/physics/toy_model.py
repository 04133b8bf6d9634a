"""The toy simulator: 5-D Gaussian mixtures whose densities are known in closed form.

Every process is a mixture of multivariate Gaussians in a latent space ``z``. The detector response
``x = s(alpha) * z + noise`` with ``s(alpha) = 1 + scale_per_alpha * alpha`` and Gaussian noise of width
``noise`` keeps each component Gaussian: ``z ~ N(m, C)`` gives ``x ~ N(s m, s^2 C + noise^2 I)``. So the
density of every process at every ``alpha`` -- and every likelihood ratio -- is exact.

The detector scale systematic acts on the background only (the signal is taken at nominal response, as the
samples the analysis needs are signal, background and background at alpha = +-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import logsumexp

Process = Literal["signal", "background", "background_up", "background_down", "reference"]
PROCESSES: tuple[str, ...] = ("signal", "background", "background_up", "background_down", "reference")
OBSERVABLES: tuple[str, ...] = ("x0", "x1", "x2", "x3", "x4")

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Gaussian:
    """One mixture component: weight, mean vector and covariance matrix."""

    weight: float
    mean: FloatArray
    cov: FloatArray


class ToyModel(BaseModel):
    """Parameters of the toy; defaults are the analysis defaults (``signal_*`` are the reinterpretation knobs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_mean: float = Field(1.0, description="shift of the signal core along its direction (latent units)")
    signal_width: float = Field(0.7, gt=0, description="width of the signal core (latent units)")
    signal_correlation: float = Field(0.6, gt=-1, lt=1, description="x0-x1 correlation of the signal core")
    signal_broad_fraction: float = Field(0.3, ge=0, le=1, description="signal weight in the shared broad component")
    background_broad_fraction: float = Field(0.4, ge=0, le=1)
    background_correlation: float = Field(0.0, gt=-1, lt=1, description="x0-x1 correlation of background core")
    broad_width: float = Field(1.6, gt=0, description="width of the broad component shared by all processes")
    noise: float = Field(0.2, ge=0, description="detector smearing (x = s z + noise)")
    scale_per_alpha: float = Field(0.1, description="detector scale s = 1 + scale_per_alpha * alpha")
    reference_width: float = Field(1.5, gt=0, description="width of the reference (denominator) Gaussian")

    @property
    def n_dim(self) -> int:
        """Number of observables."""
        return len(OBSERVABLES)

    def signal_direction(self) -> FloatArray:
        """Unit vector along which the signal core is displaced."""
        v = np.array([1.0, 0.8, 0.6, -0.5, 0.4])
        return v / np.linalg.norm(v)

    # -- latent components -------------------------------------------------------------------------------
    def _broad(self, weight: float) -> Gaussian:
        d = self.n_dim
        return Gaussian(weight, np.zeros(d), self.broad_width**2 * np.eye(d))

    def latent_components(self, kind: Literal["signal", "background"]) -> list[Gaussian]:
        """Mixture components of a process in the latent space (before the detector)."""
        d = self.n_dim
        if kind == "signal":
            f = self.signal_broad_fraction
            cov = self.signal_width**2 * np.eye(d)
            cov[0, 1] = cov[1, 0] = self.signal_correlation * self.signal_width**2
            core = Gaussian(1.0 - f, self.signal_mean * self.signal_direction(), cov)
            return [c for c in (self._broad(f), core) if c.weight > 0]
        f = self.background_broad_fraction
        cov = np.eye(d)
        cov[0, 1] = cov[1, 0] = self.background_correlation
        core = Gaussian(1.0 - f, np.full(d, -0.2), cov)
        return [c for c in (self._broad(f), core) if c.weight > 0]

    def components(self, process: str, alpha: float = 0.0) -> list[Gaussian]:
        """Detector-level mixture components of ``process`` (``alpha`` applies to the background)."""
        d = self.n_dim
        if process == "reference":
            width2 = self.reference_width**2
            return [Gaussian(1.0, np.zeros(d), width2 * np.eye(d))]
        if process == "background_up":
            process, alpha = "background", alpha + 1.0
        elif process == "background_down":
            process, alpha = "background", alpha - 1.0
        if process == "signal":
            scale = 1.0
            latent = self.latent_components("signal")
        elif process == "background":
            scale = 1.0 + self.scale_per_alpha * alpha
            latent = self.latent_components("background")
        else:
            raise ValueError(f"unknown process {process!r} (known: {', '.join(PROCESSES)})")
        if scale <= 0:
            raise ValueError(f"detector scale 1 + {self.scale_per_alpha} * alpha must stay positive")
        noise2 = self.noise**2 * np.eye(d)
        return [Gaussian(c.weight, scale * c.mean, scale**2 * c.cov + noise2) for c in latent]

    # -- densities and sampling ----------------------------------------------------------------------------
    def log_prob(self, process: str, x: FloatArray, alpha: float = 0.0) -> FloatArray:
        """Exact log density of ``process`` at detector-level points ``x`` (shape ``(n, 5)``)."""
        x = np.asarray(x, dtype=np.float64)
        terms = [np.log(c.weight) + _gauss_logpdf(x, c.mean, c.cov) for c in self.components(process, alpha)]
        return np.asarray(logsumexp(np.stack(terms), axis=0))

    def log_ratio(self, numerator: str, denominator: str, x: FloatArray, alpha: float = 0.0) -> FloatArray:
        """Exact ``log p_numerator(x) / p_denominator(x)``."""
        return self.log_prob(numerator, x, alpha) - self.log_prob(denominator, x, 0.0)

    def sample(self, process: str, n: int, rng: np.random.Generator, alpha: float = 0.0) -> FloatArray:
        """Draw ``n`` detector-level events: latent ``z`` from the mixture, then ``s z + noise``."""
        if process == "reference":
            c = self.components("reference")[0]
            return rng.multivariate_normal(c.mean, c.cov, size=n, method="cholesky")
        if process == "background_up":
            process, alpha = "background", alpha + 1.0
        elif process == "background_down":
            process, alpha = "background", alpha - 1.0
        kind: Literal["signal", "background"] = "signal" if process == "signal" else "background"
        if process not in ("signal", "background"):
            raise ValueError(f"unknown process {process!r} (known: {', '.join(PROCESSES)})")
        latent = self.latent_components(kind)
        weights = np.array([c.weight for c in latent])
        which = rng.choice(len(latent), size=n, p=weights / weights.sum())
        z = np.empty((n, self.n_dim))
        for k, c in enumerate(latent):
            sel = which == k
            z[sel] = rng.multivariate_normal(c.mean, c.cov, size=int(sel.sum()), method="cholesky")
        scale = 1.0 + self.scale_per_alpha * alpha if kind == "background" else 1.0
        return scale * z + self.noise * rng.standard_normal((n, self.n_dim))

    def sample_signal_family(
        self, n: int, rng: np.random.Generator, low: float, high: float
    ) -> tuple[FloatArray, FloatArray]:
        """Signal events whose ``signal_mean`` is drawn per event, uniform in ``[low, high]``: ``(x, means)``.

        Given its mean, an event follows this model's signal density at that ``signal_mean`` exactly (the
        core is displaced along ``signal_direction``; the broad component does not depend on it). The sample
        trains a signal ratio parametrized in ``signal_mean``.
        """
        if not low <= high:
            raise ValueError(f"signal_mean range [{low}, {high}] is empty")
        means = rng.uniform(low, high, size=n)
        latent = self.latent_components("signal")
        weights = np.array([c.weight for c in latent])
        which = rng.choice(len(latent), size=n, p=weights / weights.sum())
        z = np.empty((n, self.n_dim))
        core = len(latent) - 1 if self.signal_broad_fraction < 1 else -1  # the core is the last component
        for k, c in enumerate(latent):
            sel = which == k
            if k == core:  # centred core, then each event's own displacement
                z[sel] = rng.multivariate_normal(np.zeros(self.n_dim), c.cov, size=int(sel.sum()), method="cholesky")
                z[sel] += means[sel, None] * self.signal_direction()
            else:
                z[sel] = rng.multivariate_normal(c.mean, c.cov, size=int(sel.sum()), method="cholesky")
        return z + self.noise * rng.standard_normal((n, self.n_dim)), means

    def sample_mixture(
        self, n_signal: int, n_background: int, rng: np.random.Generator, alpha: float = 0.0
    ) -> FloatArray:
        """Signal and background events together (an observed dataset), shuffled."""
        x = np.concatenate([self.sample("signal", n_signal, rng), self.sample("background", n_background, rng, alpha)])
        return x[rng.permutation(len(x))]


def _gauss_logpdf(x: FloatArray, mean: FloatArray, cov: FloatArray) -> FloatArray:
    chol = np.linalg.cholesky(cov)
    diff = np.linalg.solve(chol, (x - mean).T)
    maha = np.sum(diff**2, axis=0)
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    return np.asarray(-0.5 * (maha + logdet + x.shape[1] * np.log(2 * np.pi)))
