"""Labels, balanced class weights, K-fold holdouts and bootstrap weights of a reweighter's members.

The conventions of ``train-ratio`` (``physics/training.py``): a fixed permutation of the events seeded by
``[seed, 7919]`` assigns every event a fold; member ``m`` holds out fold ``m % folds``, draws Poisson(1)
bootstrap weights from ``[seed, m, 104729]`` and initialises from ``[seed, m, 15485863]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError

FloatArray = NDArray[np.float64]


@dataclass
class Split:
    """Per-member training and holdout weights over the stacked events (source first, then target)."""

    labels: NDArray[np.float32]  # 0: source (MC_a), 1: target (MC_b)
    train: FloatArray  # (members, n)
    holdout: FloatArray  # (members, n)
    member_ids: list[int]
    folds: int

    def init_seed(self, seed: int, k: int) -> int:
        """The initialisation seed of member ``k``."""
        return int(np.random.default_rng([seed, self.member_ids[k], 15485863]).integers(2**31))


def split(
    w_source: FloatArray, w_target: FloatArray, members: int, folds: int, seed: int, bootstrap: bool, stage: str
) -> Split:
    """Balanced (each class carries total weight n/2), K-fold and bootstrapped weights of every member."""
    if len(w_source) < folds or len(w_target) < folds:
        raise StageError(
            f"{stage}: {len(w_source)} source and {len(w_target)} target events are too few for {folds} folds; "
            "generate more events"
        )
    if (w_source < 0).any() or (w_target < 0).any():
        raise StageError(f"{stage}: negative event weights are not supported by the classifier; drop or absorb them")
    n = len(w_source) + len(w_target)
    base = np.concatenate([w_source * (n / 2) / w_source.sum(), w_target * (n / 2) / w_target.sum()])
    labels = np.concatenate([np.zeros(len(w_source)), np.ones(len(w_target))]).astype(np.float32)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[np.random.default_rng([seed, 7919]).permutation(n)] = np.arange(n) % folds
    train = np.zeros((members, n))
    hold = np.zeros((members, n))
    for m in range(members):
        holdout = fold_of == m % folds
        boot = np.random.default_rng([seed, m, 104729]).poisson(1.0, size=n).astype(np.float64) if bootstrap else 1.0
        train[m] = np.where(holdout, 0.0, base * boot)
        hold[m] = np.where(holdout, base, 0.0)
    return Split(labels, train, hold, list(range(members)), folds)
