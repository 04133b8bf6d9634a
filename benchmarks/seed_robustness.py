"""Robustness of the toy's NSBI result to the training seed, and what each lever buys.

One command: ``.venv/bin/python benchmarks/seed_robustness.py`` writes ``benchmarks/results/seed_robustness.json``
(rewritten after every training, so an interrupted run keeps what it measured).

The samples are fixed (the toy simulator, one seed): training and held-out samples of every process, as
``workflows/toy-nsbi.yaml`` simulates them (the default sizes). Only the networks' seeds change between trainings.
For every training:

1. the four ratio ensembles of the workflow (signal and background over the reference, background +-1 sigma over
   the background) are trained with the physics library's own trainer, evaluated on the held-out samples and
   normalised over their denominators (what ``infer`` does);
2. pseudo-experiments at mu = 1, alpha = bkg_norm = 0: each toy's events are *fresh* simulated events (taken
   without replacement from a large simulated pool whose ratios are evaluated once per training), so neither the
   toys nor the pools share noise; the same toys are fitted with the exact likelihood (once) and with the NSBI
   likelihood of the training (``physics.model.toys.run_toys``);
3. per training: 68 % / 95 % coverage of mu with binomial errors, pull mean and width, the mean of
   NSBI - exact mu_hat (paired: the noise of the toys cancels), the fraction of toys whose 95 % CLs limit
   excludes the true mu (asymptotic q~_mu; q_A from the background-only Asimov dataset), and the bias gate's
   verdict (``physics.gates.bias``, reference exact: fresh pools at alpha = +-1 too).

Attribution (free: toys only): the same training with the exact signal ratio in place of its ensemble, and with
the ensemble spread as an MC-statistics nuisance (``mcstat``, per-event error of the ensemble mean). Levers
(``--levers``): retrain the *signal* ensemble with one setting changed, the background ensembles of that seed kept.
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
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

from nsbiflow.physics.configs import TrainConfig
from nsbiflow.physics.diagnostics import ratio_closure
from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
from nsbiflow.physics.model import fit
from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data
from nsbiflow.physics.model.spec import Model
from nsbiflow.physics.model.toys import ToyResults, run_toys
from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel
from nsbiflow.physics.training import train_ensemble
from nsbiflow.physics.truth import truth_from_spec

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "workflows" / "models" / "toy.yaml"
LABELS = {k: (r.numerator, r.denominator) for k, r in model_from_data(yaml.safe_load(MODEL.read_text())).ratios.items()}
PROCESSES = ("signal", "background", "background_up", "background_down", "reference")
NU_S, NU_B = 100.0, 1000.0
DEFAULT: dict[str, Any] = {"members": 8, "max_epochs": 40, "patience": 5, "lr": 2e-3, "hidden": [64, 64, 64]}
LEVERS: dict[str, dict[str, Any]] = {
    "members_16": {"members": 16},
    "patience_15": {"patience": 15, "max_epochs": 80},
    "lr_5e-4_patience_10": {"lr": 5e-4, "patience": 10, "max_epochs": 80},
    "n_train_x2": {"n_train_factor": 2},
    "n_train_x4": {"n_train_factor": 4},
    "no_early_stop_80": {"patience": 80, "max_epochs": 80},
    "hidden_128": {"hidden": [128, 128, 128]},
    "hidden_32": {"hidden": [32, 32, 32]},
    "weight_decay_1e-4": {"weight_decay": 1e-4},
    # the signal ensemble learns p_s / q for another reference q; log r = log(p_s / q) + exact log(q / p_ref)
    # (the likelihood keeps p_ref): this measures how well the ratio is learned over q
    "ref_width_1.2": {"reference": {"width": 1.2}},
    "ref_width_1.0": {"reference": {"width": 1.0}},
    "ref_mix_0.3": {"reference": {"mix": 0.3}},
    "ref_mix_0.5": {"reference": {"mix": 0.5}},
    # the full change: signal and background both learned over q (no exact conversion; ratios cancel q)
    "ref_mix_0.3_full": {"reference": {"mix": 0.3}, "full": True, "targets": ["signal", "background"]},
    # the background ensemble (signal ensemble of the seed kept), and the alpha +-1 ensembles
    "bkg_n_train_x4": {"targets": ["background"], "n_train_factor": 4},
    "bkg_no_early_stop_80": {"targets": ["background"], "patience": 80, "max_epochs": 80},
    "bkg_hidden_128": {"targets": ["background"], "hidden": [128, 128, 128]},
    "bkg_members_16": {"targets": ["background"], "members": 16},
    "alpha_n_train_x4": {"targets": ["background_up", "background_down"], "n_train_factor": 4},
    "sig_bkg_n_train_x4": {"targets": ["signal", "background"], "n_train_factor": 4},
    "bkg_n_train_x8": {"targets": ["background"], "n_train_factor": 8},
    "sig_bkg_n_train_x8": {"targets": ["signal", "background"], "n_train_factor": 8},
    "all_n_train_x4": {"targets": ["signal", "background", "background_up", "background_down"], "n_train_factor": 4},
    "bkg_ref_mix_0.3": {"targets": ["background"], "reference": {"mix": 0.3}},
    "bkg_ref_mix_0.3_x4": {"targets": ["background"], "reference": {"mix": 0.3}, "n_train_factor": 4},
    "bkg_ref_width_1.2": {"targets": ["background"], "reference": {"width": 1.2}},
}
torch.set_num_threads(1)


# -- samples and ensembles -------------------------------------------------------------------------------------


def simulate(toy: ToyModel, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` events of every process (one stream per process)."""
    return {p: toy.sample(p, n, np.random.default_rng([seed, i])) for i, p in enumerate(PROCESSES)}


