"""Figure 2: streamed inference -- events x members per second and peak memory, flat in the number of events.

Each case (events, members, method) runs in a fresh subprocess, so that its peak memory is its own: the
process builds an ensemble of random members (the default 3x64 MLP; weights do not change the cost) and an
events file, warms up on two chunks of events, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
runs, and reports the increase of the peak resident set over the resident set before the run (and, on CUDA,
the peak of ``torch.cuda.max_memory_allocated``). Methods:

``project``  the infer stage's code path, ``nsbiflow.physics.inference.infer_file``: Parquet read and written
             one chunk at a time, members evaluated one after the other in tiles of 8192 events (Welford mean
             and spread); on CUDA the members are stacked in groups of 32 (``Ensemble.load``, fp32);
``stacked``  a prototype: the members stacked into one ``BatchedMLP`` (``from_member_states``) on the device,
             evaluated in (member group x event chunk) tiles with bf16 autocast on CUDA, mean and spread from
             running sums -- reading the same file with ``iter_events``.

``--memory`` runs only the flatness check (project path, 2 members, 1e5/1e6/1e7 events) and writes
``inference_memory.json``.

From the measured throughput and a memory model it projects the seed analysis' 1e4 networks x 1e6 events:
time on the measured device, and the peak memory of the tiled evaluation on one 16 GB GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, quick, table, write_result

HIDDEN = [64, 64, 64]
CHUNK = 50_000  # the infer stage's default batch_size
MEMBER_GROUP = 32  # members per tile of the stacked prototype
CPU_TILE = 8192  # events per tile of the stacked prototype on a CPU
GPU_MEMORY = 16 * 2**30
WARM_CHUNKS = 20  # chunks of warm-up before the baseline (see case())


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 0


def _reset_peak() -> bool:
    """Reset the peak resident set counter (VmHWM) of this process; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:  # pragma: no cover
        return False


def make_ensemble(directory: Path, members: int, seed: int = 0) -> Path:
    """A collection with one label, ``signal``, of ``members`` randomly initialised members."""
    import torch

    from nsbiflow.physics.ensemble import save_members
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
    from nsbiflow.physics.toy_model import OBSERVABLES
    from nsbiflow.physics.training import Scaler, TrainedMember

    torch.manual_seed(seed)
    config = MLPConfig(n_inputs=len(OBSERVABLES), hidden=HIDDEN)
    model = BatchedMLP(config, members)
    trained = [TrainedMember(f"member_{k:04d}", model.member_state(k), {"member_id": k}) for k in range(members)]
    scaler = Scaler(mean=np.zeros(len(OBSERVABLES), np.float32), std=np.ones(len(OBSERVABLES), np.float32))
    extra = {"numerator": "signal", "reference": "reference", "observables": list(OBSERVABLES)}
    save_members(directory, "signal", trained, scaler, config, extra)
    return directory


def make_events(path: Path, n: int, seed: int = 0) -> Path:
    """A canonical events file of ``n`` background events (written in pieces: bounded memory)."""
    import pyarrow.parquet as pq

    from nsbiflow.physics.events import Events, write_events
    from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel

    toy = ToyModel()
    rng = np.random.default_rng(seed)
    piece = 250_000
    parts = []
    for start in range(0, n, piece):
        m = min(piece, n - start)
        part = path.with_suffix(f".{start}.parquet")
        events = Events(toy.sample("background", m, rng), np.ones(m), list(OBSERVABLES), {"process": "background"})
        write_events(events, part)
        parts.append(part)
    first = pq.ParquetFile(str(parts[0]))
    with pq.ParquetWriter(str(path), first.schema_arrow) as writer:
        for part in parts:
            for i in range(pq.ParquetFile(str(part)).num_row_groups):
                writer.write_table(pq.ParquetFile(str(part)).read_row_group(i))
            part.unlink()
    return path


def run_project(events: Path, collection: Path, out: Path) -> None:
    """The infer stage's streaming path."""
    from nsbiflow.physics.inference import infer_file, load_targets

    targets = load_targets([collection])
    infer_file(events, out, targets, support=None, batch_size=CHUNK, aggregate="mean")


