"""Pseudo-experiments of the off-shell model (``workflows/models/offshell.yaml``) with the exact ratios.

The likelihood is the NSBI one, fed the exact per-event log-ratios of the truth (every process over the
reference, every +-1 sigma variation over its nominal), so these tests measure the statistical machinery
-- negative coefficients, per-event shape interpolation normalised at every point, normalisation
systematics, the free qqZZ normalisation measured in the binned control region -- and nothing of training.
Pseudo-data are drawn from the truth at nuisance values of -1, 0 and +1 sigma (a shape systematic on the
negative-coefficient gg processes, one on qqZZ, and the gg QCD-scale normalisation systematic); the 68 %
interval of mu must cover in 0.68 +- 0.05 of >= 200 toys, with |mean pull| < 0.15. Auxiliary measurements
are drawn per toy around the true values (``run_toys``); the held-out samples that normalise the processes
are quasi-random designs (``held_out``), so their Monte Carlo error does not bias the nuisance parameters.
"""

from __future__ import annotations

import zlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.stats import qmc

from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data
from nsbiflow.physics.model.toys import ToyResults, run_toys
from nsbiflow.physics.offshell import OBSERVABLES, Offshell, mixture_pdf

REPO = Path(__file__).resolve().parents[2]
TOY = Offshell()
N_SAMPLE = 4000


def model_document() -> dict[str, Any]:
    """The bundled model with the truth's exact yields as numbers (no MC fluctuation in the yields)."""
    doc = yaml.safe_load((REPO / "workflows" / "models" / "offshell.yaml").read_text())
    yields = TOY.yields()
    for region in doc["regions"].values():
        for process in region["processes"].values():
            process["yield"] = yields[process["sample"]]
    return doc


DOC = model_document()
RATIOS: dict[str, dict[str, str]] = DOC["ratios"]
NUISANCE_OF = DOC["truth"]["nuisances"]


