"""Figure 1: ensemble training throughput (member-events per second) and the fraction of the machine's limit.

Three ways of training the same K members of the same MLP on the same events for the same number of epochs
(Adam, a holdout evaluation per epoch; batch 512 unless named), timed one after the other in this process:

(a) ``loop``: a plain per-member loop of ``torch.nn.Sequential`` models, tensors indexed in memory (the
    strongest simple baseline; a ``DataLoader`` over a ``TensorDataset`` would be several times slower);
(b) ``trainer``: the project's ``nsbiflow.physics.training.train_ensemble`` (``mode="auto"``: members in one
    batched model, each on its own rows), and ``trainer-loop`` (``mode="loop"``: one member at a time),
    both at the trainer's default batch size (width-aware: 2048 for layers of >= 512 units, else 512);
(c) ``fast-batched``: a prototype of the GPU recipe -- members stacked in the project's ``BatchedMLP``, data
    kept on the device, large batches, fused Adam, TF32 and bf16 autocast on CUDA, optional ``torch.compile``
    (``--compile``) -- to show what the trainer gains from these settings.

A member-event is one event presented to one member in one epoch (training events only). The fraction of the
machine's limit is the model's FLOP/s (6 FLOPs per multiply-add per training event: forward and backward;
2 per holdout event) over the FLOP/s of a large ``torch.mm`` measured in the same run on the same device.
The paired 4x1000 check (``--paired-only``) also gives it against the shape-fair limit, the measured rate of
exactly the GEMMs one training step runs (``step_gemm_flops``: forward, grad_input and grad_weight of every
layer at the trainer's batch); the square-matrix rate overstates what skinny layers can reach.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, quick, table, write_result

FOLDS = 5
BATCH = 512


def device() -> torch.device:
    """CUDA when present (TF32 matmuls enabled), else CPU."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda")
    return torch.device("cpu")


def sync(dev: torch.device) -> None:
    """Wait for queued device work (timings on CUDA are otherwise launch times)."""
    if dev.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(dev: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None) -> float:
    """Measured FLOP/s of a square ``torch.mm`` (the device's practical matmul limit), median of several runs."""
    n = n or (8192 if dev.type == "cuda" else (1024 if quick() else 2048))
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    reps = 20 if dev.type == "cuda" else 3

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)
        sync(dev)

    return 2.0 * n**3 * reps / median_time(run, repeats=5 if not quick() else 2, warmup=1)


def step_gemm_flops(dev: torch.device, hidden: list[int], members: int, batch: int, n_inputs: int = 5) -> float:
    """Measured FLOP/s of exactly the GEMMs of one batched training step (the shape-fair limit).

    For every layer (fan-in a, fan-out b) of ``members`` stacked members on ``batch`` events: the forward
    ``h @ W`` (K, B, a) x (K, a, b), the backward ``grad_input = g @ W^T`` (K, B, b) x (K, b, a) and
    ``grad_weight = h^T @ g`` (K, a, B) x (K, B, b), with the transposed operands as views, as autograd
    passes them. The skinny first (5 -> width) and last (width -> 1) layers run at a fraction of the
    square-matrix rate, so this is what a trainer can reach at best; the square ``torch.mm`` rate
    (``matmul_flops``) overstates it for these shapes.
    """
    sizes = [n_inputs, *hidden, 1]
    ops: list[tuple[torch.Tensor, torch.Tensor]] = []
    flops = 0.0
    for a, b in itertools.pairwise(sizes):
        h = torch.randn(members, batch, a, device=dev)
        w = torch.randn(members, a, b, device=dev)
        g = torch.randn(members, batch, b, device=dev)
        ops += [(h, w), (g, w.transpose(1, 2)), (h.transpose(1, 2), g)]
        flops += 3 * 2.0 * members * batch * a * b
    reps = 20 if dev.type == "cuda" else 2

    def run() -> None:
        for _ in range(reps):
            for left, right in ops:
                torch.bmm(left, right)
        sync(dev)

    return flops * reps / median_time(run, repeats=5 if not quick() else 2, warmup=1)


def mlp_macs(n_inputs: int, hidden: list[int]) -> int:
    """Multiply-adds of one forward pass of one member on one event."""
    sizes = [n_inputs, *hidden, 1]
    return sum(a * b for a, b in itertools.pairwise(sizes))


@dataclass
class Data:
    """A numerator (label 1) / reference (label 0) training problem from the toy model."""

    numerator: np.ndarray
    reference: np.ndarray

    @property
    def n_train(self) -> int:
        """Training events per member (all events but one K-fold holdout fold)."""
        n = len(self.numerator) + len(self.reference)
        return n - math.ceil(n / FOLDS)

    @property
    def n_holdout(self) -> int:
        """Holdout events per member."""
        n = len(self.numerator) + len(self.reference)
        return math.ceil(n / FOLDS)