def run_stacked(events: Path, collection: Path, out: Path) -> None:
    """Prototype: all members as one batched model on the device, (member group x chunk) tiles."""
    import torch
    from safetensors.torch import load_file

    from nsbiflow.physics.ensemble import MANIFEST
    from nsbiflow.physics.events import iter_events
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    target = collection / "signal"
    manifest = json.loads((target / MANIFEST).read_text())
    states = [load_file(str(target / m["file"])) for m in manifest["members"]]
    mean_x = states[0].pop("scaler.mean").to(dev)
    std_x = states[0].pop("scaler.std").to(dev)
    for s in states[1:]:
        s.pop("scaler.mean"), s.pop("scaler.std")
    config = MLPConfig.model_validate(manifest["mlp"])
    groups = [
        BatchedMLP.from_member_states(config, states[i : i + MEMBER_GROUP]).to(dev).eval()
        for i in range(0, len(states), MEMBER_GROUP)
    ]
    amp = dev.type == "cuda"
    tile = CHUNK if dev.type == "cuda" else CPU_TILE  # on a CPU, keep one tile's activations in cache
    k = len(states)
    means = []
    with torch.inference_mode():
        for batch in iter_events(events, CHUNK):
            x = (torch.from_numpy(batch.x).to(dev, torch.float32) - mean_x) / std_x
            total = torch.zeros(len(x), device=dev, dtype=torch.float64)
            total2 = torch.zeros_like(total)
            for lo in range(0, len(x), tile):
                sl = slice(lo, lo + tile)
                for model in groups:
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                        logits = model(x[sl]).double()
                    total[sl] += logits.sum(0)
                    total2[sl] += (logits * logits).sum(0)
            mean = total / k
            spread = (total2 / k - mean * mean).clamp_min(0).sqrt()
            means.append((mean.float().cpu().numpy(), spread.float().cpu().numpy()))
            means.clear()  # the stage would write the chunk here; keep memory bounded


