"""The events of every toy at one parameter point, evaluated once: ratios per event pool, rows per toy.

``draw_pool`` runs a generator ``n`` times and keeps where each toy's rows start and end; ``Evaluator`` adds the
columns ``infer`` writes (``logr_<label>`` shifted by the label's normalisation from ``inference.json``, the
support flag) to a whole pool at once, in chunks; ``split`` hands the toys their tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.ensemble import Aggregate
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.inference import Target
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.pseudo.generators import DataFn
from nsbiflow.physics.support import SupportModel

FloatArray = NDArray[np.float64]
ProgressFn = Callable[[int, int, str], None]


@dataclass
class Pool:
    """Region -> all toys' events, and each toy's row range (``bounds[region][k]`` .. ``bounds[region][k + 1]``)."""

    events: dict[str, FloatArray]
    bounds: dict[str, NDArray[np.int64]]

    @property
    def n_toys(self) -> int:
        """How many toys the pool holds."""
        return len(next(iter(self.bounds.values()))) - 1 if self.bounds else 0


def draw_pool(draw: DataFn, n: int, rng: np.random.Generator) -> Pool:
    """``n`` pseudo-datasets from ``draw``, kept as one array per region."""
    parts: dict[str, list[FloatArray]] = {}
    for _ in range(n):
        for region, x in draw(rng).items():
            parts.setdefault(region, []).append(x)
    events = {r: np.concatenate(xs) for r, xs in parts.items()}
    bounds = {r: np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64) for r, xs in parts.items()}
    return Pool(events, bounds)


@dataclass
class Evaluator:
    """Per-event columns of the fit: observables, ratios (normalised like ``infer``'s) and the support flag."""

    observables: Sequence[str]
    targets: Mapping[str, Target]
    support: SupportModel | None = None
    aggregate: Aggregate = "mean"
    batch_size: int = 50000

    def columns(self, x: FloatArray, with_ratios: bool, progress: ProgressFn | None = None) -> dict[str, FloatArray]:
        """The columns of events ``x`` (``with_ratios`` false: observables only, e.g. a binned region)."""
        cols: dict[str, FloatArray] = {n: np.ascontiguousarray(x[:, j]) for j, n in enumerate(self.observables)}
        if not with_ratios:
            return cols
        for label, target in self.targets.items():
            wanted = target.ensemble.observables
            if wanted and list(wanted) != list(self.observables):
                raise StageError(
                    f"toys: ensemble '{label}' was trained on {list(wanted)}, the generator draws "
                    f"{list(self.observables)}"
                )
        logr = {label: np.empty(len(x)) for label in self.targets}
        inside = np.ones(len(x), dtype=bool)
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            for label, target in self.targets.items():
                logr[label][start : start + len(chunk)] = target.ensemble.log_ratio(chunk, self.aggregate)[0]
                logr[label][start : start + len(chunk)] -= target.log_norm
            if self.support is not None:
                inside[start : start + len(chunk)] = self.support.contains(chunk)
            if progress:
                progress(min(start + self.batch_size, len(x)), len(x), "events evaluated")
        for label, values in logr.items():
            # float32 like infer's files, so a toy's columns are what a fit of the same events would read
            cols[f"logr_{label}"] = values.astype(np.float32).astype(np.float64)
        cols["in_support"] = inside
        return cols


def split(pool: Pool, columns: Mapping[str, dict[str, FloatArray]]) -> list[dict[str, Table]]:
    """Each toy's region tables (row slices of the pool's columns)."""
    toys = []
    for k in range(pool.n_toys):
        data = {}
        for region, cols in columns.items():
            lo, hi = pool.bounds[region][k], pool.bounds[region][k + 1]
            data[region] = Table(f"toy{k}", {name: values[lo:hi] for name, values in cols.items()})
        toys.append(data)
    return toys
