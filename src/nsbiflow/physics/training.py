"""Density-ratio estimation by classification, trained as an ensemble.

A classifier ``s(x)`` separating numerator events (label 1) from reference events (label 0), with the two
classes weighted to equal total weight, has the optimum ``s = p_num / (p_num + p_ref)``; so its logit is the
log density ratio, ``log r = log s/(1-s)``. Each member gets its own holdout fold (K-fold over a fixed
permutation of the events), its own bootstrap weights (Poisson(1) per event) and its own initialisation, and
stops early on its holdout loss, keeping its best epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.configs import TrainConfig
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.forward import Scaler
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig, plain_state
from nsbiflow.physics.optim import adam
from nsbiflow.physics.stacked import StackedMLP

ProgressFn = Callable[[int, int, str], None]
StepKind = Literal["auto", "autograd", "stacked"]


@dataclass
class TrainedMember:
    """One trained member with what is needed to reproduce and evaluate it."""

    name: str
    state: dict[str, torch.Tensor]
    info: dict[str, float | int | str | bool]
    curves: dict[str, list[float]] = field(default_factory=dict)


def pick_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


CPU_GROUP_BYTES = 1 << 30
"""Activation memory one batched group may use on a CPU (a GPU pod is sized for its K by the compiler)."""


def group_size(config: TrainConfig, device: torch.device) -> int:
    """Members trained together in one batched model: all of them on a GPU; on a CPU as many as fit in
    ``CPU_GROUP_BYTES`` of activations (forward values and gradients of one batch, 4 bytes each)."""
    if device.type == "cuda":
        return config.members
    per_member = config.effective_batch_size * (sum(config.hidden) + 1) * 4 * 4
    return max(1, min(config.members, CPU_GROUP_BYTES // per_member))


def _weighted_bce_sum(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted sum of the binary cross-entropy per member: logits, y, w (K, B) -> (K,)."""
    per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (per * w).sum(dim=1)


