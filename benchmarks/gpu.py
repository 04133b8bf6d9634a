"""GPU figures (issue 14, item 5): training and inference at GPU sizes, one script, at most ~8 minutes.

Run on a machine with one CUDA GPU: ``python benchmarks/gpu.py`` writes ``benchmarks/results/gpu.json``
with the device name. ``--smoke`` runs every part at tiny sizes (on a CPU too) and writes ``gpu_quick.json``,
so a test keeps the script from rotting where no GPU is lent.

Parts (each bounded in time; a part past its budget is cut short and marked ``truncated``):

1. ``matmul``: measured fp32 (TF32 allowed) and bf16 ``torch.mm`` rates, the practical limits;
2. ``small``: a 3x64 MLP ensemble -- a plain per-member loop of ``nn.Sequential`` models (batch 512, Adam;
   the baseline) against the project's trainer (``train_ensemble``: members in one batched model, fused Adam)
   and the batched recipe with bf16 autocast, large batches and optionally ``torch.compile``; target: the best
   batched path >= 10x the loop in member-events/s on the same GPU;
3. ``wide``: a 4x1000 MLP ensemble batched with bf16 autocast; target: >= 40 % of the bf16 matmul rate
   (6 FLOPs per multiply-add per training event);
4. ``inference``: 1e4 networks (3x64) x 1e6 events in stacked groups (bf16, event tiles, running sums of the
   mean and spread); target: peak GPU memory within 16 GB, with its measured time (and the project's own
   ``TorchMembers`` path on a slice, for comparison).
"""

from __future__ import annotations

import functools
import itertools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result
from training import device, sync
from training import mlp_macs as macs

SMOKE = "--smoke" in sys.argv
COMPILE = "--no-compile" not in sys.argv and not SMOKE
GiB = 2**30


def device_name(dev: torch.device) -> str:
    """Human name of the device (the GPU model, or ``cpu``)."""
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def timed(fn: Callable[[], object], dev: torch.device, repeats: int = 3) -> float:
    """Best wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    return timed_events(fn, dev, repeats)[0]


def matmul_rate(dev: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a square matmul of this dtype."""
    n = 256 if SMOKE else 8192
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    reps = 2 if SMOKE else 50

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    return 2.0 * n**3 * reps / timed(run, dev)


