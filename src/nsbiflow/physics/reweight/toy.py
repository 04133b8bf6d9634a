"""A truth-known generator of events as sets of objects, in two configurations a and b.

Per event the multiplicity is ``n ~ Poisson(lambda)``; per object the energy (the momentum magnitude of a
massless object) is ``e ~ Exponential(rate k)``, the pseudorapidity ``eta ~ Uniform(-eta_max, eta_max)`` and
``phi ~ Uniform(-pi, pi)``; ``pt = e / cosh(eta)``. The objects are stored in decreasing pt, like reconstructed
ones. The two configurations differ in ``lambda`` and ``k`` only, so the exact per-event weight is

    w(x) = p_b(x) / p_a(x) = [Pois(n; lambda_b) / Pois(n; lambda_a)] * prod_i [k_b exp(-k_b e_i) / (k_a exp(-k_a e_i))]

(the angles and the ordering cancel). It depends on the set only through n and sum_i e_i: the event-level
summary of the generator (multiplicity, HT = sum pt, leading objects) does not carry sum_i e_i exactly, the sets do.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.events import Events
from nsbiflow.physics.objects import ObjectEvents
from nsbiflow.physics.reweight.config import ToyParameters
from nsbiflow.physics.reweight.observables import summary

GENERATOR = "objects-toy"
COLLECTION = "obj"
FIELDS = ("pt", "eta", "phi", "e")
Configuration = Literal["a", "b"]


class ObjectToy(ToyParameters):
    """The two configurations of the generator, and its sampling and exact weights."""

    def sample(self, configuration: Configuration, n: int, rng: np.random.Generator) -> ObjectEvents:
        """``n`` events of one configuration (unit weights; the event-level summary as flat observables)."""
        lam, k = (self.lambda_a, self.k_a) if configuration == "a" else (self.lambda_b, self.k_b)
        counts = rng.poisson(lam, size=n).astype(np.int64)
        total = int(counts.sum())
        e = rng.exponential(1.0 / k, size=total)
        eta = rng.uniform(-self.eta_max, self.eta_max, size=total)
        phi = rng.uniform(-math.pi, math.pi, size=total)
        pt = e / np.cosh(eta)
        event = np.repeat(np.arange(n), counts)
        order = np.lexsort((-pt, event))  # by event, then decreasing pt
        fields = {"pt": pt[order], "eta": eta[order], "phi": phi[order], "e": e[order]}
        ev = ObjectEvents(Events(np.empty((n, 0)), np.ones(n), [], {}), COLLECTION, counts, fields)
        x, names = summary(ev)
        ev.events = Events(x, np.ones(n), names, {})
        return ev

    def log_weight(self, counts: NDArray[np.int64], sum_e: NDArray[np.float64]) -> NDArray[np.float64]:
        """The exact ``log p_b / p_a`` of events with ``counts`` objects of total energy ``sum_e``."""
        log_pois = counts * math.log(self.lambda_b / self.lambda_a) - (self.lambda_b - self.lambda_a)
        return log_pois + counts * math.log(self.k_b / self.k_a) - (self.k_b - self.k_a) * sum_e

    def exact_log_weight(self, ev: ObjectEvents) -> NDArray[np.float64]:
        """The exact ``log p_b / p_a`` of every event of ``ev`` (needs the field ``e``)."""
        sum_e = np.bincount(ev.event_of_object, weights=ev.fields["e"], minlength=len(ev)).astype(np.float64)
        return self.log_weight(ev.counts, sum_e)


def toy_of(meta: dict[str, object]) -> ObjectToy | None:
    """The generator configuration recorded in an events file's metadata (None for other samples)."""
    if meta.get("generator") != GENERATOR or not isinstance(meta.get("objects_toy"), dict):
        return None
    return ObjectToy.model_validate(meta["objects_toy"])
