"""``shapesys``: an unbinned shape systematic from the +-1 sigma ratio ensembles (varied / nominal process).

Per event, ``g(x, theta)`` interpolates ``g(x, +1) = r_up(x)`` and ``g(x, -1) = r_down(x)`` with code 4 (exponential
beyond +-1). The likelihood multiplies the process's density by ``g`` and its yield by ``E_p[g(x, theta)]`` over
the process's held-out sample, so the shape and the rate move together at every parameter point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.interpolation import Code4, Code4Batch
from nsbiflow.physics.model.modifiers import Context, EventJet, register
from nsbiflow.physics.model.spec import ShapeSys


@dataclass
class ShapeSysTerm:
    """Reads ``<prefix><up>`` and ``<prefix><down>`` columns (log-ratios) of each table."""

    parameter: str
    index: int
    up: str
    down: str
    prefix: str = "logr_"

    def prepare(self, table: Table) -> Code4:
        """The per-event code-4 coefficients of ``table``."""
        return Code4(table.col(self.prefix + self.up), table.col(self.prefix + self.down))

    def log_factor(self, prepared: Code4, theta: torch.Tensor) -> torch.Tensor:
        """``log g(x_i, theta)``."""
        return prepared.log(theta[self.index])

    def log_factor_jet(self, prepared: Code4, theta: torch.Tensor, part: slice) -> EventJet:
        """``log g`` on the events ``part`` with its exact first and second derivatives."""
        value, first, second = prepared.jet(theta[self.index].reshape(1), part)
        return EventJet(value, [self.index], first, second)


class ShapeSysGroup:
    """Every shapesys of one process in one vectorised per-event code-4 evaluation."""

    def __init__(self, terms: list[ShapeSysTerm]) -> None:
        self.terms = terms
        self.parameter = ",".join(t.parameter for t in terms)
        self.indices = torch.tensor([t.index for t in terms], dtype=torch.long)

    def prepare(self, table: Table) -> Code4Batch:
        """The stacked per-event coefficients of ``table``."""
        lu = np.stack([table.col(t.prefix + t.up) for t in self.terms])
        ld = np.stack([table.col(t.prefix + t.down) for t in self.terms])
        return Code4Batch(lu, ld)

    def log_factor(self, prepared: Code4Batch, theta: torch.Tensor) -> torch.Tensor:
        """``sum_s log g_s(x_i, theta_s)``."""
        return prepared.log(theta[self.indices])

    def log_factor_jet(self, prepared: Code4Batch, theta: torch.Tensor, part: slice) -> EventJet:
        """``sum_s log g_s`` on the events ``part`` with its exact first and (diagonal) second derivatives."""
        value, first, second = prepared.jet(theta[self.indices], part)
        return EventJet(value, [int(i) for i in self.indices], first, second)


def group(terms: list[object]) -> list[object]:
    """``terms`` with all shapesys terms merged into one ``ShapeSysGroup``."""
    mine = [t for t in terms if isinstance(t, ShapeSysTerm)]
    if len(mine) < 2:
        return terms
    return [t for t in terms if not isinstance(t, ShapeSysTerm)] + [ShapeSysGroup(mine)]


def build(spec: ShapeSys, context: Context) -> ShapeSysTerm:
    """The term of a shapesys."""
    return ShapeSysTerm(spec.parameter, context.index[spec.parameter], spec.up, spec.down)


register("shapesys", build)
