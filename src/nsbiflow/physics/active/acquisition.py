"""Where to simulate next: the straddle acquisition of the contour, batches, and the stopping rule.

Straddle (Bryan et al. 2005): ``1.96 sigma(x) - |mean(x) - level|``, large where the GP cannot tell which side
of the level ``x`` is on. A batch is built greedily with the *kriging believer*: after each pick the GP is
conditioned on its own mean there (same kernel), which shrinks the uncertainty around the pick so the next
one goes elsewhere; the batch runs in parallel. The stopping rule uses the GP's *expected misclassified
fraction* of the scan: at each grid point the probability that the GP puts it on the wrong side of the level,
``Phi(-|mean - level| / sigma)``, averaged over the grid. That is the expectation of the error the scan is judged
by (the misclassified area against the true contour), so it is compared with the declared tolerance directly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr
from scipy.stats import qmc
from sklearn.gaussian_process import GaussianProcessRegressor

from nsbiflow.physics.active.surrogate import refit_fixed


def initial_design(count: int, seed: int) -> np.ndarray:
    """``count`` space-filling points of the unit square (a scrambled Sobol sequence)."""
    sampler = qmc.Sobol(d=2, scramble=True, seed=seed)
    # the first `count` points of the sequence (what random(count) draws), without its power-of-two warning
    return sampler.random_base2(max(0, math.ceil(math.log2(count))))[:count]


def straddle(mean: np.ndarray, std: np.ndarray, level: float) -> np.ndarray:
    """The straddle score of the level set ``level``."""
    return 1.96 * std - np.abs(mean - level)


def expected_misclassified(mean: np.ndarray, std: np.ndarray, level: float) -> float:
    """The GP's expected misclassified fraction of the grid: the mean of ``Phi(-|mean - level| / std)``."""
    return float(np.mean(ndtr(-np.abs(mean - level) / np.maximum(std, 1e-12))))


def choose_batch(
    gp: GaussianProcessRegressor,
    u: np.ndarray,
    z: np.ndarray,
    candidates: np.ndarray,
    level: float,
    size: int,
    min_distance: float = 0.02,
) -> np.ndarray:
    """``size`` candidates of highest straddle, one at a time, believing the GP mean at each pick."""
    picks: list[np.ndarray] = []
    model = gp
    train_u, train_z = u.copy(), z.copy()
    for _ in range(size):
        mean, std = model.predict(candidates, return_std=True)
        score = straddle(mean, std, level)
        taken = np.vstack([train_u, *picks]) if picks else train_u
        distance = np.min(np.linalg.norm(candidates[:, None, :] - taken[None, :, :], axis=2), axis=1)
        score[distance < min_distance] = -np.inf  # never re-simulate (almost) the same point
        best = int(np.argmax(score))
        if not np.isfinite(score[best]):
            break
        picks.append(candidates[best])
        train_u = np.vstack([train_u, candidates[best]])
        train_z = np.append(train_z, mean[best])
        model = refit_fixed(gp, train_u, train_z)
    return np.array(picks).reshape(-1, 2)
