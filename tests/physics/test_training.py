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


def test_default_batch_size_is_width_aware() -> None:
    assert TrainConfig().effective_batch_size == 512
    assert TrainConfig(hidden=[1000] * 4).effective_batch_size == 2048
    assert TrainConfig(hidden=[1000] * 4, batch_size=0).effective_batch_size == 2048
    assert TrainConfig(hidden=[1000] * 4, batch_size=256).effective_batch_size == 256


def test_training_is_deterministic_and_keeps_the_best_epoch() -> None:
    model = ToyModel()
    rng = np.random.default_rng(3)
    num, ref = model.sample("signal", 800, rng), model.sample("reference", 800, rng)
    cfg = TrainConfig(members=2, seed=1, hidden=[8], max_epochs=6, patience=2, mode="batched")
    first, _ = train_ensemble(num, ref, cfg)
    second, _ = train_ensemble(num, ref, cfg)
    for a, b in zip(first, second, strict=True):
        assert a.state.keys() == b.state.keys()
        assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
        assert a.curves == b.curves
        # the exported state is the best epoch's: its holdout loss is the minimum of the curve
        assert a.info["holdout_loss"] == min(a.curves["holdout"])
        assert a.state["layers.0.weight"].device.type == "cpu"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ensemble_evaluation_in_tiles_matches_one_pass(tmp_path: Path, backend: str) -> None:
    """Both CPU paths (numpy without torch, the torch member loop) give the batched model's logits."""
    from nsbiflow.physics.ensemble_torch import EVAL_TILE
    from nsbiflow.physics.training import Scaler, TrainedMember

    torch.manual_seed(0)
    config = MLPConfig(n_inputs=5, hidden=[8, 4])
    batched = BatchedMLP(config, 2)
    members = [TrainedMember(f"member_{k:04d}", batched.member_state(k), {"member_id": k}) for k in range(2)]
    scaler = Scaler(mean=np.zeros(5, np.float32), std=np.ones(5, np.float32))
    save_members(tmp_path, "s", members, scaler, config, {})
    ens = Ensemble.load(tmp_path, "s", backend=backend)  # type: ignore[arg-type]
    assert (ens.torch_members is None) == (backend == "numpy")
    x = np.random.default_rng(0).normal(size=(2 * EVAL_TILE + 17, 5))
    with torch.no_grad():
        direct = batched(torch.from_numpy(x.astype(np.float32))).double().numpy()
    for k, value in enumerate(ens.member_log_ratios(x)):
        np.testing.assert_allclose(value, direct[k], rtol=1e-5, atol=1e-6)


