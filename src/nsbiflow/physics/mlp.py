"""Multi-layer perceptrons, one or many at once.

``BatchedMLP`` holds K independent members as stacked weight tensors and evaluates them with batched
matrix products: on a GPU this trains a whole ensemble chunk in one model; with K = 1 it is an ordinary MLP
(the faster choice on a few CPU cores). Members are exported as plain per-member state dicts
(``layers.{i}.weight`` of shape (out, in), as ``torch.nn.Linear`` stores them), so the on-disk format does
not depend on how they were trained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class MLPConfig(BaseModel):
    """Architecture of one member."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_inputs: int = Field(..., gt=0)
    hidden: list[int] = Field(default_factory=lambda: [64, 64, 64])
    activation: str = "silu"


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": nn.functional.silu,
    "relu": nn.functional.relu,
    "tanh": torch.tanh,
}


def plain_state(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """One member's plain state dict (on the CPU) from its (in, out) weights and (1, out) biases."""
    state: dict[str, torch.Tensor] = {}
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        # one copy each (``to(copy=True)`` transposes into a fresh contiguous CPU tensor): never a view of w, b
        state[f"layers.{i}.weight"] = w.t().to("cpu", copy=True, memory_format=torch.contiguous_format)
        state[f"layers.{i}.bias"] = b[0].to("cpu", copy=True, memory_format=torch.contiguous_format)
    return state


class BatchedMLP(nn.Module):
    """K MLPs with identical architecture evaluated together: input (K, B, n_inputs) -> logits (K, B)."""

    def __init__(self, config: MLPConfig, members: int) -> None:
        super().__init__()
        if config.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {config.activation!r} (known: {', '.join(_ACTIVATIONS)})")
        self.config = config
        self.members = members
        sizes = [config.n_inputs, *config.hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)  # torch.nn.Linear's default initialisation
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self._act: Callable[[torch.Tensor], torch.Tensor] = _ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every member; ``x`` is (K, B, n) or (B, n) (the same events for all members)."""
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self._act(h)
        return h.squeeze(-1)

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k`` as a plain state dict (``layers.{i}.weight`` (out, in), ``layers.{i}.bias``)."""
        return plain_state([w[k].detach() for w in self.weights], [b[k].detach() for b in self.biases])

    @classmethod
    def from_member_states(cls, config: MLPConfig, states: list[dict[str, torch.Tensor]]) -> BatchedMLP:
        """Stack saved members back into one batched model (for evaluation)."""
        model = cls(config, len(states))
        with torch.no_grad():
            for i in range(len(model.weights)):
                model.weights[i].copy_(torch.stack([s[f"layers.{i}.weight"].t() for s in states]))
                model.biases[i].copy_(torch.stack([s[f"layers.{i}.bias"].unsqueeze(0) for s in states]))
        return model
