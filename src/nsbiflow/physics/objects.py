"""Events with variable-length object lists (jets, particle-flow candidates, ...), stored without padding.

An object events file is a canonical events file (``events.py``: one float column per event-level observable,
``weight``, the ``nsbiflow`` key-value metadata) plus one Parquet ``list<double>`` column per object field,
named ``<collection>_<field>`` (``obj_pt``, ``obj_eta``, ...). Every stage that reads events files reads its
event-level observables as usual (the metadata's ``observables`` name only the flat columns); the stages that
use the objects read the list columns too. The metadata records the collection and its fields::

    {"observables": ["n_obj", "ht"], "objects": {"collection": "obj", "fields": ["pt", "eta", "phi", "e"]}, ...}

In memory the objects are kept jagged as well: ``counts`` (objects per event) and one flat array per field,
in event order (the layout of an Arrow list column or an awkward array). ``pad`` makes the padded
``(events, slots, fields)`` array and its mask that a network takes.

External sources: ROOT TTrees with jagged branches (uproot, read as awkward arrays) and foreign Parquet files
with list columns (``load_objects``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import (
    Events,
    events_table,
    load_external,
    read_events,
    read_metadata,
    root_tree,
    validate_array,
)

OBJECTS_KEY = "objects"


@dataclass
class ObjectEvents:
    """Events with one collection of objects: the event-level part and the jagged objects.

    ``counts[i]`` objects belong to event ``i``; ``fields[name]`` holds every object's value of ``name``, event
    after event (length ``counts.sum()``).
    """

    events: Events
    collection: str
    counts: NDArray[np.int64]
    fields: dict[str, NDArray[np.float64]]

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def field_names(self) -> list[str]:
        """The object fields, in storage order."""
        return list(self.fields)

    @property
    def weights(self) -> NDArray[np.float64]:
        """Per-event weights."""
        return self.events.weights

    @property
    def offsets(self) -> NDArray[np.int64]:
        """Start of each event's objects in the flat arrays, and the total at the end (length n + 1)."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    @property
    def event_of_object(self) -> NDArray[np.int64]:
        """The event index of every object (length ``counts.sum()``)."""
        return np.repeat(np.arange(len(self.counts), dtype=np.int64), self.counts)

    def column(self, name: str) -> str:
        """The Parquet column of object field ``name``."""
        return f"{self.collection}_{name}"

    def object_matrix(self, names: Sequence[str] | None = None) -> NDArray[np.float64]:
        """Flat objects as a ``(total, len(names))`` matrix (default: every field)."""
        names = list(names or self.fields)
        return np.column_stack([self.fields[n] for n in names]) if names else np.empty((int(self.counts.sum()), 0))

    def select(self, rows: NDArray[np.int64]) -> ObjectEvents:
        """The events ``rows`` (in that order) with their objects."""
        offsets = self.offsets
        counts = self.counts[rows]
        starts = offsets[rows]
        local = np.arange(int(counts.sum())) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        index = np.repeat(starts, counts) + local
        ev = Events(
            self.events.x[rows], self.events.weights[rows], list(self.events.observables), dict(self.events.meta)
        )
        return ObjectEvents(ev, self.collection, counts, {k: v[index] for k, v in self.fields.items()})


