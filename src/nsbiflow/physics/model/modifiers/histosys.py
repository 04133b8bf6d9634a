"""``histosys``: a binned shape systematic from +-1 sigma samples, pyhf's additive code 4p."""

from __future__ import annotations

import torch

from nsbiflow.physics.model.interpolation import code4p
from nsbiflow.physics.model.modifiers import Context, register
from nsbiflow.physics.model.spec import HistoSys


class HistoSysTerm:
    """The shift of the nominal template between the up/down templates."""

    def __init__(self, index: int, nominal: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> None:
        self.index, self.nominal, self.up, self.down = index, nominal, up, down

    def shift(self, theta: torch.Tensor) -> torch.Tensor:
        """Per-bin additive shift."""
        return code4p(theta[self.index], self.nominal, self.up, self.down)


def build(spec: HistoSys, context: Context) -> HistoSysTerm:
    """The term of a histosys (templates normalised like the nominal)."""
    assert context.template is not None and context.nominal is not None
    return HistoSysTerm(
        context.index[spec.parameter],
        torch.as_tensor(context.nominal),
        torch.as_tensor(context.template(spec.up)),
        torch.as_tensor(context.template(spec.down)),
    )


register("histosys", build)
