"""Event files that must be refused with one line: zero rows, a truncated ROOT file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import load_external


def test_zero_row_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"x": pa.array([], pa.float64()), "y": pa.array([], pa.float64())}), path)
    with pytest.raises(StageError, match="no events"):
        load_external(path, ["x", "y"])


def test_zero_row_root_is_refused(tmp_path: Path) -> None:
    uproot = pytest.importorskip("uproot")
    path = tmp_path / "empty.root"
    with uproot.recreate(path) as handle:
        handle["events"] = {"x": np.array([], dtype=np.float64)}
    with pytest.raises(StageError, match="no events"):
        load_external(path, ["x"])


def test_truncated_root_file_is_one_line(tmp_path: Path) -> None:
    uproot = pytest.importorskip("uproot")
    path = tmp_path / "events.root"
    rng = np.random.default_rng(1)
    with uproot.recreate(path) as handle:
        handle["events"] = {"x": rng.normal(size=50000), "y": rng.normal(size=50000)}
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 300):
        path.write_bytes(data[:cut])
        with pytest.raises(StageError) as info:
            load_external(path, ["x", "y"])
        assert "\n" not in str(info.value) and "events.root" in str(info.value)