def pad(
    counts: NDArray[np.int64], values: NDArray[np.float64], slots: int | None = None, fill: float = 0.0
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Padded objects ``(n, slots, fields)`` (float32) and the mask of real slots ``(n, slots)``.

    ``slots`` defaults to the largest multiplicity; fewer slots than an event has objects is an error (the
    objects would be lost silently).
    """
    n = len(counts)
    most = int(counts.max()) if n else 0
    slots = most if slots is None else slots
    if slots < most:
        raise ValueError(f"{slots} slots cannot hold an event with {most} objects")
    padded = np.full((n, max(slots, 1), values.shape[1]), fill, dtype=np.float32)
    mask = np.zeros((n, max(slots, 1)), dtype=bool)
    event = np.repeat(np.arange(n), counts)
    slot = np.arange(len(event)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    padded[event, slot] = values
    mask[event, slot] = True
    return padded, mask


def _list_array(counts: NDArray[np.int64], values: NDArray[np.float64]) -> pa.Array:
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.astype(np.float64)))


def write_object_events(ev: ObjectEvents, path: str | Path, row_group_size: int = 65536) -> None:
    """Write event-level columns, ``weight`` and one list column per object field (deterministic bytes)."""
    meta = {**ev.events.meta, OBJECTS_KEY: {"collection": ev.collection, "fields": ev.field_names}}
    table = events_table(Events(ev.events.x, ev.events.weights, ev.events.observables, meta))
    for name, values in ev.fields.items():
        table = table.append_column(ev.column(name), _list_array(ev.counts, values))
    pq.write_table(
        table,
        str(path),
        row_group_size=row_group_size,
        compression="zstd",
        use_dictionary=False,
        write_statistics=True,
    )


def _jagged(column: pa.ChunkedArray | pa.Array, name: str, source: str) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """Counts and flat values of a list column (one line naming the column if it is not one)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        raise StageError(f"{source}: column '{name}' is {array.type}, not a list column; name an object collection")
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0])
        raise StageError(f"{source}: column '{name}' has a null list at row {row}; write an empty list instead")
    counts = array.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    values = array.flatten().to_numpy(zero_copy_only=False)
    return counts, values


def _assemble(
    events: Events, collection: str, columns: dict[str, tuple[NDArray[np.int64], NDArray[Any]]], source: str
) -> ObjectEvents:
    """Check that every field has the same multiplicities and finite numeric values."""
    names = list(columns)
    counts = columns[names[0]][0]
    fields: dict[str, NDArray[np.float64]] = {}
    for name, (c, values) in columns.items():
        if not np.array_equal(c, counts):
            row = int(np.flatnonzero(c != counts)[0])
            raise StageError(
                f"{source}: '{collection}_{name}' has {c[row]} objects in event {row}, '{collection}_{names[0]}' "
                f"has {counts[row]}; the fields of one collection must have the same lengths"
            )
        if values.dtype == object or not np.issubdtype(values.dtype, np.number):
            raise StageError(f"{source}: '{collection}_{name}' is not a list of numbers ({values.dtype})")
        fields[name] = values.astype(np.float64)
        validate_array(fields[name][:, None], [f"{collection}_{name}"], source)
    return ObjectEvents(events, collection, counts.astype(np.int64), fields)


def object_columns(schema: pa.Schema, collection: str) -> list[str]:
    """The fields of ``collection`` among a Parquet schema's list columns, in column order."""
    prefix = f"{collection}_"
    return [
        n[len(prefix) :]
        for n in schema.names
        if n.startswith(prefix)
        and (pa.types.is_list(schema.field(n).type) or pa.types.is_large_list(schema.field(n).type))
    ]


def read_object_events(path: str | Path, fields: Sequence[str] | None = None) -> ObjectEvents:
    """Read an object events file written by ``write_object_events`` (all of it), validated."""
    path = Path(path)
    meta = read_metadata(path)
    info = meta.get(OBJECTS_KEY)
    if not isinstance(info, dict):
        raise StageError(
            f"{path.name}: no object collection in its metadata; produce it with generate-objects or load-objects"
        )
    collection = str(info["collection"])
    names = list(fields or info["fields"])
    missing = [f for f in names if f not in info["fields"]]
    if missing:
        raise StageError(
            f"{path.name}: collection '{collection}' has no field '{missing[0]}' (has: {', '.join(info['fields'])})"
        )
    events = read_events(path)
    table = pq.read_table(str(path), columns=[f"{collection}_{n}" for n in names])
    columns = {n: _jagged(table.column(f"{collection}_{n}"), f"{collection}_{n}", path.name) for n in names}
    return _assemble(events, collection, columns, path.name)


