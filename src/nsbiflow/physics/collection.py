"""Ensemble collections on disk, without torch: the layout, the labels, and merging chunks (``gather``).

Kept free of torch so the gather stage starts in a fraction of a second (it only copies files and merges
JSON); loading and evaluating members is in ``ensemble.py``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nsbiflow.physics.calibration import CALIBRATION  # the file's name and format are calibration.py's
from nsbiflow.physics.errors import StageError

MANIFEST = "ensemble.json"
CURVES = "curves.json"


def labels_in(directory: Path) -> list[str]:
    """Labels of a collection directory (sorted)."""
    return sorted(p.parent.name for p in directory.glob(f"*/{MANIFEST}"))


def gather(chunks: Sequence[Path], out: Path) -> dict[str, int]:
    """Merge chunk collections into ``out``; returns the member count per label.

    Members must have unique names within a label (chunks get disjoint member ids) and one architecture. A
    label's ``calibration.json`` (calibrate-ratio run on a chunk) is kept when that chunk is the label's only
    one; a calibration of one chunk of several would not calibrate their mean, so it is refused.
    """
    merged: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, Any]] = {}
    seen: dict[str, set[str]] = {}  # member names per label (one set, not rebuilt per chunk: 10^4 members)
    calibrated: dict[str, Path] = {}
    chunks_of: dict[str, int] = {}  # chunks per label
    for chunk in chunks:
        found = labels_in(chunk)
        if not found:
            raise StageError(f"{chunk}: no '<label>/{MANIFEST}' found; is this a train-ratio output?")
        for label in found:
            chunks_of[label] = chunks_of.get(label, 0) + 1
            if (chunk / label / CALIBRATION).exists():
                calibrated[label] = chunk
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
            names = seen.setdefault(label, set())
            for member in manifest["members"]:
                if member["name"] in names:
                    raise StageError(
                        f"{chunk}/{label}: member {member['name']} appears twice; give each chunk its own 'chunk' index"
                    )
                shutil.copyfile(chunk / label / member["file"], target / member["file"])
                merged[label]["members"].append(member)
                names.add(member["name"])
            curves[label].update(json.loads((chunk / label / CURVES).read_text()))
    for label, chunk in calibrated.items():
        if chunks_of[label] > 1:
            raise StageError(
                f"{chunk}/{label}: a calibrated chunk of an ensemble of {chunks_of[label]} chunks; gather the raw "
                "chunks and calibrate the gathered ensemble (calibrate-ratio after gather-ensemble)"
            )
        shutil.copyfile(chunk / label / CALIBRATION, out / label / CALIBRATION)
    for label, manifest in merged.items():
        manifest["members"].sort(key=lambda m: m["name"])
        (out / label / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        (out / label / CURVES).write_text(json.dumps(curves[label], sort_keys=True) + "\n")
    return {label: len(m["members"]) for label, m in merged.items()}
