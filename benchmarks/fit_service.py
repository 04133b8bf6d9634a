"""Fit service: N patches of a pyhf workspace through ``nsbiflow serve`` vs ``pyhf cls`` per patch vs in-process.

A one-channel, 3-bin HistFactory workspace (normfactor POI, normsys, per-bin shapesys; a search in a few bins) and
a pyhf PatchSet of N signal hypotheses (N = 100; 10 with ``--quick``). Three ways to get every patch's CLs
(observed and the expected band, q~, mu = 1):

- process per patch: ``pyhf cls workspace.json --patch patch_i.json`` in a fresh process, the way a shell
  loop or a function-as-a-service call runs it. Only a sample of ``SAMPLE`` patches is run (each takes
  seconds); the total for N is the sample's mean times N (reported as such).
- in process: one Python loop (``PatchSet.apply`` + ``pyhf.infer.hypotest``), numpy backend, scipy optimizer.
- the service: ``nsbiflow serve`` with one worker per CPU on 127.0.0.1, the workspace uploaded once, then one
  ``POST /v1/batch`` with the patchset (end to end through HTTP); also the mean latency of single
  ``POST /v1/hypotest`` requests with one patch each (25 of them, one after the other).

The fresh-process sample is taken half before and half after the other two ways (the load of a shared
machine drifts); the 1-minute load average is recorded at each phase.

Every CLs value from the service and from the fresh processes must equal the in-process value to 1e-6.

NSBI model (the toy's ``workflows/models/toy.yaml`` on exact-ratio tables in a store): fits per second on
the warm service (a batch of fits of patched signal yields, the tables loaded once per worker) against a
fresh ``nsbiflow fit --model`` process per fit (imports, tables from the store, one fit).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

# One BLAS thread everywhere (this process, the `pyhf cls` processes, the service's workers), set before
# numpy is first imported: on a shared machine threads only contend, and the same thread count gives the
# same floating-point sums in all three ways.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

TOKEN = "benchmark-token-0123456789abcdef"
TARGET = 25.0
TOLERANCE = 1e-6
MODIFIERS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}


def workspace(n_channels: int = 1, n_bins: int = 3) -> dict[str, Any]:
    """A HistFactory workspace: signal (normfactor POI, normsys), background (normsys, per-bin shapesys)."""
    channels, observations = [], []
    for c in range(n_channels):
        bkg = [100.0 * (1.0 - 0.05 * b) + 10.0 * c for b in range(n_bins)]
        signal = [2.0 + 1.5 * b for b in range(n_bins)]
        channels.append({"name": f"ch{c}", "samples": [
            {"name": "signal", "data": signal, "modifiers": [
                {"name": "mu", "type": "normfactor", "data": None},
                {"name": "sig_theory", "type": "normsys", "data": {"hi": 1.05, "lo": 0.95}}]},
            {"name": "bkg", "data": bkg, "modifiers": [
                {"name": "bkg_norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                {"name": f"stat_ch{c}", "type": "shapesys", "data": [v**0.5 for v in bkg]}]},
        ]})
        observations.append({"name": f"ch{c}", "data": [round(b + 0.5 * s) for b, s in zip(bkg, signal, strict=True)]})
    return {"version": "1.0.0", "channels": channels, "observations": observations,
            "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]}


def patchset(base: dict[str, Any], n: int) -> dict[str, Any]:
    """N signal hypotheses: the signal yields of every channel scaled and tilted."""
    import pyhf

    patches = []
    for i in range(n):
        scale, tilt = 0.4 + 2.0 * i / max(n - 1, 1), -0.3 + 0.6 * ((i * 37) % n) / max(n - 1, 1)
        ops = []
        for c, channel in enumerate(base["channels"]):
            data = channel["samples"][0]["data"]
            k = len(data)
            ops.append({"op": "replace", "path": f"/channels/{c}/samples/0/data",
                        "value": [round(v * scale * (1 + tilt * (b / (k - 1) - 0.5)), 6) for b, v in enumerate(data)]})
        patches.append({"metadata": {"name": f"point_{i:03d}", "values": [i]}, "patch": ops})
    return {"metadata": {"name": "signal-grid", "description": "benchmark grid", "labels": ["point"],
                         "references": {"hepdata": "ins0000000"}, "digests": {"sha256": pyhf.utils.digest(base)}},
            "patches": patches, "version": "1.0.0"}


def in_process(base: dict[str, Any], patches: dict[str, Any]) -> tuple[float, dict[str, list[float]]]:
    """Every patch's CLs in one Python loop; (seconds, name -> [obs, exp...])."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    patch_set = pyhf.PatchSet(patches)
    original = pyhf.Workspace(base)
    results = {}
    start = time.perf_counter()
    for patch in patch_set.patches:
        ws = patch_set.apply(original, patch.name)
        model = ws.model(modifier_settings=MODIFIERS)
        observed, expected = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde",
                                                 return_expected_set=True)
        results[patch.name] = [float(observed), *(float(v) for v in expected)]
    return time.perf_counter() - start, results