def data(n: int, dev: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two overlapping 5-D Gaussian classes (labels 1/0), on the device."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, 5, generator=g) + 0.5, torch.randn(n, 5, generator=g)])
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    return x.to(dev), y.to(dev)


def plain_loop(x: torch.Tensor, y: torch.Tensor, hidden: list[int], members: int, epochs: int) -> None:
    """The baseline: one ``nn.Sequential`` member after the other, batch 512, Adam."""
    loss_fn = nn.BCEWithLogitsLoss()
    for k in range(members):
        torch.manual_seed(k)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise([5, *hidden]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        model = nn.Sequential(*layers, nn.Linear(hidden[-1], 1)).to(x.device)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(epochs):
            perm = torch.randperm(len(x), device=x.device)
            for start in range(0, len(x), 512):
                idx = perm[start : start + 512]
                loss = loss_fn(model(x[idx]).squeeze(-1), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()


def batched(
    x: torch.Tensor, y: torch.Tensor, hidden: list[int], members: int, epochs: int, batch: int, compiled: bool
) -> int:
    """Members in one ``BatchedMLP``, bf16 autocast on CUDA, fused Adam, optionally ``torch.compile``.

    Full batches only (one shape: no recompilation); returns the events each member saw.
    """
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

    model = BatchedMLP(MLPConfig(n_inputs=5, hidden=hidden), members).to(x.device)
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if compiled else model
    cuda = x.device.type == "cuda"
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, fused=cuda or None, foreach=None if cuda else True)
    batch = min(batch, len(x))
    seen = 0
    for _ in range(epochs):
        perm = torch.randperm(len(x), device=x.device)
        for start in range(0, len(x) - batch + 1, batch):
            idx = perm[start : start + batch]
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = forward(x[idx])
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y[idx].expand_as(logits))
            opt.zero_grad(set_to_none=True)
            (loss * members).backward()
            opt.step()
            seen += batch
    return seen


def timed_events(fn: Callable[[], Any], dev: torch.device, repeats: int) -> tuple[float, Any]:
    """Best wall time of ``fn`` over ``repeats`` runs after one warm-up call, and what the warm-up returned."""
    result = fn()
    sync(dev)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(dev)
        best = min(best, time.perf_counter() - start)
    return best, result


def project_trainer(x: torch.Tensor, y: torch.Tensor, hidden: list[int], members: int, epochs: int) -> None:
    """The project's default trainer (numpy in, batched members on the device)."""
    from nsbiflow.physics.training import TrainConfig, train_ensemble

    xn = x.cpu().numpy().astype(np.float64)
    n = len(xn) // 2
    cfg = TrainConfig(members=members, hidden=hidden, max_epochs=epochs, patience=epochs + 1, bootstrap=False,
                      batch_size=0)  # fmt: skip
    train_ensemble(xn[:n], xn[n:], cfg)


def part_small(dev: torch.device) -> dict[str, Any]:
    """3x64 ensembles: loop vs batched (member-events per second)."""
    hidden = [64, 64, 64]
    per_class, epochs = (500, 1) if SMOKE else (50_000, 2)
    loop_members, members = (2, 4) if SMOKE else (4, 256)
    x, y = data(per_class, dev)
    events = len(x)
    results: dict[str, Any] = {}
    seconds = timed(lambda: plain_loop(x, y, hidden, loop_members, epochs), dev, repeats=1)
    results["loop"] = {"members": loop_members, "seconds": seconds,
                       "member_events_per_s": loop_members * epochs * events / seconds}  # fmt: skip
    trainer_members = 4 if SMOKE else 64
    seconds = timed(lambda: project_trainer(x, y, hidden, trainer_members, epochs), dev, repeats=1)
    # the trainer holds out one of its 5 folds per member: it trains on 80 % of the events
    results["trainer"] = {"members": trainer_members, "seconds": seconds,
                          "member_events_per_s": trainer_members * epochs * events * 0.8 / seconds}  # fmt: skip
    for name, batch, compiled in [("batched-b512", 512, False), ("batched-b8192", 8192, False),
                                  ("batched-b8192-compiled", 8192, True)]:  # fmt: skip
        if compiled and not COMPILE:
            continue
        try:
            seconds, seen = timed_events(functools.partial(batched, x, y, hidden, members, epochs, batch, compiled),
                                         dev, repeats=1 if compiled else 2)  # fmt: skip
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        results[name] = {"members": members, "batch": batch, "seconds": seconds,
                         "member_events_per_s": members * seen / seconds}  # fmt: skip
    loop_rate = results["loop"]["member_events_per_s"]
    for entry in results.values():
        if "member_events_per_s" in entry:
            entry["speedup_vs_loop"] = entry["member_events_per_s"] / loop_rate
    best = max((k for k in results if "speedup_vs_loop" in results[k] and k != "loop"),
               key=lambda k: results[k]["speedup_vs_loop"])  # fmt: skip
    return {"hidden": hidden, "events": events, "epochs": epochs, "methods": results, "best": best,
            "best_speedup_vs_loop": results[best]["speedup_vs_loop"],
            "target_met": results[best]["speedup_vs_loop"] >= 10}  # fmt: skip


def part_wide(dev: torch.device, bf16_rate: float) -> dict[str, Any]:
    """4x1000 batched with bf16 autocast: fraction of the bf16 matmul rate."""
    hidden = [1000] * 4 if not SMOKE else [64] * 4
    per_class, members, batch = (500, 2, 256) if SMOKE else (50_000, 16, 8192)
    x, y = data(per_class, dev)
    out: dict[str, Any] = {"hidden": hidden, "members": members, "events": len(x), "batch": batch}
    for name, compiled in [("batched", False), ("batched-compiled", True)]:
        if compiled and not COMPILE:
            continue
        try:
            seconds, seen = timed_events(functools.partial(batched, x, y, hidden, members, 1, batch, compiled), dev,
                                         repeats=1 if compiled else 2)  # fmt: skip
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        flops = 6 * macs(5, hidden) * seen * members
        out[name] = {"seconds": seconds, "flops_per_s": flops / seconds,
                     "fraction_of_bf16_matmul": flops / seconds / bf16_rate}  # fmt: skip
    fractions = [v["fraction_of_bf16_matmul"] for v in out.values()
                 if isinstance(v, dict) and "fraction_of_bf16_matmul" in v]  # fmt: skip
    out["best_fraction_of_bf16_matmul"] = max(fractions)
    out["target_met"] = max(fractions) >= 0.4
    return out


def stacked_inference(
    networks: int, events: int, dev: torch.device, group: int, tile: int, budget_s: float
) -> dict[str, Any]:
    """``networks`` random 3x64 members on ``events`` events: bf16 stacked groups, running mean/spread."""
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

    config = MLPConfig(n_inputs=5, hidden=[64, 64, 64])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    groups = [BatchedMLP(config, min(group, networks - lo)).to(dev).eval() for lo in range(0, networks, group)]
    x = torch.randn(events, 5, device=dev)
    total = torch.zeros(events, device=dev, dtype=torch.float32)
    total2 = torch.zeros_like(total)
    sync(dev)
    start = time.perf_counter()
    done = 0
    amp = dev.type == "cuda"
    with torch.inference_mode():
        for model in groups:
            for lo in range(0, events, tile):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    logits = model(x[lo : lo + tile]).float()
                total[lo : lo + tile] += logits.sum(0)
                total2[lo : lo + tile] += (logits * logits).sum(0)
            done += model.members
            if time.perf_counter() - start > budget_s:
                break
        mean = total / done
        spread = (total2 / done - mean * mean).clamp_min(0).sqrt()
        float(spread.mean())
    sync(dev)
    seconds = time.perf_counter() - start
    result = {"networks": networks, "networks_done": done, "events": events, "group": group, "tile": tile,
              "seconds": seconds, "member_events_per_s": done * events / seconds,
              "projected_seconds": seconds * networks / done, "truncated": done < networks}  # fmt: skip
    if dev.type == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
        result["within_16GB"] = result["peak_gpu_bytes"] < 16 * GiB
    return result


def project_inference(networks: int, events: int, dev: torch.device) -> dict[str, Any]:
    """The infer stage's ``TorchMembers`` (stacked groups of 32 on CUDA, fp32) on a slice."""
    from nsbiflow.physics.ensemble_torch import TorchMembers
    from nsbiflow.physics.forward import Scaler
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

    config = MLPConfig(n_inputs=5, hidden=[64, 64, 64])
    model = BatchedMLP(config, networks)
    states = [{k: v.numpy() for k, v in model.member_state(j).items()} for j in range(networks)]
    scaler = Scaler(mean=np.zeros(5, np.float32), std=np.ones(5, np.float32))
    members = TorchMembers(config, states, [scaler] * networks, str(dev))
    x = np.random.default_rng(0).normal(size=(events, 5))
    start = time.perf_counter()
    total = np.zeros(events)
    for values in members.member_log_ratios(x):
        total += values
    seconds = time.perf_counter() - start
    return {"networks": networks, "events": events, "seconds": seconds,
            "member_events_per_s": networks * events / seconds}  # fmt: skip


def main() -> None:
    """Run every part and write the JSON."""
    dev = device()
    if dev.type != "cuda" and not SMOKE:  # CPU figures at GPU sizes would mean nothing: record the absence plainly
        note = ("no CUDA device on this machine: the script is ready and runs in <= 8 minutes on one GPU; "
                "`--smoke` runs it at tiny sizes anywhere (gpu_quick.json)")
        write_result("gpu", {"gpu_available": False, "status": "no GPU available", "device": str(dev),
                             "command": "python benchmarks/gpu.py", "note": note})  # fmt: skip
        print("no GPU available: wrote benchmarks/results/gpu.json saying so (run this script on a GPU machine)")
        return
    if SMOKE and dev.type == "cpu":
        torch.set_num_threads(1)  # tiny sizes: threads only contend
    started = time.perf_counter()
    payload: dict[str, Any] = {"gpu_available": dev.type == "cuda", "device": str(dev),
                               "device_name": device_name(dev), "smoke": SMOKE,
                               "torch_compile": COMPILE}  # fmt: skip
    payload["matmul"] = {"fp32_tf32_flops_per_s": matmul_rate(dev, torch.float32),
                         "bf16_flops_per_s": matmul_rate(dev, torch.bfloat16)}  # fmt: skip
    bf16 = payload["matmul"]["bf16_flops_per_s"]
    print(f"{payload['device_name']}: bf16 matmul {bf16 / 1e12:.1f} TFLOP/s", flush=True)
    payload["small"] = part_small(dev)
    small = payload["small"]
    print(f"small 3x64: best {small['best']} {small['best_speedup_vs_loop']:.1f}x loop", flush=True)
    payload["wide"] = part_wide(dev, payload["matmul"]["bf16_flops_per_s"])
    print(f"wide 4x1000: {payload['wide']['best_fraction_of_bf16_matmul']:.0%} of bf16 matmul", flush=True)
    networks, events = (32, 2_000) if SMOKE else (10_000, 1_000_000)
    remaining = 480 - (time.perf_counter() - started) - 30
    payload["inference"] = stacked_inference(networks, events, dev, group=16 if SMOKE else 256,
                                             tile=4096 if SMOKE else 32_768, budget_s=max(10.0, remaining))  # fmt: skip
    payload["inference_project_path"] = project_inference(8 if SMOKE else 256, 10_000 if SMOKE else 200_000, dev)
    inf = payload["inference"]
    print(f"inference {inf['networks_done']} x {inf['events']:.0e}: {inf['seconds']:.1f} s "
          f"(projected {inf['projected_seconds']:.1f} s for {inf['networks']})", flush=True)  # fmt: skip
    payload["wall_seconds"] = time.perf_counter() - started
    payload["summary"] = {
        "device_name": payload["device_name"],
        "small_best_speedup_vs_loop": payload["small"]["best_speedup_vs_loop"],
        "wide_fraction_of_bf16_matmul": payload["wide"]["best_fraction_of_bf16_matmul"],
        "inference_1e4x1e6_seconds": inf["projected_seconds"],
        "inference_peak_gpu_gib": inf.get("peak_gpu_bytes", 0) / GiB,
        "targets": "small >= 10x loop; 4x1000 >= 40% of bf16 matmul; 1e4 x 1e6 inference within 16 GB",
        "targets_met": bool(payload["small"]["target_met"] and payload["wide"]["target_met"]
                            and inf.get("within_16GB", False)),
    }
    print(table(f"GPU figures ({payload['device_name']})", ["figure", "value"],
                [[k, v] for k, v in payload["summary"].items() if k != "targets"]))  # fmt: skip
    write_result("gpu_quick" if SMOKE else "gpu", payload)


if __name__ == "__main__":
    main()
