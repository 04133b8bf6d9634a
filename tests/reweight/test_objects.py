"""Variable-length object lists: Parquet and ROOT round trips are exact, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import Events, read_events
from nsbiflow.physics.objects import (
    ObjectEvents,
    load_objects,
    pad,
    read_object_events,
    to_awkward,
    write_object_events,
)
from tests.physics.conftest import must, run_step


def _sample(n: int = 300, seed: int = 0) -> ObjectEvents:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, n).astype(np.int64)
    counts[:3] = [0, 0, 7]  # empty events and a long one
    total = int(counts.sum())
    fields = {"pt": rng.exponential(30.0, total), "eta": rng.normal(0, 1.5, total), "phi": rng.uniform(-3, 3, total)}
    flat = Events(
        np.column_stack([counts, rng.normal(size=n)]), rng.uniform(0.5, 2, n), ["n_jet", "met"], {"process": "x"}
    )
    return ObjectEvents(flat, "jet", counts, fields)


def _assert_same(a: ObjectEvents, b: ObjectEvents) -> None:
    assert np.array_equal(a.counts, b.counts)
    assert a.field_names == b.field_names
    for name in a.fields:
        assert np.array_equal(a.fields[name], b.fields[name]), name
    assert np.array_equal(a.events.x, b.events.x) and np.array_equal(a.weights, b.weights)
    assert a.events.observables == b.events.observables


def test_parquet_round_trip_is_exact_and_unpadded(tmp_path: Path) -> None:
    ev = _sample()
    path = tmp_path / "jets.parquet"
    write_object_events(ev, path)
    back = read_object_events(path)
    _assert_same(ev, back)
    schema = pq.read_schema(path)
    assert pa.types.is_list(schema.field("jet_pt").type)  # stored as lists, not padded to a fixed length
    assert (
        pq.read_table(path, columns=["jet_pt"]).column(0).combine_chunks().flatten().to_numpy().size == ev.counts.sum()
    )
    # an ordinary events reader sees the event-level observables only
    flat = read_events(path)
    assert flat.observables == ["n_jet", "met"] and np.array_equal(flat.x, ev.events.x)
    # the same bytes for the same content
    again = tmp_path / "again.parquet"
    write_object_events(back, again)
    assert again.read_bytes() == path.read_bytes()


def test_foreign_parquet_list_columns(tmp_path: Path) -> None:
    ev = _sample(seed=1)
    table = pa.table(
        {
            "jet_pt": pa.array(ak.to_list(to_awkward(ev)["pt"]), type=pa.list_(pa.float32())),
            "jet_eta": pa.array(ak.to_list(to_awkward(ev)["eta"])),
            "met": ev.events.x[:, 1],
            "w": ev.weights,
        }
    )
    path = tmp_path / "foreign.parquet"
    pq.write_table(table, path)
    back = load_objects(path, "jet", ["pt", "eta"], ["met"], weight_column="w")
    assert np.array_equal(back.counts, ev.counts)
    assert np.array_equal(back.fields["pt"], ev.fields["pt"].astype(np.float32).astype(np.float64))
    assert np.array_equal(back.fields["eta"], ev.fields["eta"])
    assert np.array_equal(back.weights, ev.weights) and np.array_equal(back.events.x[:, 0], ev.events.x[:, 1])


def _write_root(path: Path, ev: ObjectEvents) -> None:
    import uproot

    jets = to_awkward(ev)
    with uproot.recreate(path) as f:
        f["Events"] = {
            "jet": ak.zip({k: jets[k] for k in ev.fields}),
            "met": ev.events.x[:, 1],
            "w": ev.weights,
            "jet_m": ev.weights,
        }


def test_root_round_trip_through_load_objects(tmp_path: Path) -> None:
    ev = _sample(seed=2)
    root = tmp_path / "jets.root"
    _write_root(root, ev)
    back = load_objects(root, "jet", ["pt", "eta", "phi"], ["met"], weight_column="w")
    assert np.array_equal(back.counts, ev.counts)
    for name in ev.fields:
        assert np.array_equal(back.fields[name], ev.fields[name])
    # through the stage: ROOT in, Parquet lists out, holdout split, nothing lost or reordered within events
    out = {"events": tmp_path / "e.parquet", "holdout": tmp_path / "h.parquet"}
    params = {"process": "jets", "collection": "jet", "fields": ["pt", "eta", "phi"], "observables": ["met"]}
    must(run_step("load-objects", {**params, "weight_column": "w"}, [("source", root)], out))
    parts = [read_object_events(out["events"]), read_object_events(out["holdout"])]
    assert sum(len(p) for p in parts) == len(ev)
    by_met = {float(m): i for i, m in enumerate(ev.events.x[:, 1])}  # met is continuous: it names the event
    for p in parts:  # every event keeps exactly its own objects, in order
        original = ev.select(np.array([by_met[float(m)] for m in p.events.x[:, 0]]))
        assert np.array_equal(p.counts, original.counts) and np.array_equal(p.weights, original.weights)
        for name in ev.fields:
            assert np.array_equal(p.fields[name], original.fields[name]), name


def test_bad_jagged_input_is_one_line(tmp_path: Path) -> None:
    ev = _sample(seed=3)
    bad = pa.table({"jet_pt": pa.array([[1.0, 2.0], [3.0]]), "jet_eta": pa.array([[1.0], [3.0]])})
    pq.write_table(bad, tmp_path / "unequal.parquet")
    with pytest.raises(StageError, match=r"'jet_eta' has 1 objects in event 0, 'jet_pt' has 2"):
        load_objects(tmp_path / "unequal.parquet", "jet", ["pt", "eta"])
    pq.write_table(pa.table({"jet_pt": pa.array([[1.0], None])}), tmp_path / "null.parquet")
    with pytest.raises(StageError, match="null list at row 1"):
        load_objects(tmp_path / "null.parquet", "jet", ["pt"])
    pq.write_table(pa.table({"jet_pt": pa.array([[1.0], [float("nan")]])}), tmp_path / "nan.parquet")
    with pytest.raises(StageError, match="'jet_pt' has 1 NaN"):
        load_objects(tmp_path / "nan.parquet", "jet", ["pt"])
    root = tmp_path / "jets.root"
    _write_root(root, ev)
    with pytest.raises(StageError, match="not a jagged list"):
        load_objects(root, "jet", ["m"])  # a flat branch
    with pytest.raises(StageError, match="missing branch 'jet_mass'"):
        load_objects(root, "jet", ["mass"])
    write_object_events(ev, tmp_path / "ok.parquet")
    with pytest.raises(StageError, match="no field 'mass'"):
        read_object_events(tmp_path / "ok.parquet", ["mass"])


def test_pad_keeps_every_object_and_masks_the_rest() -> None:
    ev = _sample(seed=4)
    padded, mask = pad(ev.counts, ev.object_matrix(), slots=12)
    assert padded.shape == (len(ev), 12, 3) and np.array_equal(mask.sum(axis=1), ev.counts)
    assert np.array_equal(padded[mask], ev.object_matrix().astype(np.float32))
    with pytest.raises(ValueError, match="cannot hold"):
        pad(ev.counts, ev.object_matrix(), slots=2)