def case(events_n: int, members: int, method: str, repeats: int) -> dict[str, Any]:
    """One case, in this (fresh) process: seconds, member-events/s and peak memory above the baseline."""
    import torch

    folder = Path(tempfile.mkdtemp(prefix="nsbi-bench-infer-"))
    collection = make_ensemble(folder / "ens", members)
    events = make_events(folder / "events.parquet", events_n)
    # warm-up on WARM_CHUNKS full chunks: pages in the libraries and brings the allocators to their steady state,
    # so that the peak measured next is what the run adds (and grows with the events only if it leaks). Two chunks
    # were not enough: glibc raises its mmap threshold as chunk-sized arrays are freed (later ones come from a
    # growing heap) and Arrow's mimalloc pool keeps freed pages, together ~20 MiB that plateau after ~10-20 chunks
    # (flat from the first chunk with MALLOC_MMAP_THRESHOLD_=131072 ARROW_DEFAULT_MEMORY_POOL=system); measured
    # after a 2-chunk warm-up, that plateau made 1e5 events look cheaper than 1e6 and 1e7.
    warm = make_events(folder / "warm.parquet", WARM_CHUNKS * CHUNK if not quick() else min(2 * CHUNK, events_n),
                       seed=1)  # fmt: skip
    out = folder / "out.parquet"
    fn = {"project": run_project, "stacked": run_stacked}[method]
    fn(warm, collection, out)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    import pyarrow as pa

    reset = _reset_peak()
    baseline = _status("VmRSS")
    arrow_base = pa.default_memory_pool().max_memory()
    tracemalloc.start()  # numpy and Python allocations (a few per chunk and member: negligible overhead)
    seconds = median_time(lambda: fn(events, collection, out), repeats=repeats, warmup=0)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = _status("VmHWM")
    result = {
        "events": events_n, "members": members, "method": method, "seconds": seconds,
        "member_events_per_s": events_n * members / seconds, "peak_rss_increase_bytes": max(peak - baseline, 0),
        "peak_rss_bytes": peak, "peak_reset": reset, "chunk": CHUNK, "repeats": repeats,
        "peak_traced_numpy_python_bytes": traced_peak,
        "arrow_pool_max_bytes": max(pa.default_memory_pool().max_memory() - arrow_base, 0),
        "peak_traced_plus_arrow_bytes": traced_peak + max(pa.default_memory_pool().max_memory() - arrow_base, 0),
    }  # fmt: skip
    if torch.cuda.is_available():
        result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    for p in sorted(folder.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    folder.rmdir()
    return result


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def memory_model(n_params: int, width: int, members: int, events: int, group: int, chunk: int) -> dict[str, float]:
    """Peak device bytes of the tiled evaluation: every member's weights resident, one tile's activations, sums.

    Independent of ``events``: chunks stream through and are written out as they finish.
    """
    weights = members * n_params * 4
    activations = 3 * group * chunk * width * 4  # input of a layer, its output, and the activation's output
    accumulators = 3 * chunk * 8 + chunk * 5 * 4
    output = 0  # chunks are written out as they finish (streamed), not kept on the device
    total = weights + activations + accumulators + output
    return {"members": members, "events": events, "group": group, "chunk": chunk, "bytes": float(total)}


def main() -> None:
    """Run every case in a subprocess, print figure 2 and write the JSON."""
    if "--case" in sys.argv:
        i = sys.argv.index("--case")
        args = sys.argv[i + 1 : i + 5]
        print(json.dumps(case(int(args[0]), int(args[1]), args[2], int(args[3]))))
        return
    q = quick()
    gpu = _has_cuda()
    memory_only = "--memory" in sys.argv  # the flatness check alone: 1e5/1e6/1e7 events, 2 members, project path
    grid = [(2_000, 2), (20_000, 2)] if q else [(100_000, 16), (1_000_000, 16), (100_000, 128), (1_000_000, 128)]
    if memory_only:
        grid = [(100_000, 2), (1_000_000, 2)]
    if not q:
        grid.append((10_000_000, 16 if not memory_only else 2))  # decisive: holding 1e7 events would add ~0.5 GB
    results = []
    for events_n, members in grid:
        for method in ("project", "stacked"):
            if method == "stacked" and memory_only:
                continue
            if method == "stacked" and not q and not gpu and (events_n, members) != grid[0]:
                continue  # on a CPU the stacked prototype is slower than the member loop (measured at grid[0])
            repeats = 1 if q or memory_only or events_n * members >= 5e7 else 3
            start = time.perf_counter()
            if q:  # toy sizes: in this process (the smoke test must be quick)
                r = case(events_n, members, method, repeats)
            else:
                proc = subprocess.run(
                    [sys.executable, __file__, "--case", str(events_n), str(members), method, str(repeats)],
                    capture_output=True, text=True, check=True, env={**os.environ},
                )  # fmt: skip
                r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["wall_seconds"] = time.perf_counter() - start
            results.append(r)
            print(f"  {method:8s} {events_n:>9,d} events x {members:3d} members: {r['seconds']:.2f} s", flush=True)
    rows = [
        [r["method"], r["events"], r["members"], r["member_events_per_s"], r["peak_rss_increase_bytes"] / 2**20,
         r["peak_traced_numpy_python_bytes"] / 2**20, r["arrow_pool_max_bytes"] / 2**20]
        for r in results
    ]  # fmt: skip
    columns = ["method", "events", "members", "member-events/s", "peak RSS +MiB", "traced MiB", "arrow MiB"]
    print(table("streamed inference (3x64 MLP)", columns, rows))

    def find(method: str, events_n: int, members: int) -> dict[str, Any]:
        return next(r for r in results if (r["method"], r["events"], r["members"]) == (method, events_n, members))

    lo_n = min(n for n, _ in grid)
    hi_n = 10 * lo_n

    def ratio(field: str) -> dict[str, float]:
        return {
            f"{m} x{k}": find(m, hi_n, k)[field] / max(find(m, lo_n, k)[field], 1)
            for m in ("project", "stacked")
            for k in sorted({k for _, k in grid})
            if any(r["method"] == m and r["members"] == k and r["events"] == hi_n for r in results)
        }

    flat = ratio("peak_rss_increase_bytes")
    peak_ratio = ratio("peak_rss_bytes")
    top = max(n for n, _ in grid)
    if top > hi_n:  # 1e6 -> 1e7 too
        k16 = next(k for n, k in grid if n == top)
        peak_ratio[f"project x{k16} {top // 10:.0e}->{top:.0e}"] = (
            find("project", top, k16)["peak_rss_bytes"] / find("project", top // 10, k16)["peak_rss_bytes"]
        )
    flat_traced = ratio("peak_traced_plus_arrow_bytes")
    # peak RSS added by 10x more events at the largest size, against what holding those events would take
    # (the input columns alone: 5 observables + weight, float64)
    top_n = max(n for n, _ in grid)
    top_k = next(k for n, k in grid if n == top_n)
    growth: dict[str, float] = {}
    if top_n > hi_n:
        extra = find("project", top_n, top_k)["peak_rss_increase_bytes"]
        extra -= find("project", top_n // 10, top_k)["peak_rss_increase_bytes"]
        held = (top_n - top_n // 10) * 6 * 8
        growth = {
            "events": top_n,
            "members": top_k,
            "peak_rss_growth_bytes": extra,
            "holding_the_extra_events_bytes": held,
            "fraction_of_holding": extra / held,
        }
    best = max(results, key=lambda r: r["member_events_per_s"])
    n_params = sum(a * b + b for a, b in zip([5, *HIDDEN], [*HIDDEN, 1], strict=True))
    target_pairs = 1e4 * 1e6
    mem = memory_model(n_params, max(HIDDEN), 10_000, 1_000_000, group=128, chunk=65_536)
    summary: dict[str, Any] = {
        "peak_memory_ratio_10x_events": flat,
        "peak_traced_memory_ratio_10x_events": flat_traced,
        "peak_rss_growth_at_largest_10x": growth,
        "peak_rss_ratio_10x_events": peak_ratio,
        "memory_flat_in_events": all(v <= 1.1 for v in peak_ratio.values()) if not q else None,
        "memory_flat_criterion": "peak RSS of the process at 10x the events (1e5 -> 1e6, 1e6 -> 1e7) within 10%",
        "stacked_speedup_vs_project": {
            f"{r['events']}x{r['members']}": r["member_events_per_s"]
            / find("project", r["events"], r["members"])["member_events_per_s"]
            for r in results
            if r["method"] == "stacked"
        },
        "projection_1e4_networks_1e6_events": {
            "member_events": target_pairs,
            "seconds_at_best_measured_rate_here": target_pairs / best["member_events_per_s"],
            "best_method": best["method"],
            "gpu_memory_model_bytes": mem["bytes"],
            "gpu_memory_model": mem,
            "fits_16GB": mem["bytes"] < GPU_MEMORY,
            "gpu_time": "pending a GPU session (run this script where the device tool lends one)",
        },
    }
    print(f"peak RSS increase at 10x the events (same members): {flat}")
    print(f"peak traced numpy/Python + Arrow pool memory at 10x the events: {flat_traced}")
    if growth:
        print(
            f"peak RSS growth from {top_n // 10:.0e} to {top_n:.0e} events (x{top_k}): "
            f"{growth['peak_rss_growth_bytes'] / 2**20:+.0f} MiB; holding them: "
            f"{growth['holding_the_extra_events_bytes'] / 2**20:.0f} MiB"
        )
    proj = summary["projection_1e4_networks_1e6_events"]
    print(
        f"1e4 networks x 1e6 events: {proj['seconds_at_best_measured_rate_here'] / 3600:.1f} h at the best rate here "
        f"({best['method']}); tiled GPU memory model {mem['bytes'] / 2**30:.2f} GiB (< 16 GiB: {proj['fits_16GB']})"
    )
    name = "inference_memory" if memory_only else "inference" + ("_quick" if q else "")
    write_result(name, {"hidden": HIDDEN, "cases": results, "summary": summary})


if __name__ == "__main__":
    main()