def process_per_patch(
    folder: Path, patches: dict[str, Any], sample: slice
) -> tuple[list[float], dict[str, list[float]]]:
    """``pyhf cls --patch`` in a fresh process for the patches in ``sample``."""
    pyhf_cli = Path(sys.executable).parent / "pyhf"
    times, results = [], {}
    for patch in patches["patches"][sample]:
        path = folder / f"{patch['metadata']['name']}.json"
        path.write_text(json.dumps(patch["patch"]))
        start = time.perf_counter()
        out = subprocess.run([str(pyhf_cli), "cls", str(folder / "workspace.json"), "--patch", str(path)],
                             capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        answer = json.loads(out.stdout)
        results[patch["metadata"]["name"]] = [answer["CLs_obs"], *answer["CLs_exp"]]
    return times, results


def through_service(folder: Path, base: dict[str, Any], patches: dict[str, Any], workers: int,
                    singles: int) -> dict[str, Any]:
    """Upload once, then one batch request and ``singles`` single requests; timings and results."""
    from nsbiflow.service.client import FitClient
    from nsbiflow.service.process import ServerProcess

    started = time.perf_counter()
    with ServerProcess(folder / "store", token=TOKEN, workers=workers) as server, \
            FitClient(server.url, TOKEN) as client:
        ready = time.perf_counter() - started
        digest = client.upload(base, name="benchmark")["digest"]
        client.hypotest(digest, 1.0)  # the first request loads the model in one worker
        start = time.perf_counter()
        batch = client.batch(digest, patchset=patches)
        batch_s = time.perf_counter() - start
        one_by_one = {}
        start = time.perf_counter()
        for patch in patches["patches"][:singles]:
            answer = client.hypotest(digest, 1.0, patch=patch["patch"])["result"]
            one_by_one[patch["metadata"]["name"]] = [answer["cls_obs"], *answer["cls_exp"]]
        singles_s = time.perf_counter() - start
    assert batch["failed"] == 0, batch
    results = {i["name"]: [i["result"]["cls_obs"], *i["result"]["cls_exp"]] for i in batch["items"]}
    return {"start_s": ready, "batch_s": batch_s, "single_requests": singles,
            "single_request_mean_s": singles_s / singles, "results": results, "singles": one_by_one}


def nsbi_tables(folder: Path, n_events: int, seed: int = 5) -> Path:
    """The toy's samples with exact log-ratios as ``infer`` writes them (one Parquet file per sample)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nsbiflow.physics.toy_model import ToyModel

    labels = {"signal": ("signal", "reference"), "background": ("background", "reference"),
              "background_up": ("background_up", "background"), "background_down": ("background_down", "background")}
    toy, rng = ToyModel(), np.random.default_rng(seed)
    samples = {p: toy.sample(p, n_events, rng) for p in ("signal", "background", "reference", "background_up",
                                                         "background_down")}
    samples["observed"] = toy.sample_mixture(100, 1000, rng)
    folder.mkdir(parents=True)
    for name, x in samples.items():
        columns = {f"x{j}": pa.array(x[:, j]) for j in range(x.shape[1])}
        for label, (num, den) in labels.items():
            columns[f"logr_{label}"] = pa.array(toy.log_ratio(num, den, x))
        meta = {"process": name, "observables": [f"x{j}" for j in range(x.shape[1])]}
        table = pa.table(columns).replace_schema_metadata({b"nsbiflow": json.dumps(meta).encode()})
        pq.write_table(table, str(folder / f"{name}.parquet"))
    return folder


def nsbi(folder: Path, n_events: int, n_fits: int, cold_runs: int, workers: int) -> dict[str, Any]:
    """NSBI model fits: a fresh ``nsbiflow fit`` process per fit (cold) vs patched fits on the warm service."""
    import yaml

    from nsbiflow.service.backends.nsbi_model import bundle_document
    from nsbiflow.service.client import FitClient
    from nsbiflow.service.process import ServerProcess
    from nsbiflow.store import open_store

    store_path = folder / "nsbi-store"
    store = open_store(store_path)
    tree = store.put_tree(nsbi_tables(folder / "ratios", n_events)).digest
    model = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflows" / "models" / "toy.yaml").read_text())
    bundle = bundle_document(model, [tree])
    with ServerProcess(store_path, token=TOKEN, workers=workers) as server, FitClient(server.url, TOKEN) as client:
        digest = client.upload(bundle, kind="nsbi", name="toy")["digest"]
        start = time.perf_counter()
        first = client.fit(digest)
        first_s = time.perf_counter() - start
        patches = [{"name": f"yield_{i}", "patch": [{"op": "replace", "path": "/regions/SR/processes/signal/yield",
                                                     "value": 60.0 + 80.0 * i / max(n_fits - 1, 1)}]}
                   for i in range(n_fits)]
        start = time.perf_counter()
        batch = client.batch(digest, patches=patches, operation={"op": "fit"})
        warm_s = time.perf_counter() - start
    assert batch["failed"] == 0, batch
    command = [str(Path(sys.executable).parent / "nsbiflow"), "fit", "--store", str(store_path), "--model", digest]
    cold = []
    for _ in range(cold_runs):
        start = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        cold.append(time.perf_counter() - start)
    cold_answer = json.loads(out.stdout)["result"]
    agree = abs(cold_answer["twice_nll"] - first["result"]["twice_nll"])
    return {
        "events_per_sample": n_events, "fits": n_fits, "workers": workers,
        "first_fit_on_the_server_s": first_s,
        "warm_batch_s": warm_s, "warm_fits_per_s": n_fits / warm_s,
        "cold_process_s": cold, "cold_fits_per_s": 1.0 / statistics.mean(cold),
        "warm_over_cold": (n_fits / warm_s) * statistics.mean(cold),
        "twice_nll_difference_cold_vs_service": agree,
        "note": "cold: a fresh `nsbiflow fit --model` process per fit (imports, tables from the store, fit); "
                "warm: fits of patched signal yields in one batch on the running service (tables loaded once)",
    }


def max_difference(reference: dict[str, list[float]], other: dict[str, list[float]]) -> float:
    """Largest absolute difference of any CLs value over the patches ``other`` has."""
    return max(abs(a - b) for name, values in other.items() for a, b in zip(reference[name], values, strict=True))


def main() -> int:
    """Run the three ways, check the numbers agree, write ``results/fit_service[_quick].json``."""
    n, sample, singles = (10, 2, 5) if quick() else (100, 10, 25)
    workers = max(1, os.cpu_count() or 1)
    base = workspace()
    patches = patchset(base, n)
    with tempfile.TemporaryDirectory(prefix="nsbiflow-bench-") as scratch:
        folder = Path(scratch)
        (folder / "workspace.json").write_text(json.dumps(base))
        # the machine's load drifts: half of the fresh-process sample before, half after the other two ways
        loads = {"start": os.getloadavg()[0]}
        fresh_times, fresh = process_per_patch(folder, patches, slice(0, sample // 2))
        loop_s, reference = in_process(base, patches)
        loads["after in-process"] = os.getloadavg()[0]
        service = through_service(folder, base, patches, workers, singles)
        loads["after service"] = os.getloadavg()[0]
        more_times, more = process_per_patch(folder, patches, slice(sample // 2, sample))
        fresh_times, fresh = fresh_times + more_times, {**fresh, **more}
        nsbi_figures = nsbi(folder, 2000 if quick() else 8000, 4 if quick() else 10, 1 if quick() else 2, workers)
        loads["end"] = os.getloadavg()[0]
    per_process = statistics.mean(fresh_times)
    process_total = per_process * n
    differences = {
        "service_batch": max_difference(reference, service["results"]),
        "service_single_requests": max_difference(reference, service["singles"]),
        "process_per_patch_sample": max_difference(reference, fresh),
    }
    speedup = process_total / service["batch_s"]
    rows = [
        ["pyhf cls, a fresh process per patch", process_total, f"{sample} run, mean x {n}"],
        ["in-process pyhf loop", loop_s, "one process, serial"],
        [f"service: one batch request ({workers} workers)", service["batch_s"], "model already warm"],
        ["service: single requests, one patch each", service["single_request_mean_s"],
         f"mean of {singles}, per request"],
    ]
    print(table(f"{n} patches of a {sum(len(c['samples'][0]['data']) for c in base['channels'])}-bin workspace: "
                "CLs at mu = 1", ["way", "seconds", "note"], rows))
    print(f"speed-up vs a process per patch: {speedup:.1f}x (target >= {TARGET:.0f}x); "
          f"vs the in-process loop: {loop_s / service['batch_s']:.2f}x")
    print(f"largest CLs difference from in-process pyhf: {max(differences.values()):.2e} (tolerance {TOLERANCE})")
    print(f"NSBI model fits ({nsbi_figures['events_per_sample']} events per sample): "
          f"{nsbi_figures['warm_fits_per_s']:.2f}/s warm on the service vs {nsbi_figures['cold_fits_per_s']:.3f}/s "
          f"in a fresh process ({nsbi_figures['warm_over_cold']:.1f}x)")
    ok = max(differences.values()) <= TOLERANCE and nsbi_figures["twice_nll_difference_cold_vs_service"] < 1e-6
    write_result("fit_service_quick" if quick() else "fit_service", {
        "patches": n,
        "workers": workers,
        "bins": sum(len(c["samples"][0]["data"]) for c in base["channels"]),
        "process_per_patch": {"sampled": sample, "seconds_each": fresh_times, "mean_s": per_process,
                              "total_s_scaled": process_total,
                              "note": f"{sample} fresh `pyhf cls --patch` processes timed; total = mean x {n}"},
        "in_process_s": loop_s,
        "service": {k: v for k, v in service.items() if k not in ("results", "singles")},
        "speedup_vs_process_per_patch": speedup,
        "speedup_vs_in_process": loop_s / service["batch_s"],
        "target_speedup": TARGET,
        "meets_target": speedup >= TARGET,
        "max_abs_cls_difference": differences,
        "tolerance": TOLERANCE,
        "results_agree": ok,
        "load_average_1min": loads,
        "nsbi": nsbi_figures,
    })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