def load_objects(
    path: str | Path,
    collection: str,
    fields: Sequence[str],
    observables: Sequence[str] = (),
    tree: str | None = None,
    weight_column: str | None = None,
) -> ObjectEvents:
    """Read foreign events with objects: a ROOT TTree with jagged branches ``<collection>_<field>`` (uproot,
    read as awkward arrays) or a Parquet file with list columns of those names, plus flat ``observables``.

    Raises ``StageError`` with one line for a missing file, tree or branch, a branch that is not jagged,
    fields of unequal lengths, or non-finite values.
    """
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such file; check the 'source' input")
    if not fields:
        raise StageError(f"{path.name}: no object fields named; set the 'fields' parameter (e.g. [pt, eta, phi])")
    branches = [f"{collection}_{f}" for f in fields]
    columns: dict[str, tuple[NDArray[np.int64], NDArray[Any]]] = {}
    if path.suffix.lower() == ".root":
        columns, n_events = _root_objects(path, branches, fields, tree)
    else:
        try:
            schema = pq.read_schema(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise StageError(f"{path.name}: not a readable Parquet file ({exc}); regenerate or convert it") from None
        missing = [b for b in branches if b not in schema.names]
        if missing:
            raise StageError(f"{path.name}: missing list column '{missing[0]}' (has: {', '.join(schema.names)})")
        table = pq.read_table(str(path), columns=branches)
        columns = {f: _jagged(table.column(b), b, path.name) for f, b in zip(fields, branches, strict=True)}
        n_events = table.num_rows
    if observables:
        flat = load_external(path, observables, tree=tree, weight_column=weight_column)
    elif weight_column:  # the weight column alone: read it as the one column, keep no flat observables
        weights = load_external(path, [weight_column], tree=tree).x[:, 0]
        flat = Events(np.empty((n_events, 0)), weights, [], {})
    else:
        flat = Events(np.empty((n_events, 0)), np.ones(n_events), [], {})
    flat.meta = {"source": path.name}
    return _assemble(flat, collection, columns, path.name)


def _root_objects(
    path: Path, branches: list[str], fields: Sequence[str], tree: str | None
) -> tuple[dict[str, tuple[NDArray[np.int64], NDArray[Any]]], int]:
    import awkward as ak
    import uproot

    try:
        handle = uproot.open(str(path))
    except Exception as exc:
        raise StageError(f"{path.name}: not a readable ROOT file ({exc})") from None
    with handle as root:
        name, ttree = root_tree(root, tree, path.name)
        have = set(ttree.keys())
        # NanoAOD names a collection's branches Jet_pt; uproot writes a record of lists as jet.pt
        dotted = [f"{b[: -len(f) - 1]}.{f}" for b, f in zip(branches, fields, strict=True)]
        branches = [d if b not in have and d in have else b for b, d in zip(branches, dotted, strict=True)]
        missing = [b for b in branches if b not in have]
        if missing:
            raise StageError(f"{path.name}:{name}: missing branch '{missing[0]}' (has: {', '.join(ttree.keys())})")
        columns = {}
        for field_name, branch in zip(fields, branches, strict=True):
            array = ttree[branch].array(library="ak")
            if array.ndim != 2:
                raise StageError(
                    f"{path.name}:{name}: branch '{branch}' is not a jagged list of numbers (dimension {array.ndim})"
                )
            columns[field_name] = (
                np.asarray(ak.num(array, axis=1), dtype=np.int64),
                np.asarray(ak.to_numpy(ak.flatten(array, axis=1))),
            )
        return columns, int(ttree.num_entries)


def to_awkward(ev: ObjectEvents) -> Any:
    """The objects as an awkward array of records (``ak.Array``, one list of objects per event)."""
    import awkward as ak

    offsets = ak.index.Index64(ev.offsets)
    contents = ak.contents.RecordArray([ak.contents.NumpyArray(v) for v in ev.fields.values()], ev.field_names)
    return ak.Array(ak.contents.ListOffsetArray(offsets, contents))


__all__ = [
    "OBJECTS_KEY",
    "ObjectEvents",
    "load_objects",
    "object_columns",
    "pad",
    "read_object_events",
    "to_awkward",
    "write_object_events",
]
