"""The optimiser every trainer of the physics package uses: Adam with its fused kernel.

``fused=True`` runs one kernel over all parameters per step, on CUDA and (since torch 2.4) on the CPU. Measured
on 2 CPU cores for the 4x1000 MLP of two members (6M parameters): ~100-150 ms a step, against ~500-600 ms
for the multi-tensor (``foreach``) path the trainers used before and ~500 ms for the per-tensor one
(``benchmarks/training.py``; with a batch of 2048 events a step's GEMMs take about 1 s there).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over ``params`` with the fused kernel where torch has one for their device and dtype."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # a device or dtype without a fused kernel: the multi-tensor path
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
