"""Toy samples with exact log-ratios (the NSBI likelihood built from exact ratios), shared by the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.model.spec import Model
from nsbiflow.physics.toy_model import ToyModel

REPO = Path(__file__).resolve().parents[3]
TOY_MODEL = REPO / "workflows" / "models" / "toy.yaml"
LABELS = {
    "signal": ("signal", "reference"),
    "background": ("background", "reference"),
    "background_up": ("background_up", "background"),
    "background_down": ("background_down", "background"),
}


def toy_table(toy: ToyModel, name: str, x: np.ndarray) -> Table:
    """Observables and the exact log-ratio of every label (what infer writes for perfect ensembles)."""
    cols = {f"x{j}": x[:, j] for j in range(x.shape[1])}
    for label, (num, den) in LABELS.items():
        cols[f"logr_{label}"] = toy.log_ratio(num, den, x)
    return Table(name, cols, {"observables": [f"x{j}" for j in range(x.shape[1])]})


@pytest.fixture(scope="session")
def toy() -> ToyModel:
    return ToyModel()


@pytest.fixture(scope="session")
def toy_model() -> Model:
    return load_model(TOY_MODEL)


@pytest.fixture(scope="session")
def toy_tables(toy: ToyModel) -> dict[str, Table]:
    """Held-out samples (8000 events each) and an observed dataset at mu = 1, alpha = 0."""
    rng = np.random.default_rng(7)
    tables = {p: toy_table(toy, p, toy.sample(p, 8000, rng)) for p in ("signal", "background", "reference")}
    for p in ("background_up", "background_down"):
        tables[p] = toy_table(toy, p, toy.sample(p, 8000, rng))
    tables["observed"] = toy_table(toy, "observed", toy.sample_mixture(100, 1000, rng))
    return tables
