"""Streaming inference: every ensemble member on every event, chunk by chunk.

Peak memory is one chunk of events times a few columns, whatever the number of events (Parquet is read
and written one row group at a time) and whatever the number of members (the ensemble mean and spread
are accumulated member by member, Welford's algorithm). Per event and per ensemble label it writes the
aggregated log-ratio and its spread (float32) and the support flag. It knows ensembles by label only (never
a process role or a simulator): the statistical model says what each label means, and the fit evaluates a
simulator's exact densities itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nsbiflow.physics.ensemble import Aggregate, Ensemble
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import METADATA_KEY, count_events, iter_events, read_metadata
from nsbiflow.physics.support import SupportModel

ProgressFn = Callable[[int, int, str], None]


@dataclass
class Target:
    """An ensemble label with its numerator/denominator processes and normalisation."""

    ensemble: Ensemble
    numerator: str
    denominator: str
    log_norm: float = 0.0


def load_targets(collections: Sequence[Path]) -> dict[str, Target]:
    """All labelled ensembles of the given collection directories."""
    from nsbiflow.physics.ensemble import labels_in

    targets: dict[str, Target] = {}
    for directory in collections:
        labels = labels_in(directory)
        if not labels:
            raise StageError(f"{directory}: no ensemble found; bind the gather-ensemble outputs to 'ensembles'")
        for label in labels:
            if label in targets:
                raise StageError(f"{directory}: ensemble '{label}' given twice; bind each gathered label once")
            ens = Ensemble.load(directory, label)
            targets[label] = Target(
                ens, ens.manifest.get("numerator", label), ens.manifest.get("reference", "reference")
            )
    return targets


def normalise(
    targets: dict[str, Target], samples: dict[str, Path], batch_size: int, aggregate: Aggregate
) -> dict[str, float]:
    """Set each target's ``log_norm`` so that the mean of r over its denominator sample is 1."""
    out: dict[str, float] = {}
    for label, target in targets.items():
        path = samples.get(target.denominator)
        if path is None:  # silently unnormalised ratios would bias every fit downstream
            raise StageError(
                f"infer: ensemble '{label}' is normalised over its denominator '{target.denominator}', but no "
                f"'{target.denominator}' sample is among the inputs; add it to samples or set normalise: false"
            )
        total, wsum = 0.0, 0.0
        for batch in iter_events(path, batch_size, target.ensemble.observables or None):
            log_r, _ = target.ensemble.log_ratio(batch.x, aggregate)
            total += float(np.sum(batch.weights * np.exp(log_r)))
            wsum += float(np.sum(batch.weights))
        target.log_norm = float(np.log(total / wsum))
        out[label] = total / wsum
    return out


def infer_file(
    path: Path,
    out: Path,
    targets: dict[str, Target],
    support: SupportModel | None,
    batch_size: int,
    aggregate: Aggregate,
    progress: ProgressFn | None = None,
) -> int:
    """Evaluate all targets on one events file, streaming; returns the number of events written."""
    meta = read_metadata(path)
    observables = meta.get("observables")
    for label, target in targets.items():
        if target.ensemble.observables and observables and target.ensemble.observables != observables:
            raise StageError(
                f"{path.name}: observables {observables} differ from those ensemble '{label}' was trained on "
                f"({target.ensemble.observables})"
            )
    total = count_events(path)
    writer: pq.ParquetWriter | None = None
    done = 0
    try:
        for batch in iter_events(path, batch_size):
            cols: dict[str, Any] = {n: pa.array(batch.x[:, j]) for j, n in enumerate(batch.observables)}
            cols["weight"] = pa.array(batch.weights)
            for label, target in targets.items():
                log_r, spread = target.ensemble.log_ratio(batch.x, aggregate)
                cols[f"logr_{label}"] = pa.array((log_r - target.log_norm).astype(np.float32))
                cols[f"logr_{label}_std"] = pa.array(spread.astype(np.float32))
            inside = support.contains(batch.x) if support is not None else np.ones(len(batch), dtype=bool)
            cols["in_support"] = pa.array(inside)
            table = pa.table(cols)
            if writer is None:
                info = {
                    "process": meta.get("process", path.stem),
                    "source": path.name,
                    "aggregate": aggregate,
                    "labels": sorted(targets),
                    "observables": batch.observables,
                }
                schema = table.schema.with_metadata({METADATA_KEY: json.dumps(info, sort_keys=True).encode()})
                writer = pq.ParquetWriter(str(out), schema, compression="zstd", use_dictionary=False)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            done += len(batch)
            if progress:
                progress(done, total, path.name)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise StageError(f"{path.name}: no events; an empty sample cannot be evaluated")
    return done
