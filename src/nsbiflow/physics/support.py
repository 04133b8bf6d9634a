"""The support classifier: where does the reference sample cover the phase space well enough?

A classifier is trained to separate the pooled simulated samples (signal and background variations,
each with equal total weight; never the reference itself) from the reference. Its logit estimates
``log p_pool / p_ref`` with ``p_pool`` the mean of the pooled processes' densities, so the rule reads: an
event is outside the support where the processes' mean ratio to the reference exceeds ``max_ratio``. There
the reference is too sparse for density ratios to be trusted, and events there are handled by the binned part
of the likelihood ("safely in support use NSBI, outside use binned"). Because the signal is in the pool, the
signal core (where the signal ratio is largest) is covered by the classifier like every other region.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.ensemble import Ensemble

SUPPORT_JSON = "support.json"
LABEL = "support"


def pool(samples: list[tuple[NDArray[np.float64], NDArray[np.float64]]]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Concatenate samples, each rescaled to the same total weight."""
    xs, ws = [], []
    for x, w in samples:
        xs.append(x)
        ws.append(w / w.sum() * len(x))
    total = sum(len(x) for x in xs) / len(xs)
    return np.concatenate(xs), np.concatenate([w / w.sum() * total for w in ws])


@dataclass
class SupportModel:
    """A trained support classifier with its threshold."""

    ensemble: Ensemble
    max_ratio: float

    @classmethod
    def load(cls, directory: Path) -> SupportModel:
        """Load a support step's output directory."""
        config = json.loads((directory / SUPPORT_JSON).read_text())
        return cls(Ensemble.load(directory, LABEL), float(config["max_ratio"]))

    def log_ratio(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Estimated ``log p_pool / p_ref``."""
        return np.asarray(self.ensemble.log_ratio(x)[0])

    def contains(self, x: NDArray[np.float64]) -> NDArray[np.bool_]:
        """True where the event is inside the support."""
        return np.asarray(self.log_ratio(x) < np.log(self.max_ratio))


def outside_fraction(model: SupportModel, x: NDArray[np.float64], weights: NDArray[np.float64]) -> float:
    """The weighted fraction of events outside the support."""
    if len(x) == 0:
        return 0.0
    return float(1 - np.average(model.contains(x), weights=weights))
