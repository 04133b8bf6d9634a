"""The hand-written stacked step gives autograd's gradients, and training with it gives autograd's results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
from nsbiflow.physics.stacked import StackedMLP
from nsbiflow.physics.toy_model import ToyModel
from nsbiflow.physics.training import TrainConfig, _weighted_bce_sum, train_ensemble


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_loss_and_gradients_match_autograd(activation: str) -> None:
    torch.manual_seed(0)
    model = BatchedMLP(MLPConfig(n_inputs=5, hidden=[16, 12, 8], activation=activation), 3)
    net = StackedMLP.from_batched(model, max_batch=40)
    for batch in (37, 40, 5):  # a short batch after a full one: the buffers' views and ones columns follow
        x, y, w = torch.randn(3, batch, 5), (torch.rand(3, batch) > 0.5).float(), torch.rand(3, batch)
        for p in model.parameters():
            p.grad = None
        loss = _weighted_bce_sum(model(x), y, w)
        (loss / w.sum(dim=1)).sum().backward()
        got = net.loss_and_grad(x, y, w)
        torch.testing.assert_close(got, loss.detach(), rtol=1e-5, atol=1e-6)
        for i, p in enumerate(net.params):
            assert p.grad is not None and model.weights[i].grad is not None and model.biases[i].grad is not None
            torch.testing.assert_close(p.grad[:, :-1], model.weights[i].grad, rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(p.grad[:, -1:], model.biases[i].grad, rtol=1e-4, atol=1e-7)
    x = torch.randn(3, 95, 5)  # more events than max_batch: evaluated in chunks
    torch.testing.assert_close(net.logits(x), model(x).detach(), rtol=1e-5, atol=1e-6)


def test_initialisation_is_batched_mlps_and_splits_into_weights_and_biases() -> None:
    config = MLPConfig(n_inputs=3, hidden=[4, 6])
    torch.manual_seed(1)
    model = BatchedMLP(config, 2)
    torch.manual_seed(1)
    net = StackedMLP(config, 2, max_batch=8)  # drawn as BatchedMLP draws: the same initial members
    weights, biases = net.weights_and_biases([p[1] for p in net.params])
    for i in range(3):
        assert torch.equal(weights[i], model.weights[i][1].detach())
        assert torch.equal(biases[i], model.biases[i][1].detach())


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_training_matches_the_autograd_path(mode: str) -> None:
    toy = ToyModel()
    rng = np.random.default_rng(5)
    num, ref = toy.sample("signal", 700, rng), toy.sample("reference", 700, rng)
    cfg = TrainConfig(members=2, seed=3, hidden=[16, 16], max_epochs=4, patience=10, batch_size=128, mode=mode)
    stacked, _ = train_ensemble(num, ref, cfg, step="stacked")
    autograd, _ = train_ensemble(num, ref, cfg, step="autograd")
    for a, b in zip(stacked, autograd, strict=True):
        assert a.info["step"] == "stacked" and b.info["step"] == "autograd"
        assert a.state.keys() == b.state.keys()
        np.testing.assert_allclose(a.curves["train"], b.curves["train"], rtol=1e-4)
        np.testing.assert_allclose(a.curves["holdout"], b.curves["holdout"], rtol=1e-4)
        for key in a.state:
            torch.testing.assert_close(a.state[key], b.state[key], rtol=1e-3, atol=1e-4)
