"""``histosys``: a binned shape systematic from +-1 sigma samples: pyhf's additive code 4p, or multiplicative code 4.

Code 4p (the default, pyhf's): ``h(theta) = h0 + delta(theta)`` with the additive polynomial/linear shift.
Code 4: ``h(theta) = h0 f(theta)`` with the per-bin code-4 factor of ``up/h0`` and ``down/h0`` (exponential
beyond +-1), the convention of ``normsys`` and of the unbinned ``shapesys`` -- what a binned fit must use to be
compared like with like with NSBI. pyhf's ``histosys`` has no multiplicative code (its ``code4`` is for
``normsys``), so a model with code-4 histosys has no exact pyhf workspace.
"""

from __future__ import annotations

import numpy as np
import torch

from nsbiflow.physics.model.interpolation import Code4, code4p
from nsbiflow.physics.model.modifiers import Context, register
from nsbiflow.physics.model.spec import HistoSys


class HistoSysTerm:
    """The shift of the nominal template between the up/down templates."""

    def __init__(
        self, index: int, nominal: torch.Tensor, up: torch.Tensor, down: torch.Tensor, interpolation: str = "code4p"
    ) -> None:
        self.index, self.nominal, self.up, self.down = index, nominal, up, down
        self.interpolation = interpolation
        self._code4: Code4 | None = None
        if interpolation == "code4":
            nom, hi, lo = (np.asarray(t.numpy(), dtype=np.float64) for t in (nominal, up, down))
            ok = (nom > 0) & (hi > 0) & (lo > 0)  # an empty bin has no ratio: its factor stays 1
            safe = np.where(ok, nom, 1.0)
            log_up = np.where(ok, np.log(np.where(ok, hi, 1.0) / safe), 0.0)
            log_down = np.where(ok, np.log(np.where(ok, lo, 1.0) / safe), 0.0)
            self._code4 = Code4(log_up, log_down)

    def shift(self, theta: torch.Tensor) -> torch.Tensor:
        """Per-bin additive shift (for code 4: ``h0 (f(theta) - 1)``)."""
        if self._code4 is not None:
            return self.nominal * (self._code4(theta[self.index]) - 1.0)
        return code4p(theta[self.index], self.nominal, self.up, self.down)


def build(spec: HistoSys, context: Context) -> HistoSysTerm:
    """The term of a histosys (templates normalised like the nominal)."""
    assert context.template is not None and context.nominal is not None
    return HistoSysTerm(
        context.index[spec.parameter],
        torch.as_tensor(context.nominal),
        torch.as_tensor(context.template(spec.up)),
        torch.as_tensor(context.template(spec.down)),
        spec.interpolation,
    )


register("histosys", build)
