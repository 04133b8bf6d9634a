"""Ratio ensembles on disk, and their evaluation.

A collection directory holds one sub-directory per label (``signal``, ``background``, ...)::

    <label>/ensemble.json          label, numerator/reference process, observables, architecture, members
    <label>/member_0003.safetensors  weights of one member + its input scaler (``scaler.mean``/``scaler.std``)
    <label>/curves.json            training and holdout loss per epoch, per member

A training chunk writes a collection with one label; ``gather`` merges chunks member by member.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file

from nsbiflow.physics.collection import CURVES, MANIFEST, gather, labels_in
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
from nsbiflow.physics.training import Scaler, TrainedMember, pick_device

__all__ = ["CURVES", "MANIFEST", "Ensemble", "gather", "labels_in", "save_members"]

Aggregate = Literal["mean", "median"]
EVAL_TILE = 8192  # events per forward pass in evaluation (one member at a time)
STACK_GROUP = 32  # members per stacked model (CUDA)
STACK_TILE = 16384  # events per forward pass of a stacked model: activations 32 x 16384 x width floats


def save_members(
    directory: Path,
    label: str,
    members: Sequence[TrainedMember],
    scaler: Scaler,
    mlp: MLPConfig,
    extra: dict[str, Any],
) -> None:
    """Write a one-label collection (``directory/<label>/...``)."""
    target = directory / label
    target.mkdir(parents=True, exist_ok=True)
    entries = []
    for m in members:
        tensors = dict(m.state)
        tensors["scaler.mean"] = torch.from_numpy(scaler.mean.copy())
        tensors["scaler.std"] = torch.from_numpy(scaler.std.copy())
        save_file(tensors, str(target / f"{m.name}.safetensors"), metadata={"label": label})
        entries.append({"name": m.name, "file": f"{m.name}.safetensors", **m.info})
    manifest = {"label": label, "mlp": mlp.model_dump(), **extra, "members": entries}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (target / CURVES).write_text(json.dumps({m.name: m.curves for m in members}, sort_keys=True) + "\n")


@dataclass
class Ensemble:
    """A loaded ensemble of one label, ready to evaluate log-ratios."""

    label: str
    manifest: dict[str, Any]
    models: list[tuple[BatchedMLP, Scaler]]
    stacked: list[BatchedMLP] = field(default_factory=list)
    """Members stacked in groups of ``STACK_GROUP`` on the device (CUDA); empty: one member at a time."""

    @property
    def observables(self) -> list[str]:
        """Observable names the members were trained on."""
        return list(self.manifest.get("observables", []))

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.models)

    @classmethod
    def load(cls, directory: Path, label: str | None = None, stack: bool | None = None) -> Ensemble:
        """Load ``directory/<label>`` (or ``directory`` itself when it has the manifest).

        ``stack``: evaluate the members stacked in batched models (``None``: on CUDA, where one launch per
        group of members instead of one per member is the lever; a CPU keeps the member loop, measured faster
        with a few cores). Stacking needs one input scaler for all members (else the member loop is used).
        """
        target = directory / label if label and not (directory / MANIFEST).exists() else directory
        if not (target / MANIFEST).exists():
            have = ", ".join(labels_in(directory)) or "none"
            raise StageError(f"{directory}: no ensemble {label!r} (labels found: {have}); check the ensembles input")
        manifest = json.loads((target / MANIFEST).read_text())
        mlp = MLPConfig.model_validate(manifest["mlp"])
        device = pick_device()
        states: list[dict[str, torch.Tensor]] = []
        scalers: list[Scaler] = []
        for member in manifest["members"]:
            tensors = load_file(str(target / member["file"]))
            scalers.append(Scaler(mean=tensors.pop("scaler.mean").numpy(), std=tensors.pop("scaler.std").numpy()))
            states.append(tensors)
        if not states:
            raise StageError(f"{target}: ensemble has no members; check the training step")
        one_scaler = all(
            np.array_equal(s.mean, scalers[0].mean) and np.array_equal(s.std, scalers[0].std) for s in scalers
        )
        stacked: list[BatchedMLP] = []
        if (device.type == "cuda" if stack is None else stack) and one_scaler:
            stacked = [
                BatchedMLP.from_member_states(mlp, states[i : i + STACK_GROUP]).to(device).eval()
                for i in range(0, len(states), STACK_GROUP)
            ]
        models = []
        for tensors, scaler in zip(states, scalers, strict=True):
            model = BatchedMLP.from_member_states(mlp, [tensors])
            if not stacked:  # stacked: the per-member models stay on the host (not evaluated)
                model = model.to(device)
            model.eval()
            models.append((model, scaler))
        return cls(label=manifest["label"], manifest=manifest, models=models, stacked=stacked)

    def member_log_ratios(self, x: NDArray[np.float64]) -> Iterator[NDArray[np.float64]]:
        """Log-ratio of each member on events ``x``, one member at a time (memory: one array of len(x))."""
        if self.stacked:
            yield from self._stacked_log_ratios(x)
            return
        with torch.inference_mode():
            for model, scaler in self.models:
                device = next(model.parameters()).device
                out = np.empty(len(x))
                # tiles of EVAL_TILE events: the activations of one tile stay small (and in cache on a CPU),
                # so the transient memory does not scale with the caller's chunk size
                for lo in range(0, len(x), EVAL_TILE):
                    tile = torch.from_numpy(scaler(x[lo : lo + EVAL_TILE])).to(device)
                    out[lo : lo + EVAL_TILE] = model(tile)[0].double().cpu().numpy()
                yield out

    def _stacked_log_ratios(self, x: NDArray[np.float64]) -> Iterator[NDArray[np.float64]]:
        """Log-ratio of each member, a stacked group of members per pass (memory: group x len(x) floats)."""
        scaler = self.models[0][1]
        with torch.inference_mode():
            for group in self.stacked:
                device = next(group.parameters()).device
                out = torch.empty((group.members, len(x)), dtype=torch.float64, device=device)
                for lo in range(0, len(x), STACK_TILE):
                    tile = torch.from_numpy(scaler(x[lo : lo + STACK_TILE])).to(device)
                    out[:, lo : lo + STACK_TILE] = group(tile).double()
                yield from out.cpu().numpy()

    def log_ratio(self, x: NDArray[np.float64], aggregate: Aggregate = "mean") -> tuple[NDArray[Any], NDArray[Any]]:
        """Aggregated log-ratio and the ensemble spread (standard deviation over members)."""
        if aggregate == "median":
            stack = np.stack(list(self.member_log_ratios(x)))
            return np.median(stack, axis=0), stack.std(axis=0)
        # Welford: memory independent of the number of members
        mean = np.zeros(len(x))
        m2 = np.zeros(len(x))
        for k, value in enumerate(self.member_log_ratios(x), start=1):
            delta = value - mean
            mean += delta / k
            m2 += delta * (value - mean)
        return mean, np.sqrt(m2 / max(self.size, 1))
