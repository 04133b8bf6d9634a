"""Is calibration of the learned ratios (CARL) the lever that removes the toy's NSBI bias and closure failure?

One command: ``nice .venv/bin/python benchmarks/calibration_lever.py`` (~14 min at load 4-5) writes
``benchmarks/results/calibration_lever.json`` (rewritten after every seed).

The workflow's sample set (``workflows/toy-nsbi.yaml`` at seed 1: training stream 0, held-out stream 1 of
``generate``'s ``sample_rng``) and, for the calibration, a third, independent stream (3) of every process, which
neither the training, the closure gates nor the bias test touch. Per network seed (the trainer and seeds of
``benchmarks/bias_sign.py``), the four ensembles are trained once and then used

* raw (as today), and
* calibrated: each ensemble's raw mean log r mapped through ``physics.calibration.fit_calibration`` fitted on the
  calibration sample of its numerator and denominator (then normalised over the held-out denominator, as
  ``infer`` normalises);
* partly calibrated (signal only, background-over-reference only), to say which calibration does the work;

and, free of training, the exact ratios and the exact ratios calibrated (the noise a calibration on this many
events adds by itself). Measured: the bias gate's estimator (``physics.gates.bias.generator``: toys resampled from
the held-out samples, at mu = 1 with the nuisances at 0 and +-1 sigma, the background pool then its +-1 sigma
sample; NSBI and exact on the same pseudo-data): mean (NSBI - exact) mu_hat over the median NSBI sigma, and the
log-r closure z (``physics.diagnostics.ratio_closure``, calibrate's gate, 20 bins) of every ensemble on the
held-out samples.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_robustness as sr
from bias_sign import paired, workflow_samples
from common import quick, table, write_result

from nsbiflow.physics.calibration import DEFAULT_BINS, RatioCalibration, fit_calibration
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
POINTS = {
    "nominal": BiasPoint(values={"mu": 1.0}),
    "alpha_up": BiasPoint(values={"mu": 1.0, "alpha": 1.0, "bkg_norm": 1.0}, samples={"background": "background_up"}),
    "alpha_down": BiasPoint(
        values={"mu": 1.0, "alpha": -1.0, "bkg_norm": -1.0}, samples={"background": "background_down"}
    ),
}
Evaluator = Callable[[np.ndarray], Any]


def calibrated(evaluate: Evaluator, cal: RatioCalibration) -> Evaluator:
    """``evaluate`` with its mean log r mapped through ``cal`` (the spread scaled by the map's slope)."""

    def out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = evaluate(x)
        return cal.apply(mean), std * cal.slope(mean)

    return out


def exact_evaluators(toy: ToyModel) -> dict[str, Evaluator]:
    """The exact log-ratio of every label (zero spread)."""

    def exact(num: str, den: str) -> Evaluator:
        return lambda x: (toy.log_ratio(num, den, x), np.zeros(len(x)))

    return {label: exact(num, den) for label, (num, den) in sr.LABELS.items()}


def fit_all(
    evaluators: Mapping[str, Evaluator], cal: Mapping[str, np.ndarray], args: argparse.Namespace
) -> dict[str, RatioCalibration]:
    """One calibration per label on the calibration samples of its numerator and denominator."""
    out = {}
    for label, (num, den) in sr.LABELS.items():
        s_num, s_den = evaluators[label](cal[num])[0], evaluators[label](cal[den])[0]
        ones_num, ones_den = np.ones(len(s_num)), np.ones(len(s_den))
        out[label] = fit_calibration(label, s_num, ones_num, s_den, ones_den, args.bins)
    return out


def closures(evaluators: Mapping[str, Evaluator], hold: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Calibrate's ratio-binned closure z of every label on the held-out samples."""
    return {
        label: round(sr.closure_z(evaluators[label], hold[num], hold[den])["z"], 3)
        for label, (num, den) in sr.LABELS.items()
    }


def renormalised(
    tables: Mapping[str, Table],
    evaluators: Mapping[str, Evaluator],
    hold: Mapping[str, np.ndarray],
    over: Mapping[str, np.ndarray],
) -> dict[str, Table]:
    """``tables`` (normalised over ``hold``'s denominators) normalised over ``over``'s denominators instead."""
    shift = {}
    for label, (_, den) in sr.LABELS.items():
        held = math.log(float(np.mean(np.exp(evaluators[label](hold[den])[0]))))
        shift[label] = math.log(float(np.mean(np.exp(evaluators[label](over[den])[0])))) - held
    out = {}
    for name, t in tables.items():
        cols = dict(t.columns)
        for label, d in shift.items():
            cols[f"logr_{label}"] = cols[f"logr_{label}"] - d
        out[name] = Table(name, cols, dict(t.meta))
    return out


class Gate:
    """The held-out tables' exact fits at every point (once), and NSBI - exact for any set of ratio columns."""

    def __init__(self, model: Any, toys: int) -> None:
        self.model, self.toys = model, toys
        self.exact: dict[str, Any] = {}

    def measure(self, tables: Mapping[str, Table]) -> dict[str, dict[str, float]]:
        """Paired bias (sigma) at every point."""
        if not self.exact:
            like = Likelihood(self.model, tables, "exact", truth_from_spec("toy", {}))
            self.exact = {
                k: run_toys(like, generator(like, tables, p), p.values, self.toys, seed=1) for k, p in POINTS.items()
            }
        like = Likelihood(self.model, tables, "nsbi")
        out = {}
        for key, point in POINTS.items():
            r = run_toys(like, generator(like, tables, point), point.values, self.toys, seed=1)
            out[key] = paired(self.exact[key].mu_hat, r.mu_hat, r.sigma)
        return out


def main() -> None:
    """Train per seed, calibrate, measure, tabulate, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma list of network seeds (bias_sign's numbering)")
    parser.add_argument("--toys", type=int, default=100, help="pseudo-experiments per point")
    parser.add_argument("--n", type=int, default=20000, help="training and held-out events per sample")
    parser.add_argument("--n-calibration", type=int, default=200000, help="calibration events per sample")
    parser.add_argument(
        "--n-calibration-reference",
        type=int,
        default=0,
        help="calibration events of the reference (0: --n-calibration)",
    )
    parser.add_argument("--calibration-stream", type=int, default=3, help="sample_rng stream of the calibration sample")
    parser.add_argument("--bins", type=int, default=DEFAULT_BINS, help="calibration bins")
    parser.add_argument("--output", default="calibration_lever")
    args = parser.parse_args()
    name = args.output
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if quick():
        args.toys, args.n, args.n_calibration, seeds, name = 10, 1500, 1500, [1], f"{args.output}_quick"
    start = time.time()
    load = Path("/proc/loadavg").read_text().split()[:3]
    toy = ToyModel()
    model = model_from_data(yaml.safe_load(sr.MODEL.read_text()), "toy")
    train_s, hold = workflow_samples(toy, args.n, 1)
    n_cal = {p: args.n_calibration for p in sr.PROCESSES}
    n_cal["reference"] = args.n_calibration_reference or args.n_calibration
    cal = {p: toy.sample(p, n_cal[p], sample_rng(1, p, args.calibration_stream)) for p in sr.PROCESSES}
    events = dict(hold)
    events["observed"] = np.concatenate([hold["signal"][:100], hold["background"][:1000]])
    gate = Gate(model, args.toys)
    members = int(sr.DEFAULT["members"])

    def measure(
        evaluators: Mapping[str, Evaluator], norm_over: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, Any]:
        tables = sr.tables_for(events, evaluators, hold, members)
        if norm_over is not None:  # normalised over the calibration denominators instead of the held-out ones
            tables = renormalised(tables, evaluators, hold, norm_over)
        return {"bias": gate.measure(tables), "closure_z": closures(evaluators, hold)}

    payload: dict[str, Any] = {"settings": {**vars(args), "seeds": seeds}, "loadavg_start": load, "rows": []}
    exact = exact_evaluators(toy)
    exact_cal = fit_all(exact, cal, args)
    exact_variants = {
        "exact": (exact, None),
        "exact_calibrated": ({k: calibrated(e, exact_cal[k]) for k, e in exact.items()}, None),
        "exact_calibrated_normalised_over_calibration": (
            {k: calibrated(e, exact_cal[k]) for k, e in exact.items()},
            cal,
        ),
    }
    for variant, (ev, norm_over) in exact_variants.items():
        payload["rows"].append({"seed": "-", "variant": variant, **measure(ev, norm_over)})
        print(payload["rows"][-1], flush=True)
    payload["summary"] = summary(payload["rows"])
    for seed in seeds:
        t0 = time.time()
        raw = {
            label: sr.train(train_s[num], train_s[den], sr.DEFAULT, seed * 1000 + 100 * i)
            for i, (label, (num, den)) in enumerate(sr.LABELS.items())
        }
        train_time = time.time() - t0
        cals = fit_all(raw, cal, args)
        full = {k: calibrated(e, cals[k]) for k, e in raw.items()}
        variants = {
            "raw": raw,
            "calibrated": full,
            "calibrated_normalised_over_calibration": full,
            "calibrated_signal_only": {**raw, "signal": full["signal"]},
            "calibrated_background_only": {**raw, "background": full["background"]},
        }
        for variant, ev in variants.items():
            norm_over = cal if variant.endswith("over_calibration") else None
            row = {"seed": seed, "variant": variant, "train_s": train_time, **measure(ev, norm_over)}
            if variant == "calibrated":
                row["calibrations"] = {k: c.model_dump() for k, c in cals.items()}
            payload["rows"].append(row)
            print({k: v for k, v in row.items() if k != "calibrations"}, flush=True)
        payload["summary"] = summary(payload["rows"])
        payload["total_s"] = time.time() - start
        payload["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        write_result(name, payload)
    print(payload["summary"])


def summary(rows: list[dict[str, Any]]) -> str:
    """One row per (seed, variant): the bias at the three points and the closure z of every ensemble."""
    cells = []
    for r in rows:
        b, z = r["bias"], r["closure_z"]
        cells.append(
            [
                r["seed"],
                r["variant"],
                *(f"{b[p]['bias_over_sigma']:+.3f} +- {b[p]['error']:.3f}" for p in POINTS),
                " / ".join(f"{z[k]:.2f}" for k in sr.LABELS),
                "pass" if all(abs(b[p]["bias_over_sigma"]) <= 0.2 for p in POINTS) else "fail",
            ]
        )
    columns = ["seed", "variant", *(f"bias {p}" for p in POINTS), f"closure z ({' / '.join(sr.LABELS)})", "gate 0.2"]
    return table("NSBI - exact mu_hat / sigma (bias-gate estimator), closure z", columns, cells)


if __name__ == "__main__":
    main()
