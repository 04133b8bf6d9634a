"""Evaluating saved ensemble members without torch: the input scaler, the MLP forward pass, the device choice.

Why a hand-written forward pass when torch has one: on a CPU, ``import torch`` alone costs about 1.5 s per
stage process, more than evaluating a toy ensemble on every held-out event. ``calibrate``, ``infer`` and the
support check run in every reinterpretation, so when they evaluate on one CPU thread (the engine sets
``OMP_NUM_THREADS`` from the step's cpu request) they use numpy: a few matrix products per layer, float32 like
torch, tested to agree with torch's ``BatchedMLP`` to 1e-5, and as fast as torch on one thread (3.4e6 vs
3.6e6 member-events/s for the toy's 3x64 MLP). With more threads torch is used (6.3e6 on 2 threads: numpy's
BLAS does not split matrices this small), and on a CUDA device too (``ensemble_torch.py``), where stacking
members into one batched model is the lever.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError

Device = Literal["cpu", "cuda"]
DEVICE_ENV = "NSBIFLOW_DEVICE"
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")
FORWARD_TILE = 2048  # events per forward pass on a CPU: the activations of a tile stay in cache (measured best)


@dataclass
class Scaler:
    """Standardisation of the inputs (computed on numerator and reference together)."""

    mean: NDArray[np.float32]
    std: NDArray[np.float32]

    @classmethod
    def fit(cls, x: NDArray[np.float64]) -> Scaler:
        """Mean and standard deviation per column."""
        std = x.std(axis=0)
        std[std == 0] = 1.0
        return cls(mean=x.mean(axis=0).astype(np.float32), std=std.astype(np.float32))

    def __call__(self, x: NDArray[np.float64]) -> NDArray[np.float32]:
        return ((x - self.mean) / self.std).astype(np.float32)


def evaluation_device() -> Device:
    """Where ensembles are evaluated: ``NSBIFLOW_DEVICE`` (cpu, cuda, auto), auto = CUDA when torch sees one.

    torch is imported only when an NVIDIA driver is present and ``CUDA_VISIBLE_DEVICES`` does not hide
    every device, so a CPU-only stage never pays for it.
    """
    choice = os.environ.get(DEVICE_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "cpu", "cuda"):
        raise StageError(f"{DEVICE_ENV}={choice!r}: expected cpu, cuda or auto")
    if choice == "cpu":
        return "cpu"
    if choice == "auto":
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
        if hidden or not NVIDIA_DRIVER.exists():
            return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise StageError(f"{DEVICE_ENV}=cuda but torch sees no CUDA device; unset it or use a GPU node")
    return "cpu"


def cpu_threads() -> int:
    """Threads a stage may use on the CPU: ``OMP_NUM_THREADS`` (set by the engine), else the machine's cores."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else os.cpu_count() or 1


def _silu(h: NDArray[np.float32]) -> NDArray[np.float32]:
    # h * sigmoid(h) with sigmoid(h) = (1 + tanh(h / 2)) / 2: numpy's float32 tanh is twice as fast as exp here
    t = h * np.float32(0.5)
    np.tanh(t, out=t)
    t += np.float32(1.0)
    t *= np.float32(0.5)
    h *= t
    return h


def _relu(h: NDArray[np.float32]) -> NDArray[np.float32]:
    np.maximum(h, 0.0, out=h)
    return h


def _tanh(h: NDArray[np.float32]) -> NDArray[np.float32]:
    np.tanh(h, out=h)
    return h


ACTIVATIONS = {"silu": _silu, "relu": _relu, "tanh": _tanh}


@dataclass
class NumpyMember:
    """One saved member as numpy arrays: weights stored ``(in, out)`` so a layer is ``h @ w + b``."""

    weights: list[NDArray[np.float32]]
    biases: list[NDArray[np.float32]]
    scaler: Scaler
    activation: str

    @classmethod
    def from_state(cls, tensors: dict[str, NDArray[Any]], activation: str) -> NumpyMember:
        """From a saved member (``layers.{i}.weight`` (out, in), ``layers.{i}.bias``, ``scaler.*``)."""
        if activation not in ACTIVATIONS:
            raise StageError(f"unknown activation {activation!r} (known: {', '.join(ACTIVATIONS)})")
        n_layers = sum(1 for key in tensors if key.startswith("layers.") and key.endswith(".weight"))
        try:
            weights = [np.ascontiguousarray(tensors[f"layers.{i}.weight"].T, np.float32) for i in range(n_layers)]
            biases = [np.asarray(tensors[f"layers.{i}.bias"], np.float32) for i in range(n_layers)]
            scaler = Scaler(np.asarray(tensors["scaler.mean"]), np.asarray(tensors["scaler.std"]))
        except KeyError as exc:
            raise StageError(f"member file lacks tensor {exc.args[0]!r}; re-run the training step") from None
        return cls(weights, biases, scaler, activation)

    def __call__(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Logit (the log-ratio) on events ``x``, in tiles of ``FORWARD_TILE`` events."""
        act = ACTIVATIONS[self.activation]
        last = len(self.weights) - 1
        out = np.empty(len(x))
        for lo in range(0, len(x), FORWARD_TILE):
            h = self.scaler(x[lo : lo + FORWARD_TILE])
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = h @ w
                h += b
                if i < last:
                    h = act(h)
            out[lo : lo + FORWARD_TILE] = h[:, 0]
        return out
