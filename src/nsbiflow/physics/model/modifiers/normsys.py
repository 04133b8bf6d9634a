"""``normsys``: a normalisation systematic, ``hi^theta`` / ``lo^-theta`` with code-4 interpolation (pyhf's)."""

from __future__ import annotations

import math

import numpy as np
import torch

from nsbiflow.physics.model.interpolation import Code4, Code4Batch
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


class NormSysGroup:
    """Every normsys of one process in one vectorised code-4 evaluation (same result as the product)."""

    def __init__(self, terms: list[NormSysTerm]) -> None:
        self.indices = torch.tensor([t.index for t in terms], dtype=torch.long)
        lu = np.array([[float(t.code4.log_up[0, 0])] for t in terms])
        ld = np.array([[float(t.code4.log_down[0, 0])] for t in terms])
        self.code4 = Code4Batch(lu, ld)

    def factor(self, theta: torch.Tensor) -> torch.Tensor:
        """``prod_k f_k(theta_k)``."""
        return torch.exp(self.code4.log(theta[self.indices])[0])


def group(terms: list[object]) -> list[object]:
    """``terms`` with all normsys terms merged into one ``NormSysGroup``."""
    mine = [t for t in terms if isinstance(t, NormSysTerm)]
    if len(mine) < 2:
        return terms
    return [t for t in terms if not isinstance(t, NormSysTerm)] + [NormSysGroup(mine)]


def build(spec: NormSys, context: Context) -> NormSysTerm:
    """The term of a normsys."""
    return NormSysTerm(context.index[spec.parameter], spec.lo, spec.hi)


register("normsys", build)
