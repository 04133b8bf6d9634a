"""Why the seed study and the workflow's bias gate disagree in sign: the training samples, not the estimator.

One command: ``.venv/bin/python benchmarks/bias_sign.py`` writes ``benchmarks/results/bias_sign.json``.

``benchmarks/seed_robustness.py`` measures NSBI - exact mu_hat at +0.16..+0.64 sigma over 5 network seeds, the
workflow's ``bias-gate`` at -0.38 sigma. Both are ``mean(mu_hat_NSBI - mu_hat_exact) / median(sigma_NSBI)`` on the
same pseudo-data (no sign convention differs). This script trains the four ratio ensembles with the study's
trainer and settings (``seed_robustness.train``, the same network seeds) on two sets of samples of the same size:

* ``workflow``: the events ``workflows/toy-nsbi.yaml``'s ``generate`` steps write at seed 1 (``sample_rng``);
* ``study``: the seed study's fixed samples (sample seed 1, held-out seed 2).

and measures, on each, the paired NSBI - exact bias with both estimators: the study's (toys of fresh simulated
events, never reused) and the gate's (toys Poisson-resampled from the held-out samples, ``physics.gates.bias``),
plus the same with the exact background or signal ratio substituted (which ensemble carries it), and with every
ratio exact, as is and normalised over the held-out denominators the way ``infer`` normalises a learned ratio
(what the finite normalisation samples alone do to mu_hat). Only the
training samples differ between the two rows of a seed; the estimators agree with each other on every row.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_robustness as sr
from common import quick, table, write_result

from nsbiflow.physics.gates.bias import generator
from nsbiflow.physics.gates.config import BiasPoint
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data
from nsbiflow.physics.model.toys import run_toys
from nsbiflow.physics.toy_model import ToyModel
from nsbiflow.physics.truth import truth_from_spec
from nsbiflow.stepcli.generate import sample_rng

torch.set_num_threads(1)
TRUTH = {"mu": 1.0, "alpha": 0.0, "bkg_norm": 0.0}
EXPECTED = {"signal": sr.NU_S, "background": sr.NU_B}


def workflow_samples(toy: ToyModel, n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Training and held-out events exactly as the workflow's ``generate`` steps simulate them."""
    train = {p: toy.sample(p, n, sample_rng(seed, p, 0)) for p in sr.PROCESSES}
    hold = {p: toy.sample(p, n, sample_rng(seed, p, 1)) for p in sr.PROCESSES}
    return train, hold


def paired(exact_mu: list[float], result_mu: list[float], sigma: list[float]) -> dict[str, float]:
    """Mean NSBI - exact mu_hat over the median NSBI error, and its statistical error."""
    diff = np.array(result_mu) - np.array(exact_mu)
    s = float(np.median(sigma))
    return {"bias_over_sigma": float(np.mean(diff)) / s, "error": float(np.std(diff) / math.sqrt(len(diff))) / s}


def normalised(tables: Mapping[str, Table]) -> dict[str, Table]:
    """Every ratio column divided by its mean over the held-out denominator sample, as ``infer`` normalises."""
    logs = {
        label: math.log(float(np.mean(np.exp(tables[den].columns[f"logr_{label}"]))))
        for label, (_, den) in sr.LABELS.items()
    }
    out = {}
    for name, t in tables.items():
        cols = dict(t.columns)
        for label, shift in logs.items():
            cols[f"logr_{label}"] = cols[f"logr_{label}"] - shift
        out[name] = Table(name, cols, dict(t.meta))
    return out