def test_stacked_evaluation_matches_the_member_loop(tmp_path: Path) -> None:
    """The stacked path (the default on CUDA) gives the member loop's log-ratios."""
    from nsbiflow.physics.ensemble_torch import STACK_GROUP
    from nsbiflow.physics.training import Scaler, TrainedMember

    torch.manual_seed(1)
    config = MLPConfig(n_inputs=5, hidden=[8])
    k = STACK_GROUP + 3  # two groups, the second partial
    batched = BatchedMLP(config, k)
    members = [TrainedMember(f"member_{j:04d}", batched.member_state(j), {"member_id": j}) for j in range(k)]
    scaler = Scaler(mean=np.full(5, 0.1, np.float32), std=np.full(5, 2.0, np.float32))
    save_members(tmp_path, "s", members, scaler, config, {})
    loop = Ensemble.load(tmp_path, "s", backend="torch", stack=False)
    stacked = Ensemble.load(tmp_path, "s", backend="torch", stack=True)
    assert loop.torch_members is not None and stacked.torch_members is not None
    assert not loop.torch_members.stacked and len(stacked.torch_members.stacked) == 2
    x = np.random.default_rng(1).normal(size=(1000, 5))
    for a, b in zip(loop.member_log_ratios(x), stacked.member_log_ratios(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    mean_a, spread_a = loop.log_ratio(x)
    mean_b, spread_b = stacked.log_ratio(x)
    np.testing.assert_allclose(mean_a, mean_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread_a, spread_b, rtol=1e-5, atol=1e-6)


def test_batched_members_match_the_loop_quality() -> None:
    """The default (batched) trainer's members are as good as one-at-a-time members, member for member.

    Each batched member trains on its own rows (its folds, its bootstrap draw): same holdout fold, same
    event count, holdout losses and distance to the exact log-ratio equal to the loop's within the spread
    between members.
    """
    model = ToyModel()
    rng = np.random.default_rng(5)
    num, ref = model.sample("background", 4000, rng), model.sample("reference", 4000, rng)
    x = model.sample_mixture(1000, 3000, rng)
    exact = model.log_ratio("background", "reference", x)
    results = {}
    for mode in ("loop", "batched"):
        cfg = TrainConfig(members=4, seed=2, hidden=[32, 32], max_epochs=25, patience=4, mode=mode)
        members, scaler = train_ensemble(num, ref, cfg)
        assert [m.info["mode"] for m in members] == [mode] * 4
        losses = np.array([m.info["holdout_loss"] for m in members])
        rmse = []
        for m in members:
            single = BatchedMLP.from_member_states(MLPConfig(n_inputs=5, hidden=[32, 32]), [m.state])
            with torch.no_grad():
                logit = single(torch.from_numpy(scaler(x)))[0].double().numpy()
            rmse.append(np.sqrt(np.mean((logit - exact) ** 2)))
        results[mode] = (losses, np.array(rmse), [m.info["holdout_fold"] for m in members])
    (loss_l, rmse_l, folds_l), (loss_b, rmse_b, folds_b) = results["loop"], results["batched"]
    assert folds_l == folds_b
    spread = np.sqrt((loss_l.var(ddof=1) + loss_b.var(ddof=1)) / 4)
    assert abs(loss_b.mean() - loss_l.mean()) < 3 * spread + 2e-3, (loss_l, loss_b)
    assert abs(rmse_b.mean() - rmse_l.mean()) < 3 * np.sqrt((rmse_l.var(ddof=1) + rmse_b.var(ddof=1)) / 4) + 0.02
    assert max(rmse_b.max(), rmse_l.max()) < 0.5  # single members of a small MLP on 8,000 events


def test_interleaved_member_evaluation_leaves_autograd_on(tmp_path: Path) -> None:
    """Two member generators consumed side by side (zip) must not leave the caller in inference mode."""
    from nsbiflow.physics.training import Scaler, TrainedMember

    torch.manual_seed(2)
    config = MLPConfig(n_inputs=5, hidden=[4])
    batched = BatchedMLP(config, 2)
    members = [TrainedMember(f"member_{k:04d}", batched.member_state(k), {"member_id": k}) for k in range(2)]
    save_members(tmp_path, "s", members, Scaler(mean=np.zeros(5, np.float32), std=np.ones(5, np.float32)), config, {})
    ens = Ensemble.load(tmp_path, "s", backend="torch", stack=False)
    x = np.zeros((3, 5))
    for _ in zip(ens.member_log_ratios(x), ens.member_log_ratios(x), strict=True):
        pass
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_exported_parameters_are_the_best_epochs(mode: str) -> None:
    """Re-evaluating each exported member on its own holdout fold gives the holdout loss of its best epoch
    (not the last epoch's, nor the first's): the best parameters are kept and exported, wherever they are."""
    model = ToyModel()
    rng = np.random.default_rng(5)
    num, ref = model.sample("signal", 600, rng), model.sample("reference", 600, rng)
    cfg = TrainConfig(members=3, seed=2, hidden=[16], max_epochs=7, patience=7, lr=0.05, mode=mode, bootstrap=False)
    members, scaler = train_ensemble(num, ref, cfg)
    x = torch.from_numpy(np.concatenate([scaler(num), scaler(ref)]))
    y = torch.cat([torch.ones(len(num)), torch.zeros(len(ref))])
    n = len(x)
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[np.random.default_rng([cfg.seed, 7919]).permutation(n)] = np.arange(n) % cfg.folds
    kinds = set()
    for member in members:
        hold = torch.from_numpy(fold_of == member.info["member_id"] % cfg.folds)
        net = BatchedMLP.from_member_states(MLPConfig(n_inputs=x.shape[1], hidden=cfg.hidden), [member.state])
        with torch.no_grad():
            logits = net(x[hold])[0]
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y[hold]))
        best = int(member.info["best_epoch"])
        assert loss == pytest.approx(member.curves["holdout"][best], rel=1e-4)
        kinds.add("last" if best == len(member.curves["holdout"]) - 1 else "earlier")
    assert kinds == {"last", "earlier"}, kinds  # both places the best can be in are exercised
