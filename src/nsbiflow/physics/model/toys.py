"""Pseudo-experiments of a model: coverage, pulls and bias of a parameter of interest.

``run_toys`` takes a ``Likelihood`` (a model plus its per-sample arrays, for any method) and a generator of
pseudo-data: for each toy it draws the main measurement (region name -> events table) and the auxiliary
measurements (each constrained nuisance ``a_j ~ N(theta_true_j, sigma_j)``, as pyhf's toys do), fits, and
records whether ``t(mu_true) < 1`` (68 % coverage by Wilks) and the pull ``(mu_hat - mu_true) / sigma_hat``.
``resampler`` is a generic generator from per-process pools of events; a truth-known simulator can pass
its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.data import Table, concatenate
from nsbiflow.physics.model.likelihood import Likelihood, UnbinnedTerm
from nsbiflow.physics.model.threads import single_thread

Generator = Callable[[np.random.Generator], Mapping[str, Table]]


@dataclass
class ToyResults:
    """Per-toy outcomes and their summary."""

    poi: str
    truth: float
    mu_hat: list[float] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)
    t_true: list[float] = field(default_factory=list)
    failed: int = 0

    @property
    def pulls(self) -> NDArray[np.float64]:
        """``(mu_hat - mu_true) / sigma_hat`` per toy."""
        return (np.array(self.mu_hat) - self.truth) / np.array(self.sigma)

    def summary(self) -> dict[str, Any]:
        """Coverage of the 68 % interval, mean and width of the pulls, bias."""
        t = np.array(self.t_true)
        return {
            "toys": len(t),
            "failed": self.failed,
            "coverage_68": float(np.mean(t < 1.0)) if len(t) else math.nan,
            "coverage_95": float(np.mean(t < 3.841458820694124)) if len(t) else math.nan,
            "mean_pull": float(np.mean(self.pulls)) if len(t) else math.nan,
            "pull_width": float(np.std(self.pulls)) if len(t) else math.nan,
            "bias": float(np.mean(self.mu_hat) - self.truth) if len(t) else math.nan,
        }


Errors = Literal["hessian", "likelihood"]


def run_toys(
    like: Likelihood,
    generate: Generator,
    truth: Mapping[str, float],
    n_toys: int,
    seed: int | np.random.Generator = 0,
    poi: str | None = None,
    *,
    errors: Errors = "hessian",
    newton: bool = True,
) -> ToyResults:
    """Fit ``n_toys`` pseudo-experiments drawn by ``generate`` with the true parameter values ``truth``.

    ``errors`` chooses ``sigma_hat`` of the pulls: ``"hessian"`` (the covariance at each toy's best fit, 2N
    gradient calls per toy) or ``"likelihood"`` (``|mu_hat - mu_true| / sqrt(t(mu_true))``, so the pull is the
    likelihood-ratio pull ``sign(mu_hat - mu_true) sqrt(t)``, N(0, 1) by Wilks' theorem, at no extra cost).
    ``seed`` may be a generator already in use (``physics/pseudo/parallel.py`` continues a run in chunks).
    With ``newton`` every fit first takes Newton steps with the Hessian of the Asimov dataset at the truth
    (computed once; the expected curvature of every toy), falling back to L-BFGS-B whenever they do not converge
    cleanly: the same minima (to the ``2e-9`` decrement) in a few gradient calls instead of ~20 per fit.
    """
    poi = poi or like.parameters.pois[0]
    ps = like.parameters
    toy_like = like.copy()
    rng = np.random.default_rng(seed)
    true_x = like.point(truth).numpy()
    results = ToyResults(poi, float(true_x[like.index[poi]]))
    i_poi = like.index[poi]
    with single_thread():
        curvature = _asimov_curvature(like, true_x) if newton else None
        for _ in range(n_toys):
            data = generate(rng)
            aux = rng.normal(true_x[ps.constrained], ps.sigma) if len(ps.constrained) else np.zeros(0)
            toy_like.set_data(data, aux)
            try:
                best = fit.minimise(toy_like, start=true_x, curvature=curvature)
                conditional = fit.minimise(toy_like, {poi: float(true_x[i_poi])}, best.x, curvature=curvature)
                if conditional.twice_nll < best.twice_nll:  # a better minimum at the true value
                    best = fit.minimise(toy_like, start=conditional.x)
                t = max(conditional.twice_nll - best.twice_nll, 0.0)
                if errors == "hessian":
                    sigma = _poi_error(toy_like, best.x, i_poi)
                else:
                    sigma = _likelihood_error(float(best.x[i_poi]) - results.truth, t)
            except Exception:
                results.failed += 1
                continue
            results.mu_hat.append(float(best.x[i_poi]))
            results.sigma.append(sigma)
            results.t_true.append(t)
    return results


def _asimov_curvature(like: Likelihood, true_x: NDArray[np.float64]) -> fit.Curvature | None:
    """The Hessian of ``-2 ln L`` on the Asimov dataset at the truth (``None`` if it is not positive definite)."""
    probe = like.copy()  # its regions' data are replaced, the caller's are not
    try:
        probe.set_asimov(true_x)
        found: list[fit.Curvature] = []
        fit.covariance(probe, true_x, found)
        np.linalg.cholesky(found[0].hessian)
    except Exception:  # a singular or indefinite Asimov Hessian: plain L-BFGS-B for every fit
        return None
    return found[0]


def _likelihood_error(delta: float, t: float) -> float:
    """``sigma`` with ``delta / sigma = sign(delta) sqrt(t)`` (1 where ``t`` is 0: the pull is 0 either way)."""
    root = math.sqrt(t)
    return abs(delta) / root if root > 0 and delta != 0 else 1.0


def _poi_error(like: Likelihood, x: NDArray[np.float64], i_poi: int) -> float:
    free, cov = fit.covariance(like, x)
    return math.sqrt(max(cov[free.index(i_poi), free.index(i_poi)], 1e-300))


def resampler(
    like: Likelihood,
    pools: Mapping[str, Mapping[str, Table]],
    truth: Mapping[str, float],
) -> Generator:
    """A generator drawing, per region and process, Poisson(expected at ``truth``) events from ``pools``.

    ``pools[region][process]`` holds events of that process *at the true nuisance values* (e.g. simulated there);
    the expected counts are the yields at ``truth`` (coefficients, nominal yields and yield factors), so the
    pools fix only the shapes. Unbinned regions only (a binned region's pseudo-data are its pool's events too,
    but their count is not one number per process).
    """
    theta = like.point(truth)
    scope = like.scope(theta)
    expected: dict[str, dict[str, float]] = {}
    for term in like.regions:
        if isinstance(term, UnbinnedTerm):
            with torch.no_grad():
                expected[term.name] = {p.name: float(p.scale(theta, scope)) for p in term.processes}

    def generate(rng: np.random.Generator) -> dict[str, Table]:
        out = {}
        for region, per_process in pools.items():
            parts = []
            for process, pool in per_process.items():
                n = int(rng.poisson(max(expected[region][process], 0.0)))
                rows = rng.choice(len(pool), size=n, replace=n > len(pool))
                parts.append(pool.take(rows))
            out[region] = concatenate(parts, "toy")
        return out

    return generate
