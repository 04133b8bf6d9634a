"""Evaluating ensemble members with torch: the CUDA path (members stacked into batched models).

On a GPU one kernel launch per group of ``STACK_GROUP`` members instead of one per member is the lever. The
member loop (``stack=False``) is kept for members with different input scalers and for tests, which check
that both torch paths and the numpy path (``forward.py``) agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.forward import Scaler
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

EVAL_TILE = 8192  # events per forward pass of one member
STACK_GROUP = 32  # members per stacked model
STACK_TILE = 16384  # events per forward pass of a stacked model: activations 32 x 16384 x width floats


class TorchMembers:
    """Members as torch models on ``device``, stacked in groups when they share one scaler."""

    def __init__(
        self,
        mlp: MLPConfig,
        states: list[dict[str, NDArray[Any]]],
        scalers: list[Scaler],
        device: str,
        stack: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.scalers = scalers
        tensors = [{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in s.items()} for s in states]
        one_scaler = all(
            np.array_equal(s.mean, scalers[0].mean) and np.array_equal(s.std, scalers[0].std) for s in scalers
        )
        use_stack = (self.device.type == "cuda" if stack is None else stack) and one_scaler
        self.stacked: list[BatchedMLP] = []
        self.models: list[BatchedMLP] = []
        if use_stack:
            self.stacked = [
                BatchedMLP.from_member_states(mlp, tensors[i : i + STACK_GROUP]).to(self.device).eval()
                for i in range(0, len(tensors), STACK_GROUP)
            ]
        else:
            self.models = [BatchedMLP.from_member_states(mlp, [t]).to(self.device).eval() for t in tensors]

    def member_log_ratios(self, x: NDArray[np.float64]) -> Iterator[NDArray[np.float64]]:
        """Log-ratio of each member on events ``x`` (memory: one group x tile of activations).

        Inference mode is entered around each computation, never across a ``yield``: a suspended generator
        must not leave its caller (or another interleaved generator) without autograd.
        """
        if self.stacked:
            for group in self.stacked:
                with torch.inference_mode():
                    values = self._stacked(group, x)
                yield from values
            return
        for model, scaler in zip(self.models, self.scalers, strict=True):
            with torch.inference_mode():
                values1 = np.empty(len(x))
                for lo in range(0, len(x), EVAL_TILE):
                    tile = torch.from_numpy(scaler(x[lo : lo + EVAL_TILE])).to(self.device)
                    values1[lo : lo + EVAL_TILE] = model(tile)[0].double().cpu().numpy()
            yield values1

    def _stacked(self, group: BatchedMLP, x: NDArray[np.float64]) -> NDArray[np.float64]:
        scaler = self.scalers[0]
        out = torch.empty((group.members, len(x)), dtype=torch.float64, device=self.device)
        for lo in range(0, len(x), STACK_TILE):
            tile = torch.from_numpy(scaler(x[lo : lo + STACK_TILE])).to(self.device)
            out[:, lo : lo + STACK_TILE] = group(tile).double()
        result: NDArray[np.float64] = out.cpu().numpy()
        return result