def measure(tables: dict[str, Table], model: Any, toys: int, toy: ToyModel) -> dict[str, Any]:
    """Both estimators on one training, and the exact-ratio substitutions (fresh toys)."""
    truth = truth_from_spec("toy", {})
    samples = {k: v for k, v in tables.items() if not k.startswith("pool_")}

    def fresh(tt: Mapping[str, Table]) -> Any:
        return sr.fresh_generator({"signal": tt["pool_signal"], "background": tt["pool_background"]}, EXPECTED)

    exact = Likelihood(model, samples, "exact", truth)
    fresh_exact = run_toys(exact, fresh(tables), TRUTH, toys, seed=11)
    point = BiasPoint(values={"mu": 1.0})
    gate_exact = run_toys(exact, generator(exact, samples, point), point.values, toys, seed=1)
    out: dict[str, Any] = {}
    variants: dict[str, Mapping[str, Table]] = {
        "nsbi": tables,
        "exact_background_ratio": sr.exact_columns(toy, tables, ("background",)),
        "exact_signal_ratio": sr.exact_columns(toy, tables, ("signal",)),
        "exact_ratios": sr.exact_columns(toy, tables, tuple(sr.LABELS)),
        "exact_ratios_normalised": normalised(sr.exact_columns(toy, tables, tuple(sr.LABELS))),
    }
    for key, tt in variants.items():
        like = Likelihood(model, {k: v for k, v in tt.items() if k in samples}, "nsbi")
        r = run_toys(like, fresh(tt), TRUTH, toys, seed=11)
        out[f"fresh_{key}"] = paired(fresh_exact.mu_hat, r.mu_hat, r.sigma)
        if key == "nsbi":
            held = {k: v for k, v in tt.items() if k in samples}
            g = run_toys(like, generator(like, held, point), point.values, toys, seed=1)
            out["gate_nsbi"] = paired(gate_exact.mu_hat, g.mu_hat, g.sigma)
    return out


def main() -> None:
    """Train on both sample sets per seed, measure, tabulate, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1", help="comma list of network seeds (the study's seed numbering)")
    parser.add_argument("--toys", type=int, default=100, help="pseudo-experiments per estimator")
    parser.add_argument("--n", type=int, default=20000, help="training (and held-out) events per sample")
    args = parser.parse_args()
    name = "bias_sign"
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if quick():
        args.toys, args.n, seeds, name = 10, 1500, [1], "bias_sign_quick"
    start = time.time()
    toy = ToyModel()
    model = model_from_data(yaml.safe_load(sr.MODEL.read_text()), "toy")
    sets = {
        "workflow": workflow_samples(toy, args.n, 1),
        "study": (sr.simulate(toy, args.n, 1), sr.simulate(toy, args.n, 2)),
    }
    rng = np.random.default_rng([7, 99])
    pools = {
        "pool_signal": toy.sample("signal", int(1.3 * sr.NU_S * args.toys) + 200, rng),
        "pool_background": toy.sample("background", int(1.3 * sr.NU_B * args.toys) + 500, rng),
    }
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for samples_name, (train_s, hold) in sets.items():
            t0 = time.time()
            evaluators = {
                label: sr.train(train_s[num], train_s[den], sr.DEFAULT, seed * 1000 + 100 * i)
                for i, (label, (num, den)) in enumerate(sr.LABELS.items())
            }
            events = {**hold, **pools}
            events["observed"] = np.concatenate([hold["signal"][:100], hold["background"][:1000]])
            tables = sr.tables_for(events, evaluators, hold, int(sr.DEFAULT["members"]))
            row = {"seed": seed, "samples": samples_name, **measure(tables, model, args.toys, toy)}
            row["wall_s"] = time.time() - t0
            rows.append(row)
            print(row, flush=True)
    cells = [
        [
            r["seed"],
            r["samples"],
            f"{r['fresh_nsbi']['bias_over_sigma']:+.3f} +- {r['fresh_nsbi']['error']:.3f}",
            f"{r['gate_nsbi']['bias_over_sigma']:+.3f} +- {r['gate_nsbi']['error']:.3f}",
            f"{r['fresh_exact_background_ratio']['bias_over_sigma']:+.3f}",
            f"{r['fresh_exact_signal_ratio']['bias_over_sigma']:+.3f}",
            f"{r['fresh_exact_ratios']['bias_over_sigma']:+.3f}",
            f"{r['fresh_exact_ratios_normalised']['bias_over_sigma']:+.3f}",
        ]
        for r in rows
    ]
    columns = [
        "seed",
        "samples",
        "fresh toys",
        "gate (resampled)",
        "exact bkg ratio",
        "exact signal ratio",
        "all exact",
        "all exact, normalised over held-out",
    ]
    summary = table("NSBI - exact mu_hat / sigma", columns, cells)
    write_result(name, {"settings": vars(args), "rows": rows, "summary": summary, "total_s": time.time() - start})
    print(summary)


if __name__ == "__main__":
    main()
