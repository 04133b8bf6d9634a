"""Ratio ensembles on disk, and their evaluation.

A collection directory holds one sub-directory per label (``signal``, ``background``, ...)::

    <label>/ensemble.json          label, numerator/reference process, observables, architecture, members
    <label>/member_0003.safetensors  weights of one member + its input scaler (``scaler.mean``/``scaler.std``)
    <label>/curves.json            training and holdout loss per epoch, per member

A training chunk writes a collection with one label; ``gather`` merges chunks member by member.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
from nsbiflow.physics.training import Scaler, TrainedMember, pick_device

MANIFEST = "ensemble.json"
CURVES = "curves.json"

Aggregate = Literal["mean", "median"]


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


def labels_in(directory: Path) -> list[str]:
    """Labels of a collection directory (sorted)."""
    return sorted(p.parent.name for p in directory.glob(f"*/{MANIFEST}"))


def gather(chunks: Sequence[Path], out: Path) -> dict[str, int]:
    """Merge chunk collections into ``out``; returns the member count per label.

    Members must have unique names within a label (chunks get disjoint member ids) and one architecture.
    """
    merged: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, Any]] = {}
    for chunk in chunks:
        found = labels_in(chunk)
        if not found:
            raise StageError(f"{chunk}: no '<label>/{MANIFEST}' found; is this a train-ratio output?")
        for label in found:
            manifest = json.loads((chunk / label / MANIFEST).read_text())
            target = out / label
            target.mkdir(parents=True, exist_ok=True)
            if label not in merged:
                merged[label] = {**manifest, "members": []}
                curves[label] = {}
            elif manifest["mlp"] != merged[label]["mlp"]:
                raise StageError(
                    f"{chunk}/{label}: architecture differs from the other chunks; retrain with one config"
                )
            names = {m["name"] for m in merged[label]["members"]}
            for member in manifest["members"]:
                if member["name"] in names:
                    raise StageError(
                        f"{chunk}/{label}: member {member['name']} appears twice; give each chunk its own 'chunk' index"
                    )
                shutil.copyfile(chunk / label / member["file"], target / member["file"])
                merged[label]["members"].append(member)
            curves[label].update(json.loads((chunk / label / CURVES).read_text()))
    for label, manifest in merged.items():
        manifest["members"].sort(key=lambda m: m["name"])
        (out / label / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (out / label / CURVES).write_text(json.dumps(curves[label], sort_keys=True) + "\n")
    return {label: len(m["members"]) for label, m in merged.items()}


@dataclass
class Ensemble:
    """A loaded ensemble of one label, ready to evaluate log-ratios."""

    label: str
    manifest: dict[str, Any]
    models: list[tuple[BatchedMLP, Scaler]]

    @property
    def observables(self) -> list[str]:
        """Observable names the members were trained on."""
        return list(self.manifest.get("observables", []))

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.models)

    @classmethod
    def load(cls, directory: Path, label: str | None = None) -> Ensemble:
        """Load ``directory/<label>`` (or ``directory`` itself when it has the manifest)."""
        target = directory / label if label and not (directory / MANIFEST).exists() else directory
        if not (target / MANIFEST).exists():
            have = ", ".join(labels_in(directory)) or "none"
            raise StageError(f"{directory}: no ensemble {label!r} (labels found: {have}); check the ensembles input")
        manifest = json.loads((target / MANIFEST).read_text())
        mlp = MLPConfig.model_validate(manifest["mlp"])
        models = []
        for member in manifest["members"]:
            tensors = load_file(str(target / member["file"]))
            scaler = Scaler(mean=tensors.pop("scaler.mean").numpy(), std=tensors.pop("scaler.std").numpy())
            model = BatchedMLP.from_member_states(mlp, [tensors]).to(pick_device())
            model.eval()
            models.append((model, scaler))
        if not models:
            raise StageError(f"{target}: ensemble has no members; check the training step")
        return cls(label=manifest["label"], manifest=manifest, models=models)

    def member_log_ratios(self, x: NDArray[np.float64]) -> Iterator[NDArray[np.float64]]:
        """Log-ratio of each member on events ``x``, one member at a time (memory: one array of len(x))."""
        with torch.no_grad():
            for model, scaler in self.models:
                device = next(model.parameters()).device
                out = model(torch.from_numpy(scaler(x)).to(device))[0].double().cpu().numpy()
                yield np.asarray(out)

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
