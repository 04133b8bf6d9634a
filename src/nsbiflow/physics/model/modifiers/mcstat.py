"""``mcstat``: the ensemble spread of a process's ratio as a Monte-Carlo-statistics nuisance parameter.

``r(x) -> r(x) exp(theta * s(x))`` with ``s(x)`` the per-event standard deviation of ``log r`` over the ensemble
members (infer's ``logr_<label>_std``) and a unit-Gaussian ``theta``: the fit may move every event's ratio
coherently by its own ensemble uncertainty. Normalised like a shape systematic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.modifiers import Context, EventJet, register
from nsbiflow.physics.model.spec import McStat, mcstat_parameter


@dataclass
class McStatTerm:
    """Reads ``logr_<ratio>_std``."""

    parameter: str
    index: int
    column: str

    def prepare(self, table: Table) -> torch.Tensor:
        """The per-event spread."""
        return torch.from_numpy(table.col(self.column).astype("float64"))

    def log_factor(self, prepared: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``theta * s(x_i)``."""
        return theta[self.index] * prepared

    def log_factor_jet(self, prepared: torch.Tensor, theta: torch.Tensor, part: slice) -> EventJet:
        """``theta * s(x_i)`` on the events ``part``: linear, so its second derivative is 0."""
        spread = prepared[part]
        return EventJet(float(theta[self.index]) * spread, [self.index], spread[None, :], None)


def build(spec: McStat, context: Context) -> McStatTerm:
    """The term of an mcstat modifier (``context.process`` names the ratio column via the region's process)."""
    name = mcstat_parameter(context.region, context.process, spec)
    ratio = context.ratio or context.process
    return McStatTerm(name, context.index[name], f"logr_{ratio}_std")


register("mcstat", build)