def exact_columns(x: np.ndarray) -> dict[str, np.ndarray]:
    """``logr_<label>`` for every ratio of the model, from the truth densities."""
    cols: dict[str, np.ndarray] = {name: x[:, j] for j, name in enumerate(OBSERVABLES)}
    cache: dict[str, np.ndarray] = {}

    def log_p(sample: str) -> np.ndarray:
        if sample not in cache:
            cache[sample] = np.log(TOY.density(sample, x))
        return cache[sample]

    for label, ratio in RATIOS.items():
        cols[f"logr_{label}"] = log_p(ratio["numerator"]) - log_p(ratio["denominator"])
    return cols


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream per sample (seeding by ``len(name)`` gave ggH and SBI, ggZZ and qqZZ one)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def held_out(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` weighted events of ``name`` from a scrambled Halton (quasi-random) design, weights summing to the yield.

    The likelihood normalises every process at every parameter point with ``E_p[g(x, theta)]`` over this sample
    (and the shape nuisances' slopes with ``E_p[dg / dtheta]``). With ``n`` i.i.d. events those integrals carry a
    Monte Carlo error ~ sqrt(nu / n) of the data's own fluctuation: at n = 4000 the expected score of
    theta_m4l_resolution / theta_angle_tilt at the truth was 0.3-0.6 of its per-toy sd (a held-out-sample
    artefact, not the likelihood's), which pulled the fitted nuisances by -0.2 to -0.3 sigma on average. A
    low-discrepancy design integrates these smooth functions to ~1/n at the same cost. Drawn from the
    detector-level mixture: component counts stratified by weight, each Gaussian through the Halton points;
    signed mixtures (SBI, ggZZ) importance-sampled from the mixture of |weights| (weights f / q, all of one sign
    here; the machinery accepts negative ones as well).
    """
    mixture = TOY.mixture(name)
    absw = np.array([abs(c.weight) for c in mixture])
    share = absw / absw.sum()
    counts = np.floor(share * n).astype(int)
    counts[np.argsort(share * n - counts)[::-1][: n - counts.sum()]] += 1
    parts = []
    for k, c in enumerate(mixture):
        if counts[k]:
            engine = qmc.Halton(d=len(OBSERVABLES), seed=stream(seed, f"{name}/{k}"))
            parts.append(qmc.MultivariateNormalQMC(c.mean, c.cov, engine=engine).random(int(counts[k])))
    x = np.concatenate(parts)
    proposal = [type(c)(abs(c.weight) / absw.sum(), c.mean, c.cov) for c in mixture]
    w = TOY.yields()[name] * mixture_pdf(mixture, x) / mixture_pdf(proposal, x) / n
    return x, w


def sample_table(name: str, n: int, seed: int) -> Table:
    x, w = held_out(name, n, seed)
    return Table(name, {**exact_columns(x), "weight": w})


def tables() -> dict[str, Table]:
    out = {name: sample_table(name, N_SAMPLE, 1) for name in ("ggH", "SBI", "ggZZ", "qqZZ", "reference")}
    for name in (
        "qqZZ_cr",
        "qqZZ_cr_m4l_scale_up",
        "qqZZ_cr_m4l_scale_down",
        "qqZZ_cr_m4l_resolution_up",
        "qqZZ_cr_m4l_resolution_down",
    ):
        # one random stream for the nominal and every variation (common random numbers): the histosys shifts
        # are then differences of the same events, free of the templates' independent Monte Carlo noise
        x, w = TOY.sample(name, 200000, np.random.default_rng(2))
        out[name] = Table(name, {"m4l": x[:, 0], "weight": w})
    x, _ = TOY.sample_observed(np.random.default_rng(3))
    out["observed"] = Table("observed", exact_columns(x))
    out["observed_cr"] = Table("observed_cr", {"m4l": TOY.sample_observed_cr(np.random.default_rng(4))[:, 0]})
    return out


def generator(mu: float, nuisances: dict[str, float], qcd: float):
    """Pseudo-data of both regions at ``mu``, shape nuisances (simulator names) and the QCD-scale pull."""
    gg_factor = 1.1**qcd if qcd >= 0 else 0.9 ** (-qcd)  # normsys at +-1 sigma: exactly hi / lo

    def generate(rng: np.random.Generator) -> dict[str, Table]:
        x, _ = TOY.sample_observed(rng, mu, nuisances, gg_factor=gg_factor)
        x_cr = TOY.sample_observed_cr(rng, nuisances)
        return {"SR": Table("toy", exact_columns(x)), "CR": Table("toy_cr", {"m4l": x_cr[:, 0]})}

    return generate


SETTINGS = {
    "nominal": (0.0, 0.0),
    "plus_one_sigma": (1.0, 1.0),
    "minus_one_sigma": (-1.0, -1.0),
}
N_TOYS = 400
PARTS = 4  # 100 toys each, on a pool of two processes
_LIKELIHOOD: list[Likelihood] = []


def toys(setting: str, n_toys: int, seed: int) -> ToyResults:
    """``n_toys`` pseudo-experiments of one setting (one likelihood per process, built on first use)."""
    if not _LIKELIHOOD:
        _LIKELIHOOD.append(Likelihood(model_from_data(DOC), tables()))
    shape, qcd = SETTINGS[setting]
    params = {"mu": 1.0, "theta_angle_tilt": shape, "theta_m4l_scale": shape, "qcd_scale_gg": qcd}
    nuisances = {NUISANCE_OF[p]: v for p, v in params.items() if p in NUISANCE_OF}
    return run_toys(
        _LIKELIHOOD[0], generator(1.0, nuisances, qcd), params, n_toys=n_toys, seed=seed, errors="likelihood"
    )


# 400 toys per setting, not 200: a calibrated likelihood leaves the 0.68 +- 0.05 window in 13 % of 200-toy
# sets (1.5 binomial sigma), so three settings at 200 all pass only 2 times in 3; at 400 (2.1 sigma) 9 in 10.
# Measured with these seeds: -1 sigma 0.673, 0: 0.690, +1 sigma 0.705 (+-0.023; mean LR pull -0.04 / +0.04 /
# -0.08); docs/model.md, "Coverage of the off-shell model", has the diagnosis of the old 0.70 / 0.73 / 0.735.
def toy_seeds(setting: str, parts: int) -> list[int]:
    """``parts`` seeds per setting, different for every setting.

    (One pair, 17 and 18, for all three made the settings' pseudo-data share their random numbers -- the same
    Poisson counts, events and auxiliary draws, shifted by the nuisances -- so one fluctuation of those 200 toys
    was read three times: 0.700 / 0.730 / 0.735.)
    """
    return [zlib.crc32(f"{setting}/{k}".encode()) for k in range(parts)]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["minus_one_sigma", "nominal", "plus_one_sigma"])
def test_coverage_and_pulls_with_shape_and_norm_nuisances_pulled(setting: str) -> None:
    # two processes (the CI machine has two cores), independent seeds, results pooled
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(toys, [setting] * PARTS, [N_TOYS // PARTS] * PARTS, toy_seeds(setting, PARTS)))
    mu_hat = np.concatenate([p.mu_hat for p in parts])
    t_true = np.concatenate([p.t_true for p in parts])
    assert sum(p.failed for p in parts) == 0 and len(mu_hat) == N_TOYS
    coverage = float(np.mean(t_true < 1.0))
    # the likelihood-ratio pull sign(mu_hat - mu) sqrt(t(mu)): N(0, 1) by Wilks' theorem. (The Hessian pull
    # (mu_hat - mu) / sigma_hat is not: d sqrt(mu) / d mu diverges at mu -> 0, so toys that fit near 0 get a
    # meaningless, tiny sigma_hat and a huge pull.)
    pulls = np.sign(mu_hat - 1.0) * np.sqrt(t_true)
    summary = {"coverage_68": coverage, "mean_pull": float(pulls.mean()), "pull_width": float(pulls.std())}
    assert abs(coverage - 0.68) <= 0.05, summary
    assert abs(summary["mean_pull"]) < 0.15, summary
