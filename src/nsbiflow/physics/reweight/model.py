"""A trained reweighter on disk, of either method, and its calibrated evaluation.

A reweighter directory holds::

    reweighter.json          method (deepsets | bdt), source/target processes, object fields and event-level
                             observables it reads, the projections it was trained on, configuration,
                             calibration and the members (file, holdout fold, losses, timings)
    member_0000.safetensors  one member: Deep-Sets weights (with the input scaling) or exported trees
    curves.json              training/holdout loss per epoch of every Deep-Sets member

The learned weight of an event is ``w = exp(mean over members of log s/(1-s)) * scale``; the calibration
``scale`` makes the weighted sum of ``w`` over the training MC_a equal the yield of MC_b (``normalisation:
yield``) or the yield of MC_a itself (``normalisation: shape``: a shape-only variation).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import Events, read_events, read_metadata
from nsbiflow.physics.objects import OBJECTS_KEY, ObjectEvents, read_object_events

MANIFEST = "reweighter.json"
CURVES = "curves.json"
Method = Literal["deepsets", "bdt"]
Normalisation = Literal["yield", "shape"]
FloatArray = NDArray[np.float64]


def read_sample(path: Path, fields: list[str] | None = None) -> ObjectEvents:
    """An events file with its objects (when it has a collection) or without (an empty collection)."""
    if isinstance(read_metadata(path).get(OBJECTS_KEY), dict):
        return read_object_events(path, fields)
    if fields:
        raise StageError(
            f"{path.name}: has no object collection, but the reweighter reads objects; give an object events file"
        )
    ev = read_events(path)
    return ObjectEvents(ev, "", np.zeros(len(ev), dtype=np.int64), {})


def columns(ev: Events, observables: list[str], source: str) -> FloatArray:
    """The event-level ``observables`` of ``ev`` as a matrix (one line naming a missing one)."""
    missing = [o for o in observables if o not in ev.observables]
    if missing:
        raise StageError(
            f"{source}: no event-level observable '{missing[0]}' (has: {', '.join(ev.observables) or 'none'}); "
            "check the reweighter's observables"
        )
    return ev.x[:, [ev.observables.index(o) for o in observables]]


def calibration(
    member_log_w: FloatArray,
    holdout: NDArray[np.bool_],
    w_source: FloatArray,
    w_target: FloatArray,
    mode: Normalisation,
) -> dict[str, Any]:
    """The scale that normalises the learned weights over the source, from each member's own holdout events.

    ``member_log_w`` (members, n_source) are the uncalibrated log-weights, ``holdout`` (members, n_source) marks
    the source events each member never trained on: a classifier is biased on its training events (a BDT
    most), so member m's scale is computed on its holdout fold only, and the ensemble's scale is their mean
    in log (the ensemble's log w is the mean of the members' calibrated log w).
    """
    yield_a, yield_b = float(w_source.sum()), float(w_target.sum())
    goal = yield_b / yield_a if mode == "yield" else 1.0
    logs = []
    for f, rows in zip(member_log_w, holdout, strict=True):
        w_hold = w_source[rows]
        logs.append(float(np.log(goal * w_hold.sum() / np.sum(w_hold * np.exp(f[rows])))))
    log_scale = float(np.mean(logs))
    return {
        "log_scale": log_scale,
        "scale": float(np.exp(log_scale)),
        "member_log_scales": logs,
        "yield_source": yield_a,
        "yield_target": yield_b,
        "yield_ratio": yield_b / yield_a,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``reweighter.json`` (last: a directory with it is complete)."""
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@dataclass
class Reweighter:
    """A loaded reweighter: ``log_weights(events)`` gives the calibrated log w and the ensemble spread."""

    directory: Path
    manifest: dict[str, Any]
    backend: Any

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> Reweighter:
        """Load a reweighter directory (Deep-Sets members on ``device``, default CUDA when available)."""
        path = directory / MANIFEST
        if not path.exists():
            raise StageError(f"{directory}: no {MANIFEST}; bind the output of train-reweighter")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); retrain") from None
        if manifest.get("method") == "deepsets":
            from nsbiflow.physics.reweight.deepsets import DeepSetsEnsemble

            backend: Any = DeepSetsEnsemble(directory, manifest, device)
        elif manifest.get("method") == "bdt":
            from nsbiflow.physics.reweight.bdt import BDTEnsemble

            backend = BDTEnsemble(directory, manifest)
        else:
            raise StageError(f"{path}: unknown method {manifest.get('method')!r} (known: deepsets, bdt)")
        return cls(directory, manifest, backend)

    @property
    def method(self) -> str:
        """``deepsets`` or ``bdt``."""
        return str(self.manifest["method"])

    @property
    def fields(self) -> list[str]:
        """The object fields it reads (empty for a BDT)."""
        return list(self.manifest.get("fields", []))

    @property
    def trained(self) -> list[str]:
        """The projections it was trained on (the others are untrained in the closure)."""
        return list(self.manifest.get("trained", []))

    def member_log_weights(self, ev: ObjectEvents, source: str = "events") -> FloatArray:
        """Uncalibrated log w of every member, ``(members, n)``."""
        observables = list(self.manifest["observables"])
        columns(ev.events, observables, source)  # a missing observable is one line naming it
        if self.method == "bdt":
            return np.asarray(self.backend.member_log_weights(columns(ev.events, observables, source)))
        if ev.collection != self.manifest["collection"]:
            have = f"objects are '{ev.collection}'" if ev.collection else "has no object collection"
            raise StageError(
                f"{source}: {have}, the Deep-Sets reweighter reads '{self.manifest['collection']}' objects; "
                "give an object events file"
            )
        return np.asarray(self.backend.member_log_weights(ev))

    def log_weights(self, ev: ObjectEvents, source: str = "events") -> tuple[FloatArray, FloatArray]:
        """Calibrated log w (mean over members + log scale) and the spread over members."""
        members = self.member_log_weights(ev, source)
        return members.mean(axis=0) + float(self.manifest["calibration"]["log_scale"]), members.std(axis=0)
