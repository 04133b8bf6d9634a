"""Fixtures of the reweighting tests: small truth-known samples of object sets (deterministic seeds)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest

# small networks and trees gain nothing from intra-op threads on a shared machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

from nsbiflow.physics.objects import ObjectEvents
from nsbiflow.physics.reweight.toy import ObjectToy


@dataclass
class Samples:
    """Training and held-out samples of both configurations, and the generator."""

    toy: ObjectToy
    a: ObjectEvents
    b: ObjectEvents
    a_hold: ObjectEvents
    b_hold: ObjectEvents


def make_samples(n: int, seed: int) -> Samples:
    """``n`` events per configuration and split."""
    toy = ObjectToy()
    parts = [toy.sample(c, n, np.random.default_rng([seed, i])) for i, c in enumerate("abab")]
    for ev, name in zip(parts, ("mc_a", "mc_b", "mc_a", "mc_b"), strict=True):
        ev.events.meta = {"process": name}
    return Samples(toy, *parts)


@pytest.fixture(scope="session")
def samples() -> Samples:
    """8000 events per configuration and split."""
    return make_samples(8000, 11)
