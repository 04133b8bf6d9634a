"""A hand-written training step for K stacked MLP members: one GEMM per layer and pass, no autograd.

``StackedMLP`` holds each layer of all members as one tensor ``(K, fan_in + 1, fan_out)`` whose last row is
the bias, and keeps a column of ones after every layer's input, so a layer's forward, its input gradient and
its weight-and-bias gradient are each a single batched matrix product (``torch.bmm`` into preallocated
buffers): no bias broadcast copy before the GEMM and no separate reduction for the bias gradient. The
activation's backward runs in place on the incoming gradient; the loss gradient is written by hand.
Everything a step writes (activations, gradients) lives in buffers allocated once per training run, backed
by transparent huge pages where the kernel allows it (``madvise``), so a step neither allocates nor faults
in fresh pages. Measured against the autograd path of ``BatchedMLP`` in ``benchmarks/training.py``; tested
to give the same gradients in ``tests/physics/test_stacked.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

_HUGE = 2 << 20  # bytes of a transparent huge page on x86-64
_MADV_HUGEPAGE = 14
_LIBC: ctypes.CDLL | None = None


def _madvise_huge(t: torch.Tensor) -> None:
    """Ask the kernel to back ``t``'s (2 MB-aligned) memory with huge pages; a no-op where it cannot."""
    global _LIBC
    if t.device.type != "cpu" or t.numel() * t.element_size() < _HUGE:
        return
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        start = (t.data_ptr() + _HUGE - 1) // _HUGE * _HUGE
        end = (t.data_ptr() + t.numel() * t.element_size()) // _HUGE * _HUGE
        if end > start:
            _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)
    except (OSError, AttributeError):  # pragma: no cover - no libc madvise: ordinary pages
        pass


def _buffer(numel: int, device: torch.device) -> torch.Tensor:
    """A flat float32 buffer of ``numel`` entries, 2 MB-aligned and huge-page backed on a CPU."""
    if device.type != "cpu":
        return torch.empty(numel, device=device)
    pad = _HUGE // 4
    raw = torch.empty(numel + pad)
    offset = (-raw.data_ptr() % _HUGE) // 4
    flat = raw[offset : offset + numel]
    _madvise_huge(flat)
    return flat


def _forward_act(name: str) -> Callable[[torch.Tensor, torch.Tensor], object]:
    """``act(z, out)``: the activation of ``z`` written into ``out`` (any strides)."""
    if name == "silu":
        return lambda z, out: torch.ops.aten.silu.out(z, out=out)
    if name == "relu":
        return lambda z, out: torch.clamp_min(z, 0.0, out=out)
    if name == "tanh":
        return lambda z, out: torch.tanh(z, out=out)
    raise ValueError(f"unknown activation {name!r} (known: silu, relu, tanh)")


def _backward_act(name: str) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]:
    """``back(g, z, h)``: ``g`` times the activation's derivative at ``z`` (output ``h``), in place in ``g``."""
    if name == "silu":
        return lambda g, z, h: torch.ops.aten.silu_backward.grad_input(g, z, grad_input=g)
    if name == "relu":
        return lambda g, z, h: torch.ops.aten.threshold_backward.grad_input(g, z, 0.0, grad_input=g)
    if name == "tanh":
        return lambda g, z, h: torch.ops.aten.tanh_backward.grad_input(g, h, grad_input=g)
    raise ValueError(f"unknown activation {name!r} (known: silu, relu, tanh)")