def train(num: np.ndarray, den: np.ndarray, settings: Mapping[str, Any], seed: int) -> Callable[[np.ndarray], Any]:
    """One ensemble; returns ``x -> (mean log r, std of log r over members)``."""
    fields = {k: v for k, v in settings.items() if k in TrainConfig.model_fields}
    config = TrainConfig(**{**fields, "seed": seed})
    members, scaler = train_ensemble(num, den, config)
    model = BatchedMLP.from_member_states(
        MLPConfig(n_inputs=num.shape[1], hidden=config.hidden, activation=config.activation),
        [m.state for m in members],
    )
    model.eval()

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = []
        with torch.no_grad():
            for lo in range(0, len(x), 65536):
                out.append(model(torch.from_numpy(scaler(x[lo : lo + 65536]))).numpy().astype(np.float64))
        logits = np.concatenate(out, axis=1)
        return logits.mean(axis=0), logits.std(axis=0)

    evaluate.best_epochs = [int(m.info["best_epoch"]) for m in members]  # type: ignore[attr-defined]
    return evaluate


def reference_sampler(toy: ToyModel, spec: Mapping[str, float]) -> tuple[Callable[..., np.ndarray], Any]:
    """A lever's reference ``q``: sampler ``(n, rng) -> x`` and exact ``x -> log q(x) / p_ref(x)``."""
    if "width" in spec:
        w, w0 = spec["width"], toy.reference_width
        d = toy.n_dim

        def log_q_over_ref(x: np.ndarray) -> np.ndarray:
            r2 = np.sum(x**2, axis=1)
            return -0.5 * r2 * (1 / w**2 - 1 / w0**2) - d * math.log(w / w0)

        return (lambda n, rng: w * rng.standard_normal((n, d))), log_q_over_ref
    f = spec["mix"]

    def sample_mix(n: int, rng: np.random.Generator) -> np.ndarray:
        n_s = int(rng.binomial(n, f))
        x = np.concatenate([toy.sample("signal", n_s, rng), toy.sample("reference", n - n_s, rng)])
        return x[rng.permutation(n)]

    def log_mix_over_ref(x: np.ndarray) -> np.ndarray:
        return np.logaddexp(math.log1p(-f), math.log(f) + toy.log_ratio("signal", "reference", x))

    return sample_mix, log_mix_over_ref


