"""Event samples on disk: the canonical Parquet layout, external Parquet/ROOT input, and validation.

The canonical file holds one float column per observable plus a ``weight`` column. Its Parquet key-value
metadata (``nsbiflow`` key) records the process, the observable names, the generator seed and -- for toy
samples -- the toy model, so later stages can compute exact likelihood ratios.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError

METADATA_KEY = b"nsbiflow"
_TREE_CLASSES = ("TTree", "ROOT::RNTuple")
WEIGHT = "weight"


@dataclass
class Events:
    """A sample: observables ``x`` (n, d), per-event ``weights`` (n,), and descriptive metadata."""

    x: NDArray[np.float64]
    weights: NDArray[np.float64]
    observables: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def process(self) -> str:
        """The process name recorded in the metadata ("unknown" if none)."""
        return str(self.meta.get("process", "unknown"))


def validate_array(x: NDArray[Any], names: Sequence[str], source: str) -> None:
    """Raise ``StageError`` naming the first column with NaN or infinite values."""
    bad = ~np.isfinite(x)
    if bad.any():
        counts = bad.sum(axis=0)
        j = int(np.flatnonzero(counts)[0])
        nan = int(np.isnan(x[:, j]).sum())
        kind = f"{nan} NaN" if nan else f"{int(counts[j])} infinite"
        if nan and counts[j] > nan:
            kind = f"{nan} NaN and {int(counts[j]) - nan} infinite"
        raise StageError(f"{source}: column '{names[j]}' has {kind} values; clean or drop these events")


def events_table(events: Events) -> pa.Table:
    cols = {name: pa.array(events.x[:, j].astype(np.float64)) for j, name in enumerate(events.observables)}
    cols[WEIGHT] = pa.array(events.weights.astype(np.float64))
    meta = {**events.meta, "observables": list(events.observables)}
    table = pa.table(cols)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def write_events(events: Events, path: str | Path, row_group_size: int = 65536) -> None:
    """Write ``events`` as Parquet, deterministically (same content, same bytes)."""
    pq.write_table(
        events_table(events),
        str(path),
        row_group_size=row_group_size,
        compression="zstd",
        use_dictionary=False,
        write_statistics=True,
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``nsbiflow`` metadata of a canonical events file (empty for foreign files)."""
    schema = pq.read_schema(str(path))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise StageError(f"{path}: no such file; check the input binding")
    try:
        # pre_buffer=False: do not read ahead the whole file, so streaming memory stays flat in file size
        return pq.ParquetFile(str(path), pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StageError(f"{path.name}: not a readable Parquet file ({exc}); regenerate or convert it") from None


def _check_columns(available: Sequence[str], wanted: Sequence[str], source: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise StageError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
            f"(has: {', '.join(available)}); name the observables with the 'observables' parameter"
        )


def _check_not_empty(rows: int, source: str) -> None:
    """Refuse an events file with no rows: nothing can be trained, calibrated or fitted on it."""
    if rows == 0:
        raise StageError(f"{source}: the file has no events (zero rows); check the selection that produced it")


def read_events(path: str | Path, observables: Sequence[str] | None = None) -> Events:
    """Read a canonical events file (all of it), validating columns and finiteness."""
    path = Path(path)
    pf = _open_parquet(path)
    meta = read_metadata(path)
    names = list(observables or meta.get("observables") or [c for c in pf.schema_arrow.names if c != WEIGHT])
    _check_columns(pf.schema_arrow.names, names, path.name)
    table = pf.read(columns=[*names, *([WEIGHT] if WEIGHT in pf.schema_arrow.names else [])])
    x = np.column_stack([table.column(n).to_numpy().astype(np.float64) for n in names]) if names else np.empty((0, 0))
    _check_not_empty(len(x), path.name)
    validate_array(x, names, path.name)
    w = table.column(WEIGHT).to_numpy().astype(np.float64) if WEIGHT in table.column_names else np.ones(len(x))
    validate_array(w[:, None], [WEIGHT], path.name)
    return Events(x=x, weights=w, observables=names, meta=meta)


def iter_events(path: str | Path, batch_size: int, observables: Sequence[str] | None = None) -> Iterator[Events]:
    """Stream a canonical events file in batches of at most ``batch_size`` rows (bounded memory)."""
    path = Path(path)
    pf = _open_parquet(path)
    meta = read_metadata(path)
    names = list(observables or meta.get("observables") or [c for c in pf.schema_arrow.names if c != WEIGHT])
    _check_columns(pf.schema_arrow.names, names, path.name)
    has_w = WEIGHT in pf.schema_arrow.names
    for batch in pf.iter_batches(batch_size=batch_size, columns=[*names, *([WEIGHT] if has_w else [])]):
        x = np.column_stack([batch.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names])
        validate_array(x, names, path.name)
        w = batch.column(WEIGHT).to_numpy(zero_copy_only=False).astype(np.float64) if has_w else np.ones(len(x))
        yield Events(x=x, weights=w, observables=names, meta=meta)


def count_events(path: str | Path) -> int:
    """Number of rows of a Parquet file, from its footer."""
    return int(_open_parquet(Path(path)).metadata.num_rows)


def root_tree(root: Any, tree: str | None, label: str) -> tuple[str, Any]:
    """``(name, tree)`` of the TTree/RNTuple named ``tree`` in an open uproot file (the only one when ``tree`` is
    None); a one-line ``StageError`` naming what the file has otherwise."""
    trees = sorted({k.split(";")[0] for k, cls in root.classnames().items() if cls in _TREE_CLASSES})
    name = tree or (trees[0] if len(trees) == 1 else None)
    if name is None or name not in trees:
        hint = f"has: {', '.join(trees) or 'no TTree or RNTuple'}"
        raise StageError(f"{label}: TTree {tree!r} not found ({hint}); set the 'tree' parameter")
    return name, root[name]


def load_external(
    path: str | Path, observables: Sequence[str], tree: str | None = None, weight_column: str | None = None
) -> Events:
    """Read foreign events: a Parquet file or a ROOT TTree/RNTuple (uproot), keeping the named observables.

    Raises ``StageError`` with one line for a missing file, tree or column, or non-finite values.
    """
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such file; check the 'source' input")
    wanted = [*observables, *([weight_column] if weight_column else [])]
    if not observables:
        raise StageError(f"{path.name}: no observables named; set the 'observables' parameter (a list of columns)")
    columns: dict[str, NDArray[Any]]
    if path.suffix.lower() == ".root":
        import uproot

        try:
            with uproot.open(str(path)) as root:
                name, ttree = root_tree(root, tree, path.name)
                _check_columns(list(ttree.keys()), wanted, f"{path.name}:{name}")
                arrays = ttree.arrays(wanted, library="np")
                columns = {k: np.asarray(arrays[k]) for k in wanted}
        except StageError:
            raise
        except Exception as exc:  # uproot reports a damaged file as OSError, ValueError or its own errors
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise StageError(
                f"{path.name}: not a readable ROOT file (truncated or damaged? {type(exc).__name__}: {first})"
            ) from None
    else:
        pf = _open_parquet(path)
        _check_columns(pf.schema_arrow.names, wanted, path.name)
        table = pf.read(columns=wanted)
        columns = {k: table.column(k).to_numpy(zero_copy_only=False) for k in wanted}
    for k, v in columns.items():
        if v.dtype == object or v.ndim != 1:
            raise StageError(f"{path.name}: column '{k}' is not a flat numeric column; flatten it first")
    x = np.column_stack([columns[k].astype(np.float64) for k in observables])
    _check_not_empty(len(x), path.name)
    validate_array(x, list(observables), path.name)
    w = columns[weight_column].astype(np.float64) if weight_column else np.ones(len(x))
    validate_array(w[:, None], [weight_column or WEIGHT], path.name)
    return Events(x=x, weights=w, observables=list(observables), meta={"source": path.name})
