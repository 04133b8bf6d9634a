"""The Deep-Sets (particle-flow) reweighter: f({x_i}, h) = F(sum_i Phi(x_i) / c, h), a classifier logit.

``Phi`` (an MLP) maps every object's fields to a latent vector; the masked sum over the objects (divided by a
constant ``c``, the mean multiplicity of the training sample, so the scale stays O(1) -- still a sum, so the
multiplicity stays visible) is invariant under permutations of the objects; optional event-level features
``h`` are concatenated to it; ``F`` (an MLP) maps the result to the logit ``log s/(1-s) = log p_b/p_a``.

Padding never changes the result: padded slots are replaced by zeros before ``Phi`` and their outputs are
dropped from the sum with ``torch.where`` (not multiplied by the mask, so NaN or infinite padding cannot leak
in). The input scaling lives in the module's buffers, so a member is evaluated on raw values.

Training follows ``train-ratio``: members with their own K-fold holdout, Poisson bootstrap and initialisation
(``folds.py``), Adam, large batches, early stopping on the holdout loss keeping the best epoch; the device is
CUDA when available (``training.pick_device``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file
from torch import nn

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.objects import ObjectEvents, pad
from nsbiflow.physics.optim import adam
from nsbiflow.physics.reweight.config import DeepSetsConfig
from nsbiflow.physics.reweight.folds import split
from nsbiflow.physics.training import TrainedMember, pick_device

ProgressFn = Callable[[int, int, str], None]
EVAL_TILE = 16384
_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh}


def _mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), _ACTIVATIONS[activation]()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class DeepSets(nn.Module):
    """One member: raw padded objects ``(B, M, F)``, their mask ``(B, M)`` and raw event features ``(B, H)``
    -> logits ``(B,)``."""

    object_mean: torch.Tensor
    object_std: torch.Tensor
    high_mean: torch.Tensor
    high_std: torch.Tensor
    pool_scale: torch.Tensor

    def __init__(self, n_fields: int, n_high: int, config: DeepSetsConfig) -> None:
        super().__init__()
        if config.activation not in _ACTIVATIONS:
            raise StageError(f"deepsets: unknown activation {config.activation!r} (known: {', '.join(_ACTIVATIONS)})")
        self.phi = _mlp(n_fields, config.phi, config.latent, config.activation)
        self.head = _mlp(config.latent + n_high, config.head, 1, config.activation)
        self.register_buffer("object_mean", torch.zeros(n_fields))
        self.register_buffer("object_std", torch.ones(n_fields))
        self.register_buffer("high_mean", torch.zeros(n_high))
        self.register_buffer("high_std", torch.ones(n_high))
        self.register_buffer("pool_scale", torch.ones(()))
        self.n_high = n_high

    def forward(self, objects: torch.Tensor, mask: torch.Tensor, high: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the events (permutation invariant in the objects, independent of the padding)."""
        keep = mask.unsqueeze(-1)
        x = torch.where(keep, (objects - self.object_mean) / self.object_std, 0.0)
        pooled = torch.where(keep, self.phi(x), 0.0).sum(dim=1) / self.pool_scale
        if self.n_high:
            if high is None:
                raise ValueError("this member takes event-level features")
            pooled = torch.cat([pooled, (high - self.high_mean) / self.high_std], dim=-1)
        return self.head(pooled).squeeze(-1)


def _set_scalers(model: DeepSets, objects: NDArray[np.float64], high: NDArray[np.float64], mean_n: float) -> None:
    with torch.no_grad():
        if len(objects):
            model.object_mean.copy_(torch.from_numpy(objects.mean(axis=0)))
            model.object_std.copy_(torch.from_numpy(np.maximum(objects.std(axis=0), 1e-12)))
        if high.shape[1]:
            model.high_mean.copy_(torch.from_numpy(high.mean(axis=0)))
            model.high_std.copy_(torch.from_numpy(np.maximum(high.std(axis=0), 1e-12)))
        model.pool_scale.fill_(max(mean_n, 1.0))


def inputs(ev: ObjectEvents, fields: Sequence[str], observables: Sequence[str]) -> tuple[Any, Any, Any]:
    """Padded raw objects, mask and raw event features of ``ev`` (numpy, float32)."""
    objects, mask = pad(ev.counts, ev.object_matrix(fields))
    columns = [ev.events.observables.index(o) for o in observables]
    return objects, mask, ev.events.x[:, columns].astype(np.float32)