def shifted(evaluate: Callable[[np.ndarray], Any], offset: Callable[[np.ndarray], np.ndarray]) -> Any:
    """``evaluate`` with ``offset(x)`` added to its mean log-ratio."""

    def out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = evaluate(x)
        return mean + offset(x), std

    out.best_epochs = evaluate.best_epochs  # type: ignore[attr-defined]
    return out


def closure_z(evaluate: Callable[[np.ndarray], Any], num: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The ratio-binned closure (calibrate's gate) of a signal ensemble on held-out samples: z and chi2/ndf."""
    log_num, log_ref = evaluate(num)[0], evaluate(ref)[0]
    shift = float(np.log(np.mean(np.exp(log_ref))))
    out = ratio_closure(log_num - shift, np.ones(len(num)), log_ref - shift, np.ones(len(ref)), np.exp(log_ref - shift))
    return {"z": out["z"], "chi2_ndf": out["chi2_ndf"], "mean_r_numerator": float(np.mean(np.exp(log_num - shift)))}


def tables_for(
    events: Mapping[str, np.ndarray], evaluators: Mapping[str, Any], holdout: Mapping[str, np.ndarray], members: int
) -> dict[str, Table]:
    """``Table`` per sample with every label's normalised log-ratio and the error of the ensemble mean."""
    cache = {name: {label: ev(x) for label, ev in evaluators.items()} for name, x in events.items()}
    norms = {}
    for label, (_, den) in LABELS.items():
        lr = cache[den][label][0] if den in cache else evaluators[label](holdout[den])[0]
        norms[label] = float(np.log(np.mean(np.exp(lr))))
    out = {}
    for name, x in events.items():
        cols: dict[str, np.ndarray] = {o: x[:, j] for j, o in enumerate(OBSERVABLES)}
        for label, (mean, std) in cache[name].items():
            cols[f"logr_{label}"] = mean - norms[label]
            cols[f"logr_{label}_std"] = std / math.sqrt(members)  # error of the ensemble mean
        out[name] = Table(name, cols, {"observables": list(OBSERVABLES)})
    return out


def exact_columns(toy: ToyModel, tables: Mapping[str, Table], labels: tuple[str, ...]) -> dict[str, Table]:
    """The same tables with the exact log-ratio for ``labels``."""
    out = {}
    for name, t in tables.items():
        x = np.stack([t.columns[o] for o in OBSERVABLES], axis=1)
        cols = dict(t.columns)
        for label in labels:
            num, den = LABELS[label]
            cols[f"logr_{label}"] = toy.log_ratio(num, den, x)
        out[name] = Table(name, cols, dict(t.meta))
    return out


# -- pseudo-experiments ----------------------------------------------------------------------------------------


def fresh_generator(pools: Mapping[str, Table], expected: Mapping[str, float]) -> Callable[..., dict[str, Table]]:
    """Toys of fresh events: each takes the next Poisson(expected) events of every pool (never reused)."""
    cursor = dict.fromkeys(pools, 0)

    def generate(rng: np.random.Generator) -> dict[str, Table]:
        parts = []
        for name, pool in pools.items():
            n = int(rng.poisson(expected[name]))
            if cursor[name] + n > len(pool):
                raise RuntimeError(f"pool {name} exhausted: simulate more events")
            parts.append(pool.take(np.arange(cursor[name], cursor[name] + n)))
            cursor[name] += n
        common = set.intersection(*(set(p.columns) for p in parts))
        return {"SR": Table("toy", {c: np.concatenate([p.columns[c] for p in parts]) for c in common})}

    return generate


def q_asimov(like: Likelihood, mu: float) -> float:
    """``q~_mu`` of the background-only Asimov dataset at the nominal nuisance values."""
    asimov = like.copy()
    asimov.set_asimov(like.point({"mu": 0.0}).numpy())
    bounds = {"mu": (0.0, like.parameters.bounds[like.index["mu"]][1])}
    best = fit.minimise(asimov, None, None, True, bounds)
    conditional = fit.minimise(asimov, {"mu": mu}, best.x)
    return max(conditional.twice_nll - best.twice_nll, 0.0)


def excluded(result: ToyResults, q_a: float) -> np.ndarray:
    """Per toy: the asymptotic CLs of the true mu is below 0.05 (the 95 % limit excludes it)."""
    mu_hat, t = np.array(result.mu_hat), np.array(result.t_true)
    q = np.where(mu_hat > result.truth, 0.0, t)
    sq, sq_a = np.sqrt(q), math.sqrt(max(q_a, 1e-300))
    stat = np.where(sq <= sq_a, sq - sq_a, (q - q_a) / (2 * sq_a))
    cls = norm.sf(stat + sq_a) / np.maximum(norm.sf(stat), 1e-300)
    return cls < 0.05


def summarise(result: ToyResults, exact: ToyResults, q_a: float) -> dict[str, Any]:
    """Coverage (binomial errors), pulls, paired NSBI - exact bias, CLs exclusion of the true mu."""
    s = result.summary()
    n = s["toys"]
    diff = np.array(result.mu_hat) - np.array(exact.mu_hat)
    sigma = float(np.median(result.sigma))
    ex = excluded(result, q_a)
    return {
        **s,
        "coverage_68_error": math.sqrt(s["coverage_68"] * (1 - s["coverage_68"]) / n),
        "coverage_95_error": math.sqrt(s["coverage_95"] * (1 - s["coverage_95"]) / n),
        "median_sigma": sigma,
        "sigma_over_exact": sigma / float(np.median(exact.sigma)),
        "minus_exact": float(np.mean(diff)),
        "minus_exact_over_sigma": float(np.mean(diff)) / sigma,
        "minus_exact_error": float(np.std(diff) / math.sqrt(n)),
        "minus_exact_rms": float(np.std(diff)),
        "cls_exclusion": float(np.mean(ex)),
        "q_asimov": q_a,
        "passes_seed_criteria": bool(abs(s["coverage_68"] - 0.68) <= 0.05 and float(np.mean(ex)) <= 0.08),
    }


def with_mcstat(model: Model) -> Model:
    """The toy model with the signal ensemble's spread as an MC-statistics nuisance."""
    doc = yaml.safe_load(MODEL.read_text())
    doc["regions"]["SR"]["processes"]["signal"].setdefault("modifiers", []).append({"type": "mcstat"})
    return model_from_data(doc, "toy+mcstat")


class Study:
    """The fixed samples, the fixed toys and their exact fits; trainings are added one by one."""

    def __init__(self, n_train: int, n_holdout: int, toys: int, gate_toys: int, sample_seed: int) -> None:
        self.toy = ToyModel()
        self.model = model_from_data(yaml.safe_load(MODEL.read_text()), "toy")
        self.mcstat_model = with_mcstat(self.model)
        self.n_train, self.toys, self.gate_toys = n_train, toys, gate_toys
        self.train_samples = simulate(self.toy, n_train, sample_seed)
        self.holdout = simulate(self.toy, n_holdout, sample_seed + 1)
        rng = np.random.default_rng([sample_seed, 99])
        grow = 1.3  # Poisson fluctuations of the per-toy counts
        self.pools = {
            "nominal": {
                "signal": self.toy.sample("signal", int(grow * NU_S * toys) + 200, rng),
                "background": self.toy.sample("background", int(grow * NU_B * toys) + 500, rng),
            }
        }
        for alpha, name in ((1.0, "alpha_up"), (-1.0, "alpha_down")):
            self.pools[name] = {
                "signal": self.toy.sample("signal", int(grow * NU_S * gate_toys) + 200, rng),
                "background": self.toy.sample("background", int(grow * NU_B * gate_toys) + 500, rng, alpha=alpha),
            }
        self.truths = {
            "nominal": {"mu": 1.0, "alpha": 0.0, "bkg_norm": 0.0},
            "alpha_up": {"mu": 1.0, "alpha": 1.0, "bkg_norm": 0.0},
            "alpha_down": {"mu": 1.0, "alpha": -1.0, "bkg_norm": 0.0},
        }
        self.truth = truth_from_spec("toy", {})
        self.exact: dict[str, ToyResults] = {}
        self.q_exact = 0.0

    def events(self) -> dict[str, np.ndarray]:
        """Every event set the likelihood needs ratios on: held-out samples, the observed stand-in, the pools."""
        out = dict(self.holdout)
        out["observed"] = np.concatenate([self.holdout["signal"][:100], self.holdout["background"][:1000]])
        for point, pools in self.pools.items():
            for process, x in pools.items():
                out[f"pool_{point}_{process}"] = x
        return out

    def split(self, tables: dict[str, Table]) -> tuple[dict[str, Table], dict[str, dict[str, Table]]]:
        """Likelihood samples and per-point toy pools."""
        samples = {k: v for k, v in tables.items() if not k.startswith("pool_")}
        pools = {
            point: {process: tables[f"pool_{point}_{process}"] for process in per} for point, per in self.pools.items()
        }
        return samples, pools

    def run(self, like: Likelihood, pools: Mapping[str, Table], point: str, n: int, seed: int) -> ToyResults:
        """Toys at ``point`` (the same toys for every likelihood given the same seed)."""
        expected = {"signal": NU_S, "background": NU_B}
        return run_toys(like, fresh_generator(pools, expected), self.truths[point], n, seed=seed)

    def exact_reference(self, tables: dict[str, Table]) -> None:
        """The exact fits of every toy (once)."""
        samples, pools = self.split(tables)
        like = Likelihood(self.model, samples, "exact", self.truth)
        self.exact["nominal"] = self.run(like, pools["nominal"], "nominal", self.toys, 11)
        for point in ("alpha_up", "alpha_down"):
            self.exact[point] = self.run(like, pools[point], point, self.gate_toys, 12)
        self.q_exact = q_asimov(like, 1.0)

    def evaluate(self, tables: dict[str, Table], attribution: int, max_bias: float) -> dict[str, Any]:
        """Every figure of one training."""
        samples, pools = self.split(tables)
        like = Likelihood(self.model, samples, "nsbi")
        out: dict[str, Any] = {}
        result = self.run(like, pools["nominal"], "nominal", self.toys, 11)
        out["nsbi"] = summarise(result, self.exact["nominal"], q_asimov(like, 1.0))
        gate = {"nominal": out["nsbi"]["minus_exact_over_sigma"]}
        for point in ("alpha_up", "alpha_down"):
            r = self.run(like, pools[point], point, self.gate_toys, 12)
            diff = np.array(r.mu_hat) - np.array(self.exact[point].mu_hat)
            gate[point] = float(np.mean(diff) / np.median(r.sigma))
            out[f"bias_{point}"] = float(np.mean(r.mu_hat) - r.truth)
        out["gate"] = {
            "bias_over_sigma": gate,
            "max_bias": max_bias,
            "passed": all(abs(v) <= max_bias for v in gate.values()),
        }
        if attribution:
            variants: dict[str, tuple[str, ...]] = {"exact_signal_ratio": ("signal",)}
            if attribution > 1:  # which ensemble the bias comes from; all exact: the method's own bias
                variants["exact_background_ratio"] = ("background",)
                variants["exact_alpha_ratios"] = ("background_up", "background_down")
                variants["exact_all_ratios"] = tuple(LABELS)
            for key, labels in variants.items():
                s2, p2 = self.split(exact_columns(self.toy, tables, labels))
                r = self.run(Likelihood(self.model, s2, "nsbi"), p2["nominal"], "nominal", self.toys, 11)
                out[key] = summarise(r, self.exact["nominal"], self.q_exact)
            mc = Likelihood(self.mcstat_model, samples, "nsbi")
            r = self.run(mc, pools["nominal"], "nominal", self.toys, 11)
            out["nsbi_mcstat"] = summarise(r, self.exact["nominal"], q_asimov(mc, 1.0))
        return out


def main() -> None:
    """Train, fit, tabulate, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="independent trainings per configuration")
    parser.add_argument("--first-seed", type=int, default=1, help="network seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--toys", type=int, default=200, help="pseudo-experiments per training at nominal")
    parser.add_argument("--gate-toys", type=int, default=60, help="pseudo-experiments per training at alpha = +-1")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-holdout", type=int, default=20000)
    parser.add_argument("--levers", default="", help=f"comma list of {', '.join(LEVERS)}")
    parser.add_argument(
        "--attribution",
        type=int,
        default=1,
        help="1: also the exact-signal and mcstat variants; 2: also exact background / alpha / all ratios",
    )
    parser.add_argument("--max-bias", type=float, default=0.2, help="the bias gate's threshold (sigma)")
    parser.add_argument("--output", default="seed_robustness", help="result name: benchmarks/results/<output>.json")
    parser.add_argument(
        "--skip-default",
        action="store_true",
        help="levers only: default ensembles trained (levers keep their background ones), not fitted",
    )
    args = parser.parse_args()
    name = args.output
    if quick():  # NSBIFLOW_BENCH_QUICK=1: toy sizes, a mechanics check only
        args.seeds, args.toys, args.gate_toys, args.n_train, args.n_holdout = 2, 10, 10, 1500, 1500
        name = f"{args.output}_quick"
    levers = [lv for lv in args.levers.split(",") if lv]
    for lever in levers:
        if lever not in LEVERS:
            parser.error(f"unknown lever {lever!r} (known: {', '.join(LEVERS)})")
    start = time.time()
    study = Study(args.n_train, args.n_holdout, args.toys, args.gate_toys, sample_seed=1)
    events = study.events()
    payload: dict[str, Any] = {
        "settings": {**vars(args), "default": DEFAULT, "levers": {k: LEVERS[k] for k in levers}},
        "trainings": [],
    }
    exact_signal = lambda x: (study.toy.log_ratio("signal", "reference", x), None)  # noqa: E731
    payload["closure_signal_exact"] = closure_z(exact_signal, study.holdout["signal"], study.holdout["reference"])
    evaluators_of: dict[int, dict[str, Any]] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.time()
        evaluators = {}
        for i, (label, (num, den)) in enumerate(LABELS.items()):
            samples = study.train_samples
            evaluators[label] = train(samples[num], samples[den], DEFAULT, seed * 1000 + 100 * i)
        evaluators_of[seed] = evaluators
        train_s = time.time() - t0
        tables = tables_for(events, evaluators, study.holdout, DEFAULT["members"])
        if not study.exact:
            study.exact_reference(tables)
            payload["exact"] = {
                **{k: v.summary() for k, v in study.exact.items()},
                "cls_exclusion": float(np.mean(excluded(study.exact["nominal"], study.q_exact))),
            }
        if args.skip_default:
            continue
        entry = {"config": "default", "seed": seed, "train_s": train_s}
        entry.update(study.evaluate(tables, args.attribution, args.max_bias))
        for label in ("signal", "background"):
            entry[f"closure_{label}"] = closure_z(evaluators[label], study.holdout[label], study.holdout["reference"])
        record(payload, entry, evaluators["signal"], t0, name)
    for lever in levers:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            t1 = time.time()
            settings = {**DEFAULT, **LEVERS[lever]}
            factor = int(settings.get("n_train_factor", 1))
            targets = tuple(settings.get("targets", ("signal",)))
            samples = dict(study.train_samples)
            if factor > 1:
                extra = simulate(study.toy, (factor - 1) * args.n_train, 1000 + seed)
                samples = {k: np.concatenate([v, extra[k]]) for k, v in samples.items()}
            lever_eval = dict(evaluators_of[seed])
            lever_events, lever_holdout = events, study.holdout
            closure: dict[str, Any] = {}
            if "reference" in settings:
                sample_q, log_q_over_ref = reference_sampler(study.toy, settings["reference"])
                rng = np.random.default_rng([2001, 7])  # fixed samples: only the network seed changes
                q_train, q_holdout = sample_q(factor * args.n_train, rng), sample_q(args.n_holdout, rng)
                for label in targets:
                    i = list(LABELS).index(label)
                    learned = train(samples[LABELS[label][0]], q_train, settings, seed * 1000 + 100 * i)
                    closure[f"closure_{label}_over_q"] = closure_z(learned, study.holdout[label], q_holdout)
                    # full: the ratios over q themselves (the likelihood's r_s / r_b never needs p_ref)
                    lever_eval[label] = learned if settings.get("full") else shifted(learned, log_q_over_ref)
                if settings.get("full"):
                    lever_events = {**events, "reference": q_holdout}
                    lever_holdout = {**study.holdout, "reference": q_holdout}
            else:
                for label in targets:
                    i = list(LABELS).index(label)
                    num, den = LABELS[label]
                    lever_eval[label] = train(samples[num], samples[den], settings, seed * 1000 + 100 * i)
            train_s = time.time() - t1
            lt = tables_for(lever_events, lever_eval, lever_holdout, int(settings["members"]))
            item = {"config": lever, "seed": seed, "train_s": train_s, **closure}
            item.update(study.evaluate(lt, 0, args.max_bias))
            if not settings.get("full"):
                for label in ("signal", "background"):
                    item[f"closure_{label}"] = closure_z(
                        lever_eval[label], study.holdout[label], study.holdout["reference"]
                    )
            record(payload, item, lever_eval[targets[0]], t1, name)
    payload["summary"] = summary_table(payload)
    payload["total_s"] = time.time() - start
    write_result(name, payload)
    print(payload["summary"])


def record(payload: dict[str, Any], item: dict[str, Any], signal: Any, started: float, name: str) -> None:
    """Append one training's figures, print them, rewrite the JSON."""
    item["best_epochs_signal"] = signal.best_epochs
    item["wall_s"] = time.time() - started
    payload["trainings"].append(item)
    print(f"{item['config']} seed {item['seed']}: {item['nsbi']} gate {item['gate']}", flush=True)
    payload["summary"] = summary_table(payload)
    write_result(name, payload)


def summary_table(payload: Mapping[str, Any]) -> str:
    """One row per configuration: ranges over the seeds."""
    rows = []
    variants: dict[str, list[dict[str, Any]]] = {}
    for t in payload["trainings"]:
        variants.setdefault(t["config"], []).append(t["nsbi"])
        for extra in (
            "exact_signal_ratio",
            "exact_background_ratio",
            "exact_alpha_ratios",
            "exact_all_ratios",
            "nsbi_mcstat",
        ):
            if extra in t:
                variants.setdefault(f"{t['config']}: {extra}", []).append(t[extra])
    gates: dict[str, list[bool]] = {}
    for t in payload["trainings"]:
        gates.setdefault(t["config"], []).append(t["gate"]["passed"])
    for name, items in variants.items():

        def span(key: str, items: list[dict[str, Any]] = items) -> str:
            values = [i[key] for i in items]
            return f"{min(values):.3f} .. {max(values):.3f}"

        passing = sum(i["passes_seed_criteria"] for i in items)
        gate = gates.get(name)
        rows.append(
            [
                name,
                len(items),
                span("coverage_68"),
                span("cls_exclusion"),
                span("minus_exact_over_sigma"),
                span("pull_width"),
                f"{passing}/{len(items)}",
                f"{sum(gate)}/{len(gate)}" if gate else "",
            ]
        )
    columns = ["config", "seeds", "coverage 68", "CLs excl.", "NSBI-exact / sigma", "pull width", "pass", "gate"]
    return table("seed robustness", columns, rows)


if __name__ == "__main__":
    main()