def toy_data(per_class: int, seed: int = 0) -> Data:
    """Signal vs reference events of the project's toy model."""
    from nsbiflow.physics.toy_model import ToyModel

    rng = np.random.default_rng(seed)
    toy = ToyModel()
    return Data(toy.sample("signal", per_class, rng), toy.sample("reference", per_class, rng))


def _tensors(data: Data, dev: torch.device) -> tuple[torch.Tensor, ...]:
    x = np.concatenate([data.numerator, data.reference])
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = np.concatenate([np.ones(len(data.numerator)), np.zeros(len(data.reference))]).astype(np.float32)
    perm = np.random.default_rng(1).permutation(len(x))
    hold = perm[: data.n_holdout]
    train = perm[data.n_holdout :]
    return tuple(torch.from_numpy(a).to(dev) for a in (x[train], y[train], x[hold], y[hold]))


def plain_loop(data: Data, hidden: list[int], members: int, epochs: int, dev: torch.device) -> None:
    """(a) One ``nn.Sequential`` at a time: shuffle, minibatch Adam steps, holdout loss per epoch."""
    x, y, xh, yh = _tensors(data, dev)
    loss_fn = nn.BCEWithLogitsLoss()
    for k in range(members):
        torch.manual_seed(k)
        sizes = [x.shape[1], *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.SiLU()]
        model = nn.Sequential(*layers, nn.Linear(sizes[-1], 1)).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(epochs):
            perm = torch.randperm(len(x), device=dev)
            for start in range(0, len(x), BATCH):
                idx = perm[start : start + BATCH]
                loss = loss_fn(model(x[idx]).squeeze(-1), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                float(loss_fn(model(xh).squeeze(-1), yh))
    sync(dev)


def project_trainer(
    data: Data, hidden: list[int], members: int, epochs: int, mode: str, batch: int | None = None,
    step: str = "auto",
) -> int:  # fmt: skip
    """(b) The project's trainer (``batch`` None: its default; ``step``: how it computes gradients, see
    ``train_ensemble``); returns the number of epochs it ran (all)."""
    from nsbiflow.physics.training import TrainConfig, train_ensemble

    config = TrainConfig(
        members=members, hidden=hidden, max_epochs=epochs, patience=epochs + 1, bootstrap=False,
        batch_size=batch, folds=FOLDS, mode=mode,
    )  # fmt: skip
    trained, _ = train_ensemble(data.numerator, data.reference, config, step=step)  # type: ignore[arg-type]
    return len(trained[0].curves["train"])


def fast_batched(
    data: Data,
    hidden: list[int],
    members: int,
    epochs: int,
    dev: torch.device,
    batch: int,
    compile_model: bool = False,
) -> None:
    """(c) Prototype GPU recipe: one ``BatchedMLP`` for all members, data on the device, bf16 autocast on CUDA."""
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

    x, y, xh, yh = _tensors(data, dev)
    model = BatchedMLP(MLPConfig(n_inputs=x.shape[1], hidden=hidden), members).to(dev)
    forward = torch.compile(model) if compile_model else model
    fused = dev.type == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=fused, foreach=None if fused else True)
    amp = dev.type == "cuda"
    for _ in range(epochs):
        perm = torch.randperm(len(x), device=dev)
        for start in range(0, len(x), batch):
            idx = perm[start : start + batch]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = forward(x[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits.float(), y[idx].expand_as(logits), reduction="none"
            ).mean(dim=1)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = forward(xh)
            nn.functional.binary_cross_entropy_with_logits(logits.float(), yh.expand_as(logits)).item()
    sync(dev)


def trainer_default_batch(hidden: list[int]) -> int:
    """The batch size the project's trainer uses by default for this MLP."""
    from nsbiflow.physics.training import TrainConfig

    return TrainConfig(hidden=hidden).effective_batch_size


def measure_case(
    name: str, hidden: list[int], members: int, per_class: int, epochs: int, dev: torch.device,
    mm_samples: list[float], repeats: int, compile_model: bool, big_batch: int | None,
) -> dict[str, Any]:  # fmt: skip
    """All methods on one (MLP, members, events) case; throughputs, FLOP fractions and ratios to the loop.

    The matmul limit is measured again before each method (this machine's speed drifts); the fraction uses the
    median of every matmul measurement of the run so far, ``mm_samples`` (appended to).
    """
    data = toy_data(per_class)
    macs = mlp_macs(5, hidden)
    member_events = members * epochs * data.n_train
    flops = members * epochs * (6 * macs * data.n_train + 2 * macs * data.n_holdout)
    ran = project_trainer(data, hidden, members, 1, "auto")  # warm-up (and check the API)
    assert ran == 1
    methods: dict[str, Any] = {
        "loop": lambda: plain_loop(data, hidden, members, epochs, dev),
        "trainer": lambda: project_trainer(data, hidden, members, epochs, "auto"),
        "trainer-loop": lambda: project_trainer(data, hidden, members, epochs, "loop"),
        "fast-batched": lambda: fast_batched(data, hidden, members, epochs, dev, BATCH),
    }
    trainer_batch = trainer_default_batch(hidden)
    if big_batch and big_batch != trainer_batch:
        methods[f"trainer-b{big_batch}"] = lambda: project_trainer(data, hidden, members, epochs, "auto", big_batch)
    if big_batch:
        methods[f"fast-batched-b{big_batch}"] = lambda: fast_batched(data, hidden, members, epochs, dev, big_batch)
    if compile_model:
        methods["fast-batched-compiled"] = lambda: fast_batched(data, hidden, members, epochs, dev, BATCH, True)
    results: dict[str, Any] = {}
    for method, fn in methods.items():
        mm_samples.append(matmul_flops(dev))
        seconds = median_time(fn, repeats=repeats, warmup=0 if method.startswith("trainer") else 1)
        results[method] = {"seconds": seconds}
    mm_flops = statistics.median(mm_samples)
    for method, entry in results.items():
        seconds = entry["seconds"]
        results[method] = {
            "seconds": seconds,
            "member_events_per_s": member_events / seconds,
            "model_flops_per_s": flops / seconds,
            "fraction_of_matmul": flops / seconds / mm_flops,
        }
    loop_s = results["loop"]["seconds"]
    for entry in results.values():
        entry["speedup_vs_loop"] = loop_s / entry["seconds"]
    return {
        "case": name, "hidden": hidden, "members": members, "events": 2 * per_class, "train_events": data.n_train,
        "epochs": epochs, "batch": BATCH, "trainer_batch": trainer_batch, "macs_per_event": macs,
        "member_events": member_events, "model_flops": flops, "methods": results,
    }  # fmt: skip


def paired_trainer_modes(hidden: list[int], members: int, per_class: int, epochs: int, dev: torch.device,
                         rounds: int) -> dict[str, Any]:  # fmt: skip
    """The trainer's batched and per-member paths on one shape, interleaved round by round, each timing
    bracketed by matmul measurements: on a loaded machine the speed drifts by several times within minutes, so
    a fraction of matmul is only meaningful against the matmul rate measured next to it, and the two paths'
    ratio only when measured in the same round."""
    data = toy_data(per_class)
    macs = mlp_macs(5, hidden)
    flops = members * epochs * (6 * macs * data.n_train + 2 * macs * data.n_holdout)
    project_trainer(data, hidden, members, 1, "batched")  # warm-up
    batch = trainer_default_batch(hidden)
    rows: list[dict[str, float]] = []
    for _ in range(rounds):
        row: dict[str, float] = {}
        # the default (batched members, autograd gradients), one member at a time, and the batched members
        # with the hand-written stacked step (opt-in: train_ensemble(step="stacked"))
        for mode, step in (("batched", "auto"), ("loop", "auto"), ("batched_stacked", "stacked")):
            k = 1 if mode == "loop" else members
            before = matmul_flops(dev)
            gemms_before = step_gemm_flops(dev, hidden, k, batch)
            start = time.perf_counter()
            project_trainer(data, hidden, members, epochs, mode.split("_")[0], step=step)
            seconds = time.perf_counter() - start
            gemms_after = step_gemm_flops(dev, hidden, k, batch)
            after = matmul_flops(dev)
            row[f"{mode}_seconds"] = seconds
            row[f"{mode}_fraction_of_matmul"] = flops / seconds / ((before + after) / 2)
            row[f"{mode}_fraction_of_step_gemms"] = flops / seconds / ((gemms_before + gemms_after) / 2)
            row[f"{mode}_step_gemms_over_matmul"] = (gemms_before + gemms_after) / (before + after)
            row[f"{mode}_matmul_drift"] = max(before, after) / min(before, after)
        row["batched_over_loop"] = row["loop_seconds"] / row["batched_seconds"]
        row["stacked_over_autograd"] = row["batched_seconds"] / row["batched_stacked_seconds"]
        rows.append(row)
    keys = rows[0].keys()
    return {"hidden": hidden, "members": members, "events": 2 * per_class, "epochs": epochs, "batch": batch,
            "rounds": rows, "median": {k: statistics.median(r[k] for r in rows) for k in keys},
            "worst": {k: min(r[k] for r in rows) for k in keys if "fraction" in k or "_over_" in k}}  # fmt: skip


def main() -> None:
    """Measure and print figure 1."""
    dev = device()
    compile_model = "--compile" in sys.argv
    q = quick()
    if "--paired-only" in sys.argv:  # the 4x1000 batched-vs-loop check alone (~2 min on 2 cores)
        load_start = os.getloadavg()
        rounds = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rounds=")), 1 if q else 5)
        paired = paired_trainer_modes([1000] * 4, 2, 2_500, 1, dev, rounds)
        print(json.dumps({"median": paired["median"], "worst": paired["worst"]}, indent=1))
        paired["load_average_start"] = list(load_start)  # 1, 5 and 15 min; write_result adds the 1 min at the end
        paired["load_average_end"] = list(os.getloadavg())
        write_result("training_paired" + ("_quick" if q else ""), {"device": str(dev), "paired_4x1000": paired})
        return
    mm_samples = [matmul_flops(dev)]
    payload: dict[str, Any] = {"device": str(dev)}
    if dev.type == "cuda":
        payload["matmul_flops_bf16"] = matmul_flops(dev, torch.bfloat16)
    if q:
        cases = [("small 3x64", [64, 64, 64], 2, 500, 1, None), ("analysis 4x1000", [1000] * 4, 1, 100, 1, 128)]
        repeats = 1
    elif dev.type == "cuda":
        cases = [
            ("small 3x64", [64, 64, 64], 64, 50_000, 2, 8192),
            ("analysis 4x1000", [1000] * 4, 16, 50_000, 2, 8192),
        ]
        repeats = 3
    else:
        cases = [("small 3x64", [64, 64, 64], 8, 10_000, 2, None), ("analysis 4x1000", [1000] * 4, 2, 2_500, 1, 2048)]
        repeats = 3
    rows = []
    payload["cases"] = []
    for name, hidden, members, per_class, epochs, big_batch in cases:
        start = time.perf_counter()
        case = measure_case(
            name, hidden, members, per_class, epochs, dev, mm_samples, repeats, compile_model, big_batch
        )
        case["wall_seconds"] = time.perf_counter() - start
        payload["cases"].append(case)
        for method, r in case["methods"].items():
            rows.append([name, members, method, r["member_events_per_s"], r["speedup_vs_loop"],
                         r["fraction_of_matmul"]])  # fmt: skip
    # quick: the code path at a toy shape (the smoke test runs it on a loaded machine)
    paired = paired_trainer_modes([64] * 2 if q else [1000] * 4, 2, 100 if q else 2_500, 1, dev, 1 if q else 3)
    payload["paired_4x1000"] = paired
    mm = statistics.median(mm_samples)
    payload["matmul_flops_fp32"] = mm
    payload["matmul_flops_samples"] = mm_samples
    small = payload["cases"][0]["methods"]
    big = payload["cases"][1]["methods"]
    best_big = max(big, key=lambda k: big[k]["fraction_of_matmul"])
    trainer_big = max((k for k in big if k.startswith("trainer")), key=lambda k: big[k]["fraction_of_matmul"])
    payload["summary"] = {
        "trainer_speedup_small": small["trainer"]["speedup_vs_loop"],
        "best_batched_speedup_small": max(v["speedup_vs_loop"] for k, v in small.items() if "batched" in k),
        "trainer_fraction_of_matmul_4x1000": big["trainer"]["fraction_of_matmul"],
        "best_trainer_setting_4x1000": trainer_big,
        "best_trainer_fraction_of_matmul_4x1000": big[trainer_big]["fraction_of_matmul"],
        "best_method_4x1000": best_big,
        "best_fraction_of_matmul_4x1000": big[best_big]["fraction_of_matmul"],
        "trainer_fraction_of_matmul_4x1000_paired": paired["median"]["batched_fraction_of_matmul"],
        "trainer_loop_fraction_of_matmul_4x1000_paired": paired["median"]["loop_fraction_of_matmul"],
        "trainer_fraction_of_step_gemms_4x1000_paired": paired["median"]["batched_fraction_of_step_gemms"],
        "step_gemms_over_matmul_4x1000": paired["median"]["batched_step_gemms_over_matmul"],
        "batched_over_loop_4x1000_paired": paired["median"]["batched_over_loop"],
        "target": "GPU: trainer >= 10x loop (small MLP), >= 40% of matmul (4x1000); "
        "CPU: trainer >= 2x loop (small MLP), >= 80% of matmul (4x1000)",
        "target_met": (
            small["trainer"]["speedup_vs_loop"] >= 2 and paired["median"]["batched_fraction_of_matmul"] >= 0.8
            if dev.type == "cpu"
            else small["trainer"]["speedup_vs_loop"] >= 10 and paired["median"]["batched_fraction_of_matmul"] >= 0.4
        ),
    }
    print(f"torch.mm limit on {dev}: {mm / 1e9:.1f} GFLOP/s (fp32)")
    print(
        table(
            f"ensemble training throughput ({dev})",
            ["case", "K", "method", "member-events/s", "x loop", "of matmul"],
            rows,
        )
    )
    write_result("training" + ("_quick" if q else ""), payload)


if __name__ == "__main__":
    main()