def train_ensemble(
    numerator: NDArray[np.float64],
    reference: NDArray[np.float64],
    config: TrainConfig,
    numerator_weights: NDArray[np.float64] | None = None,
    reference_weights: NDArray[np.float64] | None = None,
    progress: ProgressFn | None = None,
    step: StepKind = "auto",
) -> tuple[list[TrainedMember], Scaler]:
    """Train ``config.members`` ratio classifiers ``numerator / reference``; returns members and scaler.

    ``step`` is how a training step computes its gradients: ``stacked``, the hand-written one-GEMM-per-layer
    step of ``nsbiflow.physics.stacked``, ``autograd`` (``BatchedMLP`` and ``backward()``), or ``auto``:
    autograd on every device. The stacked step is opt-in because it measured no faster on this project's
    2-core CPU (``benchmarks/training.py --paired-only`` at 4x1000: 0.81x autograd median on a quiet machine,
    0.67x-1.11x under load; 1.05x at 3x64) and a default must earn its place. Both minimise the same loss from the same
    initial weights; their results agree to float rounding.
    """
    if len(numerator) < config.folds or len(reference) < config.folds:
        raise StageError(
            f"train-ratio: {len(numerator)} numerator and {len(reference)} reference events are too few "
            f"for {config.folds} folds; generate more events"
        )
    device = pick_device()
    # members in one batched model are faster on a GPU and on CPU cores alike (benchmarks/training.py:
    # 3x64 K=8 on 2 cores ~2.5x a per-member loop; 4x1000 the same FLOP rate), so auto means batched
    mode = "batched" if config.mode == "auto" else config.mode
    stacked = step == "stacked"
    scaler = Scaler.fit(np.concatenate([numerator, reference]))
    x = np.concatenate([scaler(numerator), scaler(reference)])
    y = np.concatenate([np.ones(len(numerator)), np.zeros(len(reference))]).astype(np.float32)
    wn = np.ones(len(numerator)) if numerator_weights is None else numerator_weights.astype(np.float64)
    wr = np.ones(len(reference)) if reference_weights is None else reference_weights.astype(np.float64)
    # balance the classes: each carries total weight n/2 (so the optimum logit is log p_num/p_ref)
    n = len(x)
    base = np.concatenate([wn * (n / 2) / wn.sum(), wr * (n / 2) / wr.sum()])
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[np.random.default_rng([config.seed, 7919]).permutation(n)] = np.arange(n) % config.folds

    member_ids = [config.chunk * config.members + k for k in range(config.members)]
    train_w = np.zeros((config.members, n))
    hold_w = np.zeros((config.members, n))
    for k, mid in enumerate(member_ids):
        holdout = fold_of == mid % config.folds
        boot = np.ones(n)
        if config.bootstrap:
            boot = np.random.default_rng([config.seed, mid, 104729]).poisson(1.0, size=n).astype(np.float64)
        train_w[k] = np.where(holdout, 0.0, base * boot)
        hold_w[k] = np.where(holdout, base, 0.0)

    mlp_config = MLPConfig(n_inputs=x.shape[1], hidden=config.hidden, activation=config.activation)
    size = group_size(config, device) if mode == "batched" else 1
    groups = [list(range(lo, min(lo + size, config.members))) for lo in range(0, config.members, size)]
    members: list[TrainedMember] = []
    done = 0
    for group in groups:
        torch.manual_seed(int(np.random.default_rng([config.seed, member_ids[group[0]], 15485863]).integers(2**31)))

        def on_epoch(epoch: int, group: list[int] = group, done: int = done) -> None:
            if progress is not None:
                progress(done, config.members, f"members {group} epoch {epoch}")

        trained = _train_group(mlp_config, config, x, y, train_w[group], hold_w[group], device, on_epoch, stacked)
        for j, k in enumerate(group):
            state, curves, best_epoch = trained[j]
            members.append(
                TrainedMember(
                    name=f"member_{member_ids[k]:04d}",
                    state=state,
                    info={
                        "member_id": member_ids[k],
                        "chunk": config.chunk,
                        "seed": config.seed,
                        "split_seed": config.seed,
                        "holdout_fold": member_ids[k] % config.folds,
                        "folds": config.folds,
                        "bootstrap": config.bootstrap,
                        "best_epoch": best_epoch,
                        "train_loss": curves["train"][best_epoch],
                        "holdout_loss": curves["holdout"][best_epoch],
                        "mode": mode,
                        "batch_size": config.effective_batch_size,
                        "device": device.type,
                        "step": "stacked" if stacked else "autograd",
                    },
                    curves=curves,
                )
            )
        done += len(group)
        if progress:
            progress(done, config.members, f"trained {done}/{config.members} members")
    return members, scaler


