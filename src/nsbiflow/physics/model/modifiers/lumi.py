"""``lumi``: the yield times the luminosity parameter (constrain it with a Gaussian of the lumi uncertainty)."""

from __future__ import annotations

import torch

from nsbiflow.physics.model.modifiers import Context, register
from nsbiflow.physics.model.modifiers.normfactor import NormFactorTerm
from nsbiflow.physics.model.spec import Lumi


class LumiTerm(NormFactorTerm):
    """``factor = lumi`` (the same arithmetic as a normfactor; the constraint lives on the parameter)."""

    def factor(self, theta: torch.Tensor) -> torch.Tensor:
        """The luminosity parameter's value."""
        return theta[self.index]


def build(spec: Lumi, context: Context) -> LumiTerm:
    """The term of a lumi modifier."""
    return LumiTerm(context.index[spec.parameter])


register("lumi", build)
