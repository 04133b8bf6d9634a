"""Reweighting MC_a onto MC_b on the truth-known toy of object sets: Deep Sets vs the BDT baseline.

Measured in one process, one after the other, on the same samples (``physics/reweight/toy.py``: the exact
per-event weight is analytic):

* closure of each method (and of the exact weight, the statistical floor; and of no weight, the starting
  point) on held-out samples: chi2/ndf per projection, worst trained and worst untrained, the classifier
  two-sample AUC, the yield, the effective sample size;
* the RMS of log w - log w_exact (after the normalisation offset) over held-out MC_a;
* Deep-Sets training time per epoch against the batch size on this machine's CPU (and on CUDA if present);
* disk: the bytes of the weight column that apply-reweighter writes, against a separately generated varied
  sample of the same size (with its objects) and against the reweighted events file.

``NSBIFLOW_BENCH_QUICK=1`` (or ``--quick``) runs at toy sizes and writes ``reweighting_quick.json``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small networks and trees: no gain from threads on 2 cores

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

from nsbiflow.physics.objects import write_object_events
from nsbiflow.physics.reweight.bdt import BDTConfig
from nsbiflow.physics.reweight.closure import closure, truth_comparison
from nsbiflow.physics.reweight.deepsets import DeepSetsConfig
from nsbiflow.physics.reweight.toy import ObjectToy
from nsbiflow.physics.reweight.train import train_reweighter

SUMMARY = ["n_obj", "ht", "pt1", "pt2", "eta1", "eta2"]
FIELDS = ["pt", "eta", "phi", "e"]


def _summarise(metrics: dict[str, Any]) -> dict[str, Any]:
    proj = metrics["projections"]
    trained = {k: v["chi2_ndf"] for k, v in proj.items() if v["trained"]}
    untrained = {k: v["chi2_ndf"] for k, v in proj.items() if not v["trained"]}
    out: dict[str, Any] = {
        "chi2_ndf": {k: v["chi2_ndf"] for k, v in proj.items()},
        "worst_trained": max(trained.items(), key=lambda kv: kv[1]) if trained else None,
        "worst_untrained": max(untrained.items(), key=lambda kv: kv[1]) if untrained else None,
        "mean_chi2_ndf_trained": float(np.mean(list(trained.values()))) if trained else None,
        "mean_chi2_ndf_untrained": float(np.mean(list(untrained.values()))) if untrained else None,
        "auc": metrics["classifier"]["auc"],
        "auc_error": metrics["classifier"]["auc_error"],
        "normalisation": metrics["normalisation"],
        "ess_fraction": metrics["weights"]["ess_fraction"],
    }
    if "truth" in metrics:
        out["rms_log_error"] = metrics["truth"]["rms_log_error"]
    return out


def main() -> None:
    q = quick()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    n = 3000 if q else 30000
    toy = ObjectToy()
    kinds: tuple[Literal["a", "b"], ...] = ("a", "b", "a", "b")
    a, b, a_hold, b_hold = (toy.sample(c, n, np.random.default_rng([7, i])) for i, c in enumerate(kinds))
    for ev, name in zip((a, b, a_hold, b_hold), ("mc_a", "mc_b", "mc_a", "mc_b"), strict=True):
        ev.events.meta = {"process": name}
    exact = toy.exact_log_weight(a_hold)
    classifier = {"folds": 3, "seed": 0, "max_events": 2000 if q else 15000}
    results: dict[str, Any] = {"events_per_sample": n, "methods": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        configs: dict[str, Any] = {
            "deepsets": (DeepSetsConfig(members=2, max_epochs=3 if q else 25, batch_size=1024, seed=1), FIELDS, []),
            "bdt": (BDTConfig(members=2, seed=1), [], SUMMARY),
        }
        for method, (cfg, fields, observables) in configs.items():
            start = time.perf_counter()
            rw = train_reweighter(a, b, cfg, Path(tmp) / method, fields=fields, observables=observables)
            seconds = time.perf_counter() - start
            log_w, spread = rw.log_weights(a_hold)
            metrics = closure(a_hold, np.exp(log_w), b_hold, rw.trained, 20, classifier)
            metrics["truth"] = truth_comparison(log_w, exact, a_hold.weights)
            entry = _summarise(metrics) | {"train_seconds": seconds, "trained_on": rw.trained}
            results["methods"][method] = entry
            if method == "deepsets":
                weights_file = Path(tmp) / "weights.parquet"
                pq.write_table(
                    pa.table({"w": np.exp(log_w), "log_w_std": spread}),
                    weights_file,
                    compression="zstd",
                    use_dictionary=False,
                )
                varied = a_hold.select(np.arange(len(a_hold)))
                varied.events.weights = a_hold.weights * np.exp(log_w)
                write_object_events(varied, Path(tmp) / "reweighted.parquet")
                write_object_events(b_hold, Path(tmp) / "generated.parquet")
                sizes: dict[str, float] = {
                    "weight_column_bytes": weights_file.stat().st_size,
                    "reweighted_sample_bytes": (Path(tmp) / "reweighted.parquet").stat().st_size,
                    "generated_varied_sample_bytes": (Path(tmp) / "generated.parquet").stat().st_size,
                }
                sizes["generated_over_weights"] = sizes["generated_varied_sample_bytes"] / sizes["weight_column_bytes"]
                results["disk"] = sizes
        for name, log_w in (("exact", exact), ("unweighted", np.zeros(len(a_hold)))):
            metrics = closure(a_hold, np.exp(log_w), b_hold, [], 20, classifier)
            metrics["truth"] = truth_comparison(log_w, exact, a_hold.weights)
            results["methods"][name] = _summarise(metrics)
        results["rms_log_w_exact"] = truth_comparison(np.zeros(len(exact)), exact, a_hold.weights)["rms_log_w_exact"]

        epochs: list[dict[str, Any]] = []
        for batch in [512, 2048] if q else [512, 2048, 8192, 32768]:  # on CUDA when present (training's choice)
            cfg = DeepSetsConfig(members=1, max_epochs=2, patience=10, batch_size=batch, seed=1)
            rw = train_reweighter(a, b, cfg, Path(tmp) / f"epoch-{batch}", fields=FIELDS, observables=[])
            member = rw.manifest["members"][0]
            epochs.append(
                {"device": member["device"], "batch_size": batch, "seconds_per_epoch": member["seconds_per_epoch"]}
            )
        results["epoch_time"] = epochs
        results["epoch_events"] = 2 * n
    for method, m in results["methods"].items():
        wt, wu = m["worst_trained"], m["worst_untrained"]
        rows.append(
            [
                method,
                f"{wt[0]} {wt[1]:.2f}" if wt else "-",
                f"{wu[0]} {wu[1]:.2f}" if wu else "-",
                f"{m['auc']:.4f} +- {m['auc_error']:.4f}",
                f"{m['rms_log_error']:.4f}",
                f"{m['normalisation']:.4f}",
            ]
        )
    print(
        table(
            f"reweighting closure ({n} events per sample)",
            ["method", "worst trained", "worst untrained", "AUC", "RMS dlogw", "yield"],
            rows,
        )
    )
    print(
        table(
            "Deep-Sets epoch time",
            ["device", "batch", "s/epoch"],
            [[e["device"], e["batch_size"], e["seconds_per_epoch"]] for e in epochs],
        )
    )
    print(results["disk"])
    write_result("reweighting_quick" if q else "reweighting", results)


if __name__ == "__main__":
    main()
