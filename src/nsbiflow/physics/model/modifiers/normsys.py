"""``normsys``: a normalisation systematic, ``hi^theta`` / ``lo^-theta`` with code-4 interpolation (pyhf's)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nsbiflow.physics.model.interpolation import Code4
from nsbiflow.physics.model.modifiers import Context, register
from nsbiflow.physics.model.spec import NormSys


class NormSysTerm:
    """The code-4 factor of one parameter."""

    def __init__(self, index: int, lo: float, hi: float) -> None:
        self.index = index
        self.code4 = Code4(np.array([math.log(hi)]), np.array([math.log(lo)]))

    def factor(self, theta: torch.Tensor) -> torch.Tensor:
        """``f(theta)``: 1 at 0, ``hi`` at +1, ``lo`` at -1."""
        return self.code4(theta[self.index])[0]


def build(spec: NormSys, context: Context) -> NormSysTerm:
    """The term of a normsys."""
    return NormSysTerm(context.index[spec.parameter], spec.lo, spec.hi)


register("normsys", build)