class StackedMLP:
    """K MLP members as bias-augmented stacked weights, with a hand-written loss-and-gradient step.

    ``params[i]`` is layer ``i`` of all members, ``(K, fan_in + 1, fan_out)`` (the last row the bias), an
    ``nn.Parameter`` whose ``.grad`` is a fixed buffer that every ``loss_and_grad`` overwrites (no zeroing).
    Initialised as ``BatchedMLP`` is (the same draws), or from one (``from_batched``).
    """

    def __init__(self, config: MLPConfig, members: int, max_batch: int, device: torch.device | None = None) -> None:
        self.config = config
        self.members = members
        device = device or torch.device("cpu")
        self.device = device
        self.sizes = [config.n_inputs, *config.hidden, 1]
        self.max_batch = max(1, max_batch)
        k = members
        self.params: list[nn.Parameter] = []
        for fan_in, fan_out in itertools.pairwise(self.sizes):
            p = nn.Parameter(_buffer(k * (fan_in + 1) * fan_out, device).view(k, fan_in + 1, fan_out))
            # ``BatchedMLP``'s initialisation, drawn in its order (weight, then bias, layer by layer) straight
            # into the augmented layer: the same values as the autograd path starts from
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                p[:, :fan_in].uniform_(-bound, bound)
                p[:, fan_in:].uniform_(-bound, bound)
            p.grad = _buffer(p.numel(), device).view_as(p)
            self.params.append(p)
        # per layer: its input with a ones column (h), its pre-activation (z); one gradient buffer per width
        bmax = self.max_batch
        self._h = [_buffer(k * bmax * (a + 1), device) for a in self.sizes[:-1]]
        self._z = [_buffer(k * bmax * b, device) for b in self.sizes[1:]]
        self._g = [_buffer(k * bmax * max(self.sizes[1:-1], default=1), device) for _ in range(2)]
        self._act = _forward_act(config.activation)
        self._back = _backward_act(config.activation)
        self._ones_for = 0  # the batch size whose ones columns are in place

    @classmethod
    def from_batched(cls, model: BatchedMLP, max_batch: int) -> StackedMLP:
        """The same members as ``model`` (its current weights copied in)."""
        net = cls(model.config, model.members, max_batch, model.weights[0].device)
        with torch.no_grad():
            for p, w, b in zip(net.params, model.weights, model.biases, strict=True):
                p[:, :-1].copy_(w)
                p[:, -1:].copy_(b)
        return net

    def weights_and_biases(self, layer_params: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Split one member's augmented layers ``(fan_in + 1, fan_out)`` into ``(in, out)`` weights and
        ``(1, out)`` biases (views)."""
        return [p[:-1] for p in layer_params], [p[-1:] for p in layer_params]

    def _views(self, batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        k = self.members
        hs = [buf[: k * batch * (a + 1)].view(k, batch, a + 1) for buf, a in zip(self._h, self.sizes[:-1], strict=True)]
        zs = [buf[: k * batch * b].view(k, batch, b) for buf, b in zip(self._z, self.sizes[1:], strict=True)]
        if self._ones_for != batch:
            for h in hs:
                h[:, :, -1].fill_(1.0)
            self._ones_for = batch
        return hs, zs

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B)`` of inputs ``(K, B, n)`` with ``B <= max_batch``; fills the step's buffers."""
        batch = x.shape[1]
        hs, zs = self._views(batch)
        hs[0][:, :, :-1].copy_(x)
        last = len(self.params) - 1
        for i, p in enumerate(self.params):
            torch.bmm(hs[i], p, out=zs[i])
            if i < last:
                self._act(zs[i], hs[i + 1][:, :, :-1])
        return zs[last].squeeze(-1)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, B)`` of inputs ``(K, B, n)`` (any ``B``: evaluated in chunks of ``max_batch``)."""
        out = [self._forward(x[:, s : s + self.max_batch]).clone() for s in range(0, x.shape[1], self.max_batch)]
        return torch.cat(out, dim=1) if out else x.new_zeros(x.shape[:2])

    @torch.no_grad()
    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Weighted BCE sums ``(K,)`` of one batch (``x`` (K, B, n), ``y`` and ``w`` (K, B)), and into every
        ``params[i].grad`` the gradient of ``sum_k loss_k / sum_b w_kb`` (what the autograd path minimises)."""
        batch = x.shape[1]
        logits = self._forward(x)
        loss_sum = (nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum(dim=1)
        scale = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        g = (torch.sigmoid(logits) - y).mul_(scale).unsqueeze(-1)  # d loss / d logits, (K, B, 1)
        hs, zs = self._views(batch)
        k = self.members
        for i in range(len(self.params) - 1, -1, -1):
            p = self.params[i]
            assert p.grad is not None
            torch.bmm(hs[i].transpose(1, 2), g, out=p.grad)
            if i == 0:
                break
            width = self.sizes[i]
            g_in = self._g[i % 2][: k * batch * width].view(k, batch, width)
            torch.bmm(g, p[:, :-1].transpose(1, 2), out=g_in)
            self._back(g_in, zs[i - 1], hs[i][:, :, :-1])
            g = g_in
        return loss_sum
