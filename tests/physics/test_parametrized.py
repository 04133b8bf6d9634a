"""A ratio parametrized in a model parameter: trained on a sample whose signal_mean varies per event, evaluated
at a point (``at``); checked against the exact ratio at two points, and every misuse is one clear line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics.ensemble import Ensemble
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.toy_model import ToyModel
from tests.physics.conftest import must, run_step

POINTS = (0.8, 1.6)


@pytest.fixture(scope="module")
def parametrized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parametrized")
    family, reference = root / "family.parquet", root / "reference.parquet"
    must(
        run_step(
            "generate",
            {"process": "signal", "n_events": 30000, "n_holdout": 0, "seed": 4, "signal_mean_range": [0.5, 2.0]},
            outputs={"events": family, "holdout": root / "unused.parquet"},
        )
    )
    must(
        run_step(
            "generate",
            {"process": "reference", "n_events": 30000, "n_holdout": 0, "seed": 4},
            outputs={"events": reference, "holdout": root / "unused-ref.parquet"},
        )
    )
    out = root / "ensemble"
    out.mkdir()
    must(
        run_step(
            "train-ratio",
            {
                "label": "signal",
                "members": 2,
                "seed": 9,
                "hidden": [32, 32],
                "max_epochs": 20,
                "batch_size": 1024,
                "parameters": ["signal_mean"],
            },
            [("numerator", family), ("reference", reference)],
            {"ensemble": out},
        )
    )
    return out


def test_parametrized_ratio_follows_the_exact_one_at_each_point(parametrized: Path) -> None:
    ens = Ensemble.load(parametrized, "signal")
    assert ens.parameters == {"signal_mean": [0.5, 2.0]}  # the generator's declared range
    assert ens.observables == ["x0", "x1", "x2", "x3", "x4"]
    rng = np.random.default_rng(2)
    errors = {}
    for at in POINTS:
        ens.bind({"signal_mean": at})
        model = ToyModel(signal_mean=at)
        x = np.concatenate([model.sample("signal", 3000, rng), model.sample("reference", 3000, rng)])
        learned = ens.log_ratio(x)[0]
        for truth in POINTS:
            exact = ToyModel(signal_mean=truth).log_ratio("signal", "reference", x)
            errors[at, truth] = float(np.sqrt(np.mean((learned - exact) ** 2)))
    for at in POINTS:
        other = POINTS[1] if at == POINTS[0] else POINTS[0]
        assert errors[at, at] < 0.35, errors  # a fixed-hypothesis ensemble of this size: about 0.2
        assert errors[at, at] < 0.5 * errors[at, other], errors  # it follows the parameter, not an average


def test_parametrized_ensemble_needs_a_point_inside_its_range(parametrized: Path) -> None:
    ens = Ensemble.load(parametrized, "signal")
    x = np.zeros((3, 5))
    with pytest.raises(StageError, match=r"parametrized in signal_mean .* at: \{signal_mean: VALUE\}"):
        ens.log_ratio(x)
    with pytest.raises(StageError, match=r"trained for signal_mean from 0\.5 to 2, not at 2\.5; widen the training"):
        ens.bind({"signal_mean": 2.5})


def test_misuse_of_parameters_is_one_line_each(parametrized: Path, tmp_path: Path) -> None:
    family = parametrized.parent / "family.parquet"
    reference = parametrized.parent / "reference.parquet"
    run = run_step(
        "calibrate",
        {"at": {"signal_width": 0.7, "signal_mean": 1.0}},
        [("ensemble", parametrized), ("numerator", reference), ("reference", reference)],
        {"report": tmp_path},
    )
    assert run.exit_code != 0 and "at: 'signal_width' is not a parameter of ensemble 'signal'" in run.stderr
    run = run_step(
        "infer",
        {"normalise": False},
        [("ensembles", parametrized), ("data", reference)],
        {"ratios": tmp_path},
    )
    assert run.exit_code != 0 and "give its value with the step parameter at: {signal_mean: VALUE}" in run.stderr
    (tmp_path / "e").mkdir()
    run = run_step(
        "train-ratio",
        {"parameters": ["signal_width"], "max_epochs": 1},
        [("numerator", family), ("reference", reference)],
        {"ensemble": tmp_path / "e"},
    )
    assert run.exit_code != 0 and "parameter 'signal_width' is not a column of family.parquet" in run.stderr
    run = run_step(
        "generate",
        {"process": "background", "n_events": 10, "n_holdout": 0, "signal_mean_range": [0.5, 2.0]},
        outputs={"events": tmp_path / "b.parquet", "holdout": tmp_path / "bh.parquet"},
    )
    assert run.exit_code != 0 and "signal_mean_range applies to the signal only" in run.stderr
