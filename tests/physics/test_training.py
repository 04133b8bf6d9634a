"""Ratio training: both execution modes learn the exact ratio; saved members evaluate identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nsbiflow.physics.ensemble import Ensemble, gather, save_members
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
from nsbiflow.physics.toy_model import ToyModel
from nsbiflow.physics.training import TrainConfig, train_ensemble


@pytest.mark.parametrize("mode", ["loop", "batched"])
def test_both_modes_learn_the_exact_ratio(mode: str, tmp_path: Path) -> None:
    model = ToyModel()
    rng = np.random.default_rng(1)
    num, ref = model.sample("background", 5000, rng), model.sample("reference", 5000, rng)
    cfg = TrainConfig(members=2, seed=4, hidden=[32, 32], max_epochs=30, patience=5, batch_size=128, mode=mode)
    members, scaler = train_ensemble(num, ref, cfg)
    assert [m.info["mode"] for m in members] == [mode, mode]
    assert members[0].info["holdout_fold"] != members[1].info["holdout_fold"]
    save_members(tmp_path, "background", members, scaler, MLPConfig(n_inputs=5, hidden=[32, 32]), {})
    ens = Ensemble.load(tmp_path, "background")
    x = model.sample_mixture(200, 2000, rng)
    learned, spread = ens.log_ratio(x)
    exact = model.log_ratio("background", "reference", x)
    assert np.corrcoef(learned, exact)[0, 1] > 0.85
    assert np.sqrt(np.mean((learned - exact) ** 2)) < 0.3
    assert np.all(spread >= 0) and spread.mean() > 0


def test_member_state_roundtrip() -> None:
    torch.manual_seed(0)
    config = MLPConfig(n_inputs=5, hidden=[8, 4])
    batched = BatchedMLP(config, 3)
    x = torch.randn(10, 5)
    rebuilt = BatchedMLP.from_member_states(config, [batched.member_state(k) for k in range(3)])
    assert torch.allclose(batched(x), rebuilt(x))
    single = BatchedMLP.from_member_states(config, [batched.member_state(1)])
    assert torch.allclose(single(x)[0], batched(x)[1])


def test_gather_refuses_duplicate_members(tmp_path: Path) -> None:
    model = ToyModel()
    rng = np.random.default_rng(2)
    num, ref = model.sample("signal", 600, rng), model.sample("reference", 600, rng)
    members, scaler = train_ensemble(num, ref, TrainConfig(members=1, max_epochs=1, hidden=[4]))
    for chunk in ("a", "b"):
        save_members(tmp_path / chunk, "signal", members, scaler, MLPConfig(n_inputs=5, hidden=[4]), {})
    from nsbiflow.physics.errors import StageError

    with pytest.raises(StageError, match="appears twice"):
        gather([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