def train_deepsets(
    source: ObjectEvents,
    target: ObjectEvents,
    fields: Sequence[str],
    observables: Sequence[str],
    config: DeepSetsConfig,
    progress: ProgressFn | None = None,
) -> list[TrainedMember]:
    """Train ``config.members`` Deep-Sets classifiers of ``target`` (1) against ``source`` (0)."""
    sp = split(source.weights, target.weights, config.members, config.folds, config.seed, config.bootstrap, "deepsets")
    device = pick_device()
    obj_s, mask_s, high_s = inputs(source, fields, observables)
    obj_t, mask_t, high_t = inputs(target, fields, observables)
    slots = max(obj_s.shape[1], obj_t.shape[1])
    objects = np.zeros((len(obj_s) + len(obj_t), slots, len(fields)), np.float32)
    mask = np.zeros(objects.shape[:2], bool)
    objects[: len(obj_s), : obj_s.shape[1]], mask[: len(obj_s), : obj_s.shape[1]] = obj_s, mask_s
    objects[len(obj_s) :, : obj_t.shape[1]], mask[len(obj_s) :, : obj_t.shape[1]] = obj_t, mask_t
    high = np.concatenate([high_s, high_t])
    counts = np.concatenate([source.counts, target.counts])
    flat = np.concatenate([source.object_matrix(fields), target.object_matrix(fields)])
    data = (
        torch.from_numpy(objects).to(device),
        torch.from_numpy(mask).to(device),
        torch.from_numpy(high).to(device),
        torch.from_numpy(sp.labels).to(device),
    )
    members = []
    for k in range(config.members):
        torch.manual_seed(sp.init_seed(config.seed, k))
        model = DeepSets(len(fields), len(observables), config)
        _set_scalers(model, flat, high.astype(np.float64), float(counts.mean()))
        model.to(device)

        def on_epoch(epoch: int, k: int = k) -> None:
            if progress is not None:
                progress(k, config.members, f"member {k} epoch {epoch}")

        state, curves, best_epoch, seconds = _train_member(
            model, config, data, counts, sp.train[k], sp.holdout[k], on_epoch
        )
        members.append(
            TrainedMember(
                name=f"member_{k:04d}",
                state=state,
                info={
                    "member_id": k,
                    "seed": config.seed,
                    "holdout_fold": k % config.folds,
                    "folds": config.folds,
                    "bootstrap": config.bootstrap,
                    "best_epoch": best_epoch,
                    "train_loss": curves["train"][best_epoch],
                    "holdout_loss": curves["holdout"][best_epoch],
                    "epochs": len(curves["train"]),
                    "seconds_per_epoch": seconds,
                    "batch_size": config.batch_size,
                    "device": device.type,
                },
                curves=curves,
            )
        )
        if progress is not None:
            progress(k + 1, config.members, f"trained {k + 1}/{config.members} members")
    return members