def _padded_rows(weights: NDArray[np.float64]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's own rows (where its weight is > 0), padded to one length with weight-0 entries.

    Returns ``rows`` (K, n) int64 into the events and ``w`` (K, n) float32 (0 on padding), so a batched model
    sees exactly the events a one-member loop would (no work on another member's holdout fold or on events
    its bootstrap dropped).
    """
    k = weights.shape[0]
    own = [np.flatnonzero(weights[j] > 0) for j in range(k)]
    n = max(1, max(len(r) for r in own))
    rows = np.zeros((k, n), dtype=np.int64)
    w = np.zeros((k, n), dtype=np.float32)
    for j, r in enumerate(own):
        rows[j, : len(r)] = r
        w[j, : len(r)] = weights[j, r]
    return torch.from_numpy(rows), torch.from_numpy(w)


def _train_group(
    mlp_config: MLPConfig,
    config: TrainConfig,
    x_np: NDArray[np.float32],
    y_np: NDArray[np.float32],
    train_w_np: NDArray[np.float64],
    hold_w_np: NDArray[np.float64],
    device: torch.device,
    on_epoch: Callable[[int], None],
    stacked: bool = False,
) -> list[tuple[dict[str, torch.Tensor], dict[str, list[float]], int]]:
    k = train_w_np.shape[0]
    x = torch.from_numpy(x_np).to(device)
    y = torch.from_numpy(y_np).to(device)
    rows, w = (t.to(device) for t in _padded_rows(train_w_np))
    hold_rows, wh = (t.to(device) for t in _padded_rows(hold_w_np))
    yh = y[hold_rows]

    batch_size = config.effective_batch_size
    model: BatchedMLP | None = None
    net: StackedMLP | None = None
    if stacked:  # buffers for at most a batch (or all of the events where there are fewer)
        net = StackedMLP(mlp_config, k, min(batch_size, max(rows.shape[1], hold_rows.shape[1])), device)
        params: list[torch.nn.Parameter] = list(net.params)
    else:
        model = BatchedMLP(mlp_config, k).to(device)
        params = [*model.weights, *model.biases]
    opt = adam(params, config.lr, config.weight_decay)  # one fused kernel a step (optim.py)

    def logits(xb: torch.Tensor) -> torch.Tensor:
        return net.logits(xb) if net is not None else model(xb)  # type: ignore[misc]

    gen = torch.Generator().manual_seed(int(torch.initial_seed() % 2**31))
    best = [math.inf] * k
    best_epoch = [0] * k
    # best parameters of each member, kept on the device (no host transfer per epoch) and exported as plain
    # state dicts once, at the end. A member that just improved has its best in the live parameters
    # (``live``); they are copied out only when training goes on, before the next epoch's first step, so the
    # epoch that ends training never pays for a copy (at 4x1000 a member's parameters are 12 MB)
    best_params: list[list[torch.Tensor]] = [[] for _ in range(k)]
    live = [False] * k

    def keep_live() -> None:
        with torch.no_grad():
            for j in (j for j in range(k) if live[j]):
                if not best_params[j]:
                    best_params[j] = [p[j].detach().clone() for p in params]
                else:
                    for dst, p in zip(best_params[j], params, strict=True):
                        dst.copy_(p[j])
                live[j] = False

    stale = [0] * k
    curves = [{"train": [], "holdout": []} for _ in range(k)]  # type: list[dict[str, list[float]]]
    n = rows.shape[1]
    # total holdout weight of each member (fixed across epochs)
    hold_sum = wh.sum(dim=1).clamp_min(1e-12)
    for epoch in range(config.max_epochs):
        keep_live()
        # an independent shuffle of its own rows for every member (one draw for the whole group)
        order = torch.rand(k, n, generator=gen).argsort(dim=1).to(device)
        shuffled_rows = rows.gather(1, order)
        shuffled_w = w.gather(1, order)
        total = torch.zeros(k, device=device)
        weight_sum = torch.zeros(k, device=device)
        for start in range(0, n, batch_size):
            idx = shuffled_rows[:, start : start + batch_size]
            wb = shuffled_w[:, start : start + batch_size]
            ws = wb.sum(dim=1)
            if model is not None:
                loss_sum = _weighted_bce_sum(model(x[idx]), y[idx], wb)
                opt.zero_grad(set_to_none=True)
                (loss_sum / ws.clamp_min(1e-12)).sum().backward()
            elif net is not None:  # the gradients go into the parameters' fixed .grad buffers (no zeroing)
                loss_sum = net.loss_and_grad(x[idx], y[idx], wb)
            opt.step()
            total += loss_sum.detach()
            weight_sum += ws
        with torch.no_grad():
            hold_loss = torch.zeros(k, device=device)
            for start in range(0, hold_rows.shape[1], 8192):
                sl = slice(start, start + 8192)
                hold_loss += _weighted_bce_sum(logits(x[hold_rows[:, sl]]), yh[:, sl], wh[:, sl])
            hold_loss = hold_loss / hold_sum
        train_loss = (total / weight_sum.clamp_min(1e-12)).cpu().tolist()
        hold = hold_loss.cpu().tolist()
        for j in range(k):
            curves[j]["train"].append(float(train_loss[j]))
            curves[j]["holdout"].append(float(hold[j]))
            if hold[j] < best[j] - 1e-6:
                best[j], best_epoch[j], stale[j], live[j] = hold[j], epoch, 0, True
            else:
                stale[j] += 1
        on_epoch(epoch)
        if all(s >= config.patience for s in stale):
            break
    layers = len(params) // 2  # autograd: the weights, then the biases
    # the live parameters where they are the best (or no epoch gave a finite holdout loss: diverged)
    chosen = [[p[j].detach() for p in params] if live[j] or not best_params[j] else best_params[j] for j in range(k)]
    if net is None:
        states = [plain_state(chosen[j][:layers], chosen[j][layers:]) for j in range(k)]
    else:
        states = [plain_state(*net.weights_and_biases(chosen[j])) for j in range(k)]
    return [(states[j], curves[j], best_epoch[j]) for j in range(k)]
