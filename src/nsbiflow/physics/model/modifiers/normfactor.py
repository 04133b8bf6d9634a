"""``normfactor``: the yield times a free parameter."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nsbiflow.physics.model.modifiers import Context, register
from nsbiflow.physics.model.spec import NormFactor


@dataclass
class NormFactorTerm:
    """``factor = theta[index]``."""

    index: int

    def factor(self, theta: torch.Tensor) -> torch.Tensor:
        """The parameter's value."""
        return theta[self.index]


def build(spec: NormFactor, context: Context) -> NormFactorTerm:
    """The term of a normfactor."""
    return NormFactorTerm(context.index[spec.parameter])


register("normfactor", build)
