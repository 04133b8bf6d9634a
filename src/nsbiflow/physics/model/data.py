"""Per-sample arrays the fit reads: columns of ``infer`` outputs (or raw event files), keyed by sample name.

A sample's name is the ``process`` recorded in its file's metadata, else the file stem. A ``Table`` is
plain columns in memory, so a pseudo-experiment harness can build one without any file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import read_metadata

FloatArray = NDArray[np.float64]


@dataclass
class Table:
    """Columns of one sample (observables, ``weight``, ``in_support``, ``logr_<label>``, ...)."""

    name: str
    columns: dict[str, FloatArray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.weights)

    @property
    def weights(self) -> FloatArray:
        """Per-event weights (1 when the sample has none)."""
        if "weight" not in self.columns:
            n = len(next(iter(self.columns.values()))) if self.columns else 0
            self.columns["weight"] = np.ones(n)
        return self.columns["weight"]

    @property
    def in_support(self) -> NDArray[np.bool_]:
        """Which events lie in the ratios' support (all, when no support was evaluated)."""
        if "in_support" in self.columns:
            return np.asarray(self.columns["in_support"]).astype(bool)
        return np.ones(len(self), dtype=bool)

    def col(self, name: str, hint: str = "") -> FloatArray:
        """A column, or a one-line error naming the sample, the column and what to do."""
        if name not in self.columns:
            have = ", ".join(sorted(c for c in self.columns if c.startswith("logr_") and not c.endswith("_std")))
            raise StageError(
                f"sample '{self.name}': no column '{name}' (has: {have or 'no ratios'}); "
                + (hint or "evaluate that ensemble on this sample in an infer step")
            )
        return self.columns[name]

    def select(self, mask: NDArray[np.bool_], name: str | None = None) -> Table:
        """The rows in ``mask``."""
        return Table(name or self.name, {k: np.asarray(v)[mask] for k, v in self.columns.items()}, dict(self.meta))

    def take(self, rows: NDArray[np.int64]) -> Table:
        """The rows at positions ``rows`` (repeats allowed)."""
        return Table(self.name, {k: np.asarray(v)[rows] for k, v in self.columns.items()}, dict(self.meta))


def concatenate(tables: Sequence[Table], name: str) -> Table:
    """Rows of several tables with the same columns (columns missing in any table are dropped)."""
    common = set(tables[0].columns)
    for t in tables[1:]:
        common &= set(t.columns)
    return Table(name, {c: np.concatenate([np.asarray(t.columns[c]) for t in tables]) for c in sorted(common)})


def read_table(path: Path) -> Table:
    """One Parquet file into memory (the fit needs all events at once)."""
    try:
        table = pq.read_table(str(path))
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise StageError(f"{path.name}: not a readable Parquet file ({error})") from None
    cols = {}
    for name in table.column_names:
        values = table.column(name).to_numpy()
        cols[name] = values.astype(bool) if name == "in_support" else values.astype(np.float64)
    meta = read_metadata(path)
    return Table(str(meta.get("process", path.stem)), cols, meta)


def _merge_into(target: Table, extra: Table, where: str) -> None:
    for name, column in extra.columns.items():
        if name not in target.columns:
            target.columns[name] = column
        elif name.startswith("logr_"):
            raise StageError(
                f"fit: {where}: sample '{extra.name}' has '{name}' twice; bind each ensemble's ratios once"
            )
        elif len(column) != len(target.columns[name]) or not np.array_equal(target.columns[name], column):
            raise StageError(
                f"fit: {where}: sample '{extra.name}': column '{name}' differs between ratios folders; "
                "evaluate every ensemble on the same event files"
            )


def read_samples(folders: Sequence[Path], files: Sequence[Path] = ()) -> tuple[dict[str, Table], dict[str, Any]]:
    """Samples from ``infer`` folders (merged by sample name) and raw event files, plus merged ``inference.json``."""
    tables: dict[str, Table] = {}
    info: dict[str, Any] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.parquet")):
            table = read_table(path)
            if table.name in tables:
                _merge_into(tables[table.name], table, folder.name)
            else:
                tables[table.name] = table
        if (folder / "inference.json").exists():
            for key, value in json.loads((folder / "inference.json").read_text()).items():
                if isinstance(value, dict):
                    info.setdefault(key, {}).update(value)
                else:
                    info[key] = value
    for path in files:
        table = read_table(path)
        if table.name in tables:
            _merge_into(tables[table.name], table, path.name)
        else:
            tables[table.name] = table
    return tables, info


def require(tables: Mapping[str, Table], names: Sequence[str], where: str) -> None:
    """A one-line error listing every sample the model names that no input provides."""
    missing = [n for n in names if n not in tables]
    if missing:
        raise StageError(
            f"{where}: the model names sample(s) {', '.join(missing)} that no input provides (have: "
            f"{', '.join(sorted(tables)) or 'none'}); add them to infer's samples or the fit's events"
        )
