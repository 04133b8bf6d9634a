"""Train a reweighter of either method and write its directory (``model.py`` describes the layout)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.objects import ObjectEvents
from nsbiflow.physics.reweight.config import BDTConfig, DeepSetsConfig
from nsbiflow.physics.reweight.folds import split
from nsbiflow.physics.reweight.model import CURVES, Normalisation, Reweighter, calibration, columns, write_manifest

ProgressFn = Callable[[int, int, str], None]


def train_reweighter(
    source: ObjectEvents,
    target: ObjectEvents,
    config: DeepSetsConfig | BDTConfig,
    directory: Path,
    *,
    fields: list[str],
    observables: list[str],
    normalisation: Normalisation = "yield",
    label: str = "",
    progress: ProgressFn | None = None,
) -> Reweighter:
    """Train ``target / source`` weights (Deep Sets when ``config`` is a ``DeepSetsConfig``), calibrate them on
    the members' held-out ``source`` events and write ``directory``; returns the loaded reweighter."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "kind": "Reweighter",
        "label": label or f"{source.events.process}_to_{target.events.process}",
        "source": source.events.process,
        "target": target.events.process,
        "observables": observables,
        "n_source": len(source),
        "n_target": len(target),
        "normalisation": normalisation,
        "config": config.model_dump(),
    }
    if isinstance(config, DeepSetsConfig):
        from nsbiflow.physics.reweight import deepsets

        if not fields:
            raise StageError("train-reweighter: deepsets needs object fields; the events have no object collection")
        if target.collection != source.collection:
            raise StageError(
                f"train-reweighter: source objects are '{source.collection}', target '{target.collection}'"
            )
        missing = [f for f in fields if f not in source.fields or f not in target.fields]
        if missing:
            raise StageError(
                f"train-reweighter: object field '{missing[0]}' is not in both samples "
                f"(source has {', '.join(source.fields)}; target {', '.join(target.fields)})"
            )
        columns(source.events, observables, "source")
        columns(target.events, observables, "target")
        members = deepsets.train_deepsets(source, target, fields, observables, config, progress)
        entries = deepsets.save(directory, members)
        (directory / CURVES).write_text(json.dumps({m.name: m.curves for m in members}, sort_keys=True) + "\n")
        manifest |= {
            "method": "deepsets",
            "collection": source.collection,
            "fields": fields,
            "trained": [f"{source.collection}_{f}" for f in fields] + observables,
        }
    else:
        from nsbiflow.physics.reweight import bdt

        if not observables:
            raise StageError("train-reweighter: bdt needs event-level observables; set 'observables'")
        trees = bdt.train_bdt(
            columns(source.events, observables, "source"),
            source.weights,
            columns(target.events, observables, "target"),
            target.weights,
            config,
            progress,
        )
        entries = bdt.save(directory, trees)
        manifest |= {"method": "bdt", "collection": source.collection, "fields": [], "trained": observables}
    manifest["members"] = entries
    manifest["calibration"] = {"log_scale": 0.0}
    write_manifest(directory, manifest)  # uncalibrated, to evaluate the members once
    rw = Reweighter.load(directory)
    sp = split(
        source.weights, target.weights, config.members, config.folds, config.seed, config.bootstrap, "calibration"
    )
    holdout = sp.holdout[:, : len(source)] > 0
    members_log_w = rw.member_log_weights(source, "source")
    manifest["calibration"] = calibration(members_log_w, holdout, source.weights, target.weights, normalisation)
    write_manifest(directory, manifest)
    rw.manifest = manifest
    return rw
