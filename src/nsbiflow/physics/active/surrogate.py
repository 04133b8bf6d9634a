"""The surrogate: a Gaussian process (scikit-learn) of a transformed CLs over the unit square of the scan.

CLs spans orders of magnitude and saturates at 1; its normal quantile ``z = Phi^-1(1 - CLs)`` is close to
linear in the signal strength (asymptotically ``z ~ sqrt(q_mu)``), so the GP models ``z`` (clipped to a band
around the level), and the contour ``CLs = 0.05`` is the level set ``z = Phi^-1(0.95) = 1.645``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

Z_CLIP = (-1.0, 3.5)
"""The transformed CLs is clipped to this band: far from the contour only the side matters."""


def transform(cls_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``Phi^-1(1 - CLs)``, clipped to ``Z_CLIP``."""
    values = np.clip(np.asarray(cls_values, dtype=float), 1e-300, 1.0)
    return np.clip(norm.isf(values), *Z_CLIP)


def level(cls_level: float) -> float:
    """The level of the contour in the transformed variable."""
    return float(norm.isf(cls_level))


class Scale:
    """Maps scan coordinates (mass, mu) to the unit square and back."""

    def __init__(self, bounds: Sequence[Sequence[float]]) -> None:
        self.low = np.array([b[0] for b in bounds], dtype=float)
        self.high = np.array([b[1] for b in bounds], dtype=float)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Scan coordinates -> unit square."""
        return (np.asarray(x, dtype=float) - self.low) / (self.high - self.low)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit square -> scan coordinates."""
        return self.low + np.asarray(u, dtype=float) * (self.high - self.low)


def fit(u: np.ndarray, z: np.ndarray, seed: int = 0) -> GaussianProcessRegressor:
    """A GP fitted to points ``u`` (unit square) with values ``z`` (hyperparameters by maximum likelihood)."""
    # Matern 3/2 (once differentiable), not RBF: the clipped transform has kinks where it meets Z_CLIP, and an
    # infinitely smooth prior then needs short length-scales everywhere (benchmarks/active_scan.py: RBF needed
    # 27-39 points to reach the 1 % contour over seeds 0-4, Matern 3/2 24-27 over seeds 0-9).
    kernel = ConstantKernel(4.0, (1e-2, 1e3)) * Matern([0.3, 0.3], (0.03, 5.0), nu=1.5) + WhiteKernel(
        1e-3, (1e-6, 0.5)
    )
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=2, random_state=seed)
    with warnings.catch_warnings():  # a hyperparameter at its bound (e.g. no noise) is an answer, not a failure
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(u, z)
    # predict the latent function: its std shrinks at simulated points (the fitted noise is the MC noise of a
    # point, not an uncertainty of the contour), so a batch spreads out and sampled places are not re-chosen
    signal, noise = gp.kernel_.k1, gp.kernel_.k2
    return refit_fixed(gp, u, z, kernel=signal, alpha=float(noise.noise_level) + 1e-10)


def refit_fixed(
    gp: GaussianProcessRegressor, u: np.ndarray, z: np.ndarray, *, kernel: Any = None, alpha: float | None = None
) -> GaussianProcessRegressor:
    """The same kernel (no re-optimisation) conditioned on new data: cheap, for batch construction."""
    fixed = GaussianProcessRegressor(kernel=kernel if kernel is not None else gp.kernel_,
                                     alpha=alpha if alpha is not None else gp.alpha, normalize_y=True,
                                     optimizer=None)  # fmt: skip
    fixed.fit(u, z)
    return fixed


def unit_grid(resolution: int) -> np.ndarray:
    """``resolution**2`` points of the unit square (mass fastest), where contours and acquisitions are evaluated."""
    axis = np.linspace(0.0, 1.0, resolution)
    a, b = np.meshgrid(axis, axis)
    return np.column_stack([a.ravel(), b.ravel()])
