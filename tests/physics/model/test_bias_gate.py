"""The bias gate: pseudo-data resampled from held-out samples at known parameter points stop a biased chain.

The ensembles here are exact ratios (what perfect training gives), and a *biased* signal ensemble is the exact
ratio of a shifted signal (signal_mean 1.3 instead of 1.0: what an ensemble trained on a shifted sample learns).
The gate compares with the exact likelihood on the same pseudo-data (``reference: exact``), so a dozen toys
resolve a bias far below the 0.2 sigma threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nsbiflow.physics.events import METADATA_KEY
from nsbiflow.physics.gates.bias import failure, run_gate, unweighted
from nsbiflow.physics.gates.config import BiasGateConfig, BiasPoint
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel
from nsbiflow.physics.truth import truth_from_spec
from tests.physics.conftest import TOY_MODEL, run_step

UP = BiasPoint(values={"mu": 1.0, "alpha": 1.0, "bkg_norm": 1.0}, samples={"background": "background_up"})


def shifted(tables: dict[str, Table], signal_mean: float) -> dict[str, Table]:
    """The same samples with the signal ratio of a shifted signal (a deliberately biased signal ensemble)."""
    wrong = ToyModel(signal_mean=signal_mean)
    out = {}
    for name, table in tables.items():
        x = np.stack([table.columns[o] for o in OBSERVABLES], axis=1)
        cols = {**table.columns, "logr_signal": wrong.log_ratio("signal", "reference", x)}
        out[name] = Table(name, cols, dict(table.meta))
    return out


def gate(model, tables, points, toys=12):
    config = BiasGateConfig(points=points, toys=toys, reference="exact", seed=3)
    exact = Likelihood(model, tables, "exact", truth_from_spec("toy", {}))
    return run_gate(Likelihood(model, tables, "nsbi"), tables, config, exact)


def test_gate_passes_exact_ensembles_with_the_nuisance_away_from_nominal(toy_model, toy_tables) -> None:
    report = gate(toy_model, toy_tables, [UP])
    (point,) = report["points"]
    assert report["passed"], point
    assert point["toys"] == 12 and point["failed"] == 0
    assert abs(point["bias_over_sigma"]) < 0.1 and point["resolution"] < 0.05, point
    assert point["pools"] == {"SR": {"signal": "signal", "background": "background_up"}}
    assert failure(report) is None


def test_gate_stops_a_signal_ensemble_trained_on_a_shifted_sample(toy_model, toy_tables) -> None:
    report = gate(toy_model, shifted(toy_tables, 1.3), [BiasPoint(values={"mu": 1.0})])
    (point,) = report["points"]
    assert not report["passed"]
    assert point["bias_over_sigma"] < -0.3, point  # far outside the 0.2 sigma threshold, resolution ~0.01
    message = failure(report)
    assert message is not None and "\n" not in message
    assert "mu=1" in message and "ensembles involved: signal, background" in message and "pools: background" in message


def test_a_shape_nuisance_away_from_nominal_needs_its_sample(toy_model, toy_tables) -> None:
    from nsbiflow.physics.errors import StageError

    with pytest.raises(StageError, match=r"sets alpha, which shapes process 'background': give samples"):
        gate(toy_model, toy_tables, [BiasPoint(values={"mu": 1.0, "alpha": 1.0})])


def test_weighted_pools_are_resampled_in_proportion_to_their_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=20000)
    table = Table("w", {"x0": x, "weight": 2.0 * x})  # density 2x on [0, 1]: mean 2/3 once unweighted
    pool = unweighted(table)
    assert np.all(pool.weights == 1.0) and abs(pool.columns["x0"].mean() - 2 / 3) < 0.01


def _write(folder: Path, tables: dict[str, Table]) -> Path:
    folder.mkdir(parents=True)
    for name, table in tables.items():
        meta = {"process": name, "observables": list(OBSERVABLES)}
        pa_table = pa.table({k: pa.array(v) for k, v in table.columns.items()})
        pa_table = pa_table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
        pq.write_table(pa_table, folder / f"{name}.parquet")
    return folder


@pytest.fixture(scope="module")
def small(toy_tables) -> dict[str, Table]:
    """2000 events of every held-out sample (the stage tests fit quickly)."""
    return {n: t.take(np.arange(min(len(t), 2000))) for n, t in toy_tables.items()}


def test_the_stage_stops_the_chain_with_one_line_and_passes_a_good_one(tmp_path: Path, small) -> None:
    params = {"toys": 10, "reference": "exact", "points": [{"values": {"mu": 1.0}}]}
    good = _write(tmp_path / "good", small)
    run = run_step("bias-gate", params, [("model", TOY_MODEL), ("ratios", good)], {"report": tmp_path / "ok.json"})
    assert run.exit_code == 0, run.stderr
    report = json.loads((tmp_path / "ok.json").read_text())
    assert report["passed"] and report["points"][0]["name"] == "mu=1"
    bad = _write(tmp_path / "bad", shifted(small, 1.4))
    out = tmp_path / "bad.json"
    run = run_step("bias-gate", params, [("model", TOY_MODEL), ("ratios", bad)], {"report": out})
    assert run.exit_code != 0 and not out.exists()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and run.stderr.strip().endswith(errors[0]), run.stderr
    assert "bias-gate: mu is biased" in errors[0] and "at mu=1 over 10 toys" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    # not enforced (the bundled workflows' default): the step succeeds, warns and records the failure
    run = run_step("bias-gate", {**params, "enforce": False}, [("model", TOY_MODEL), ("ratios", bad)], {"report": out})
    assert run.exit_code == 0 and "WARNING (not enforced) bias-gate: mu is biased" in run.stderr
    report = json.loads(out.read_text())
    assert report["passed"] is False and report["enforced"] is False


def test_the_stage_names_a_missing_pool_sample(tmp_path: Path, small) -> None:
    params = {"toys": 10, "points": [{"values": {"mu": 1.0}, "samples": {"background": "background_up2"}}]}
    folder = _write(tmp_path / "r", small)
    run = run_step("bias-gate", params, [("model", TOY_MODEL), ("ratios", folder)], {"report": tmp_path / "x.json"})
    assert run.exit_code != 0
    assert "no sample 'background_up2' for process 'background'" in run.stderr and "Traceback" not in run.stderr
