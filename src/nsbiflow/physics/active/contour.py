"""How close a contour estimate is to the truth: the misclassified fraction of a fine grid of the scan.

A point ``(mass, mu)`` is excluded when ``CLs < 0.05``; the exact contour is ``mu = mu_up(mass)`` (excluded
above). An estimate's error is the fraction of a fine grid it classifies differently from the exact one: an
area, so it does not depend on how the contour line is parametrised.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from nsbiflow.physics.active.surrogate import Scale, transform, unit_grid


def exact_excluded(scale: Scale, grid_u: np.ndarray, masses: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Exact classification of unit-square points (the exact limit interpolated linearly in mass)."""
    x = scale.from_unit(grid_u)
    return x[:, 1] > np.interp(x[:, 0], masses, limits)


def misclassified(estimate: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of grid points whose classification differs."""
    return float(np.mean(estimate != truth))


def grid_excluded(values: np.ndarray, resolution: int, grid_u: np.ndarray, level: float) -> np.ndarray:
    """Classification from a regular ``resolution x resolution`` scan of CLs (``values[i_mu, i_mass]``),
    interpolated linearly in the transformed CLs: what a grid scan's contour plot shows."""
    axis = np.linspace(0.0, 1.0, resolution)
    interpolate = RegularGridInterpolator((axis, axis), transform(values.ravel()).reshape(values.shape))
    return interpolate(grid_u[:, ::-1]) > level


def evaluation_grid(resolution: int = 81) -> np.ndarray:
    """The fine grid errors are measured on."""
    return unit_grid(resolution)
