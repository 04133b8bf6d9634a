"""Input events: external Parquet and ROOT files, and one clear error line for bad ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsbiflow.physics.events import read_events
from tests.physics.conftest import StepRun, run_step

OBS = ["pt", "eta", "phi"]


def _columns(n: int = 200) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "pt": rng.exponential(30, n),
        "eta": rng.normal(0, 1.5, n),
        "phi": rng.uniform(-3, 3, n),
        "w": rng.uniform(0.5, 1.5, n),
    }


def _write_ttree(path: Path, cols: dict[str, np.ndarray]) -> None:
    import uproot

    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.dtype for k, v in cols.items()})
        f["Events"].extend(cols)


def _load(source: Path, tmp_path: Path, **params: object) -> StepRun:
    out = {"events": tmp_path / "events.parquet", "holdout": tmp_path / "holdout.parquet"}
    return run_step("load-events", {"process": "background", "observables": OBS, **params}, [("source", source)], out)


def _single_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_parquet_and_root_inputs_are_converted(tmp_path: Path) -> None:
    import uproot

    cols = _columns()
    pq.write_table(pa.table(cols), tmp_path / "mc.parquet")
    _write_ttree(tmp_path / "mc.root", cols)
    with uproot.recreate(tmp_path / "mc_rntuple.root") as f:
        f["Events"] = cols  # recent uproot writes an RNTuple from a dict
    for source in ("mc.parquet", "mc.root", "mc_rntuple.root"):
        out = tmp_path / source.replace(".", "_")
        out.mkdir()
        run = _load(tmp_path / source, out, weight_column="w", holdout_fraction=0.25)
        assert run.exit_code == 0, run.stderr
        events, holdout = read_events(out / "events.parquet"), read_events(out / "holdout.parquet")
        assert events.observables == OBS and len(events) + len(holdout) == 200 and len(holdout) == 50
        assert events.process == "background"
        assert np.isclose(events.weights.sum() + holdout.weights.sum(), cols["w"].sum())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_give_one_clear_line(tmp_path: Path, bad: float) -> None:
    cols = _columns()
    cols["eta"][[3, 17, 40]] = bad
    pq.write_table(pa.table(cols), tmp_path / "bad.parquet")
    line = _single_error(_load(tmp_path / "bad.parquet", tmp_path).stderr)
    kind = "NaN" if np.isnan(bad) else "infinite"
    assert line == f"error: bad.parquet: column 'eta' has 3 {kind} values; clean or drop these events"


def test_non_finite_values_in_a_root_tree(tmp_path: Path) -> None:
    cols = _columns()
    cols["pt"][5] = np.nan
    _write_ttree(tmp_path / "bad.root", cols)
    line = _single_error(_load(tmp_path / "bad.root", tmp_path, tree="Events").stderr)
    assert "bad.root: column 'pt' has 1 NaN values" in line


def test_missing_column_names_it(tmp_path: Path) -> None:
    cols = _columns()
    del cols["phi"]
    pq.write_table(pa.table(cols), tmp_path / "short.parquet")
    line = _single_error(_load(tmp_path / "short.parquet", tmp_path).stderr)
    assert "short.parquet: missing column 'phi'" in line and "has: pt, eta, w" in line


def test_missing_tree_names_the_trees(tmp_path: Path) -> None:
    _write_ttree(tmp_path / "mc.root", _columns())
    line = _single_error(_load(tmp_path / "mc.root", tmp_path, tree="Nominal").stderr)
    assert "TTree 'Nominal' not found (has: Events)" in line


def test_training_on_events_with_nan_fails_cleanly(tmp_path: Path) -> None:
    cols = {f"x{i}": np.random.default_rng(i).normal(size=300) for i in range(5)}
    cols["x3"][[1, 2]] = np.nan
    pq.write_table(pa.table(cols), tmp_path / "signal.parquet")
    pq.write_table(pa.table({k: np.nan_to_num(v) for k, v in cols.items()}), tmp_path / "reference.parquet")
    (tmp_path / "out").mkdir()
    run = run_step(
        "train-ratio",
        {"members": 1},
        [("numerator", tmp_path / "signal.parquet"), ("reference", tmp_path / "reference.parquet")],
        {"ensemble": tmp_path / "out"},
    )
    assert run.exit_code != 0
    assert (
        _single_error(run.stderr) == "error: signal.parquet: column 'x3' has 2 NaN values; clean or drop these events"
    )


def test_unknown_parameter_and_missing_input_are_one_line(tmp_path: Path) -> None:
    run = run_step("generate", {"process": "signal", "n_event": 5}, outputs={"events": tmp_path / "e.parquet"})
    assert "unknown parameter 'n_event'" in _single_error(run.stderr)
    run = run_step("train-ratio", {}, outputs={"ensemble": tmp_path})
    assert _single_error(run.stderr) == "error: train-ratio: input 'numerator' is required; pass --in numerator=PATH"