def _bce(model: DeepSets, batch: tuple[torch.Tensor, ...], w: torch.Tensor) -> torch.Tensor:
    objects, mask, high, y = batch
    logits = model(objects, mask, high)
    return (nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum()


def _train_member(
    model: DeepSets,
    config: DeepSetsConfig,
    data: tuple[torch.Tensor, ...],
    counts: NDArray[np.int64],
    train_w: NDArray[np.float64],
    hold_w: NDArray[np.float64],
    on_epoch: Callable[[int], None],
) -> tuple[dict[str, torch.Tensor], dict[str, list[float]], int, float]:
    device = data[0].device
    rows = np.flatnonzero(train_w > 0)
    hold_rows = np.flatnonzero(hold_w > 0)
    w = torch.from_numpy(train_w.astype(np.float32)).to(device)
    wh = torch.from_numpy(hold_w.astype(np.float32)).to(device)
    opt = adam(model.parameters(), config.lr, config.weight_decay)
    gen = np.random.default_rng(int(torch.initial_seed() % 2**31))
    best, best_epoch, stale = math.inf, 0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    curves: dict[str, list[float]] = {"train": [], "holdout": []}
    hold_sum = float(hold_w[hold_rows].sum())
    elapsed = 0.0

    def batch_of(idx: NDArray[np.int64]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        slots = max(int(counts[idx].max()), 1)  # objects are stored first: trim the padding of this batch
        t = torch.from_numpy(idx).to(device)
        return (data[0][t, :slots], data[1][t, :slots], data[2][t], data[3][t]), t

    for epoch in range(config.max_epochs):
        start = time.perf_counter()
        model.train()
        perm = rows[gen.permutation(len(rows))]
        total, weight_sum = 0.0, 0.0
        for lo in range(0, len(perm), config.batch_size):
            batch, t = batch_of(perm[lo : lo + config.batch_size])
            wb = w[t]
            loss_sum = _bce(model, batch, wb)
            ws = wb.sum().clamp_min(1e-12)
            opt.zero_grad(set_to_none=True)
            (loss_sum / ws).backward()
            opt.step()
            total += float(loss_sum.detach())
            weight_sum += float(ws)
        model.eval()
        with torch.no_grad():
            hold = 0.0
            for lo in range(0, len(hold_rows), EVAL_TILE):
                batch, t = batch_of(hold_rows[lo : lo + EVAL_TILE])
                hold += float(_bce(model, batch, wh[t]))
            hold /= max(hold_sum, 1e-12)
        elapsed += time.perf_counter() - start
        curves["train"].append(total / max(weight_sum, 1e-12))
        curves["holdout"].append(hold)
        if hold < best - 1e-6:
            best, best_epoch, stale = hold, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        on_epoch(epoch)
        if stale >= config.patience:
            break
    state = {k: v.detach().cpu().contiguous() for k, v in best_state.items()}
    return state, curves, best_epoch, elapsed / len(curves["train"])


def save(directory: Path, members: Sequence[TrainedMember]) -> list[dict[str, Any]]:
    """Write each member as ``<name>.safetensors``; returns their manifest entries."""
    entries = []
    for m in members:
        save_file({k: v.contiguous() for k, v in m.state.items()}, str(directory / f"{m.name}.safetensors"))
        entries.append({"name": m.name, "file": f"{m.name}.safetensors", **m.info})
    return entries


class DeepSetsEnsemble:
    """Loaded Deep-Sets members, evaluated on a torch device (CUDA when available)."""

    def __init__(self, directory: Path, manifest: dict[str, Any], device: str | None = None) -> None:
        self.device = torch.device(device) if device else pick_device()
        self.fields: list[str] = list(manifest["fields"])
        self.observables: list[str] = list(manifest["observables"])
        config = DeepSetsConfig.model_validate(manifest["config"])
        self.models: list[DeepSets] = []
        for entry in manifest["members"]:
            model = DeepSets(len(self.fields), len(self.observables), config)
            try:
                state = load_file(str(directory / entry["file"]))
                model.load_state_dict(state)
            except (OSError, RuntimeError, ValueError) as exc:
                raise StageError(f"{directory / entry['file']}: cannot read member ({exc}); retrain") from None
            self.models.append(model.to(self.device).eval())

    def member_log_weights_padded(
        self, objects: NDArray[np.float32], mask: NDArray[np.bool_], high: NDArray[np.float32]
    ) -> NDArray[np.float64]:
        """Uncalibrated log w of every member ``(members, n)`` on padded raw inputs."""
        out = np.empty((len(self.models), len(objects)))
        with torch.inference_mode():
            for lo in range(0, len(objects), EVAL_TILE):
                sl = slice(lo, lo + EVAL_TILE)
                o = torch.from_numpy(np.ascontiguousarray(objects[sl], np.float32)).to(self.device)
                m = torch.from_numpy(np.ascontiguousarray(mask[sl])).to(self.device)
                h = torch.from_numpy(np.ascontiguousarray(high[sl], np.float32)).to(self.device)
                for k, model in enumerate(self.models):
                    out[k, sl] = model(o, m, h).double().cpu().numpy()
        return out

    def member_log_weights(self, ev: ObjectEvents) -> NDArray[np.float64]:
        """Uncalibrated log w of every member ``(members, n)`` on the events ``ev``."""
        objects, mask, high = inputs(ev, self.fields, self.observables)
        return self.member_log_weights_padded(objects, mask, high)
