"""The bias gate: fit pseudo-data built from held-out simulation at known parameter points, before unblinding.

For every declared point (true values of the parameters, nuisance parameters included) the pseudo-data of each
unbinned region are Poisson-resampled from held-out samples *simulated at that point* (``samples`` maps a
process to such a sample; by default its own nominal sample), the binned regions' counts are Poisson draws of
the model's expectation there, and the auxiliary measurements are drawn around the true values
(``toys.run_toys`` / ``toys.resampler``). The gate fails when the mean bias of the parameter of interest,
``<mu_hat> - mu_true``, exceeds ``max_bias`` times its typical uncertainty (the median Hessian error) at any
point, naming the point, the pools and the ensembles involved.

What the mean over toys can resolve: the toys' own noise, ``std(mu_hat) / sqrt(toys)``, and the finite pools
(the mean over infinitely many resamplings of a pool is the fit to the pool itself, which is off the truth by
about ``sigma * sqrt(n_data / n_pool)``); both are reported as ``resolution``. With a truth-known simulator
``reference: exact`` compares with the exact likelihood on the *same* pseudo-data, which cancels both: it
measures what the ensembles add.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.gates.config import BiasGateConfig, BiasPoint
from nsbiflow.physics.model.data import FloatArray, Table
from nsbiflow.physics.model.likelihood import BinnedTerm, Likelihood, UnbinnedTerm
from nsbiflow.physics.model.spec import Model, ShapeSys, UnbinnedRegion
from nsbiflow.physics.model.toys import Generator, resampler, run_toys


def describe(values: Mapping[str, float]) -> str:
    """``mu=1, alpha=1`` (the point's name in messages)."""
    return ", ".join(f"{k}={v:g}" for k, v in values.items()) or "nominal"


def with_columns(tables: Mapping[str, Table], extra: Mapping[str, Table]) -> dict[str, Table]:
    """``tables`` with the columns of same-named ``extra`` tables added (e.g. more ensembles on a pool sample)."""
    out = dict(tables)
    for name, more in extra.items():
        base = out.get(name)
        if base is None:
            out[name] = more
            continue
        if len(more) != len(base):
            raise StageError(
                f"bias-gate: pool sample {name!r} has {len(more)} events in pools but {len(base)} in ratios; "
                "evaluate the ensembles on the same event file"
            )
        out[name] = Table(name, {**more.columns, **base.columns}, dict(base.meta))
    return out


def _pools(model: Model, tables: Mapping[str, Table], point: BiasPoint) -> dict[str, dict[str, Table]]:
    pools: dict[str, dict[str, Table]] = {}
    known = {p for r in model.regions.values() if isinstance(r, UnbinnedRegion) for p in r.processes}
    for named in point.samples:
        if named not in known:
            raise StageError(
                f"bias-gate: point {describe(point.values)}: samples names process {named!r}, which no unbinned "
                f"region has (processes: {', '.join(sorted(known))})"
            )
    for name, region in model.regions.items():
        if not isinstance(region, UnbinnedRegion):
            continue
        pools[name] = {}
        for pname, process in region.processes.items():
            sample = point.samples.get(pname, process.sample)
            if pname not in point.samples:
                for m in process.modifiers:
                    if isinstance(m, ShapeSys) and point.values.get(m.parameter, 0.0) != 0.0:
                        raise StageError(
                            f"bias-gate: point {describe(point.values)} sets {m.parameter}, which shapes process "
                            f"{pname!r}: give samples: {{{pname}: <its held-out sample simulated there>}}"
                        )
            if sample not in tables:
                raise StageError(
                    f"bias-gate: point {describe(point.values)}: no sample {sample!r} for process {pname!r} "
                    f"(have: {', '.join(sorted(tables))}); evaluate the ensembles on it in an infer step"
                )
            pools[name][pname] = unweighted(tables[sample])
    return pools


def unweighted(table: Table) -> Table:
    """A pool of unit-weight events: a weighted sample is resampled in proportion to its weights (fixed seed).

    ``toys.resampler`` draws rows uniformly, which is right for unit weights only; pseudo-data events carry
    weight 1 whatever the simulation's event weights were.
    """
    w = table.weights
    if len(w) == 0 or np.all(w == w[0]):
        if len(w) and w[0] != 1.0:
            return Table(table.name, {**table.columns, "weight": np.ones(len(w))}, dict(table.meta))
        return table
    if np.any(w < 0):
        raise StageError(
            f"bias-gate: sample {table.name!r} has negative event weights: it cannot be resampled as pseudo-data; "
            "give a pool with positive weights"
        )
    rows = np.random.default_rng(len(w)).choice(len(w), size=len(w), p=w / w.sum())
    out = table.take(rows)
    out.columns["weight"] = np.ones(len(rows))
    return out


def _representatives(edges: FloatArray) -> FloatArray:
    """One value inside each bin (open outer edges included)."""
    lo, hi = edges[:-1], edges[1:]
    mid = 0.5 * (lo + hi)
    mid = np.where(lo <= -1e29, hi - 1.0, mid)
    return np.where(hi >= 1e29, lo + 1.0, mid)


def generator(like: Likelihood, tables: Mapping[str, Table], point: BiasPoint) -> Generator:
    """Pseudo-data at ``point``: unbinned regions resampled from held-out pools, binned regions Poisson counts."""
    for name in point.values:
        if name not in like.index:
            raise StageError(f"bias-gate: point {describe(point.values)}: {name!r} is not a parameter of the model")
    pools = _pools(like.model, tables, point)
    theta = like.point(point.values)
    scope = like.scope(theta)
    for term in like.regions:
        if isinstance(term, UnbinnedTerm):
            for p in term.processes:
                with torch.no_grad():
                    expected = float(p.scale(theta, scope))
                if expected < 0:
                    raise StageError(
                        f"bias-gate: point {describe(point.values)}: process {p.name!r} of region {term.name} "
                        f"expects {expected:.3g} events (a negative coefficient): its events cannot be resampled; "
                        "choose points where every process's expected yield is >= 0"
                    )
    for term in like.regions:
        if isinstance(term, UnbinnedTerm):
            for process, pool in pools[term.name].items():
                try:
                    term.block(pool.take(np.arange(min(len(pool), 2))))
                except StageError as error:
                    raise StageError(
                        f"bias-gate: pool {pool.name!r} (process {process!r}) cannot be fitted as pseudo-data: "
                        f"{error}; bind infer outputs with every ensemble on that sample under 'pools'"
                    ) from None
    unbinned = resampler(like, pools, point.values)
    binned: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for term in like.regions:
        if isinstance(term, BinnedTerm):
            with torch.no_grad():
                counts = term.expected(theta, scope).numpy().clip(min=0.0)
            binned.append((term.name, term.spec.observable, _representatives(term.edges), counts))

    def generate(rng: np.random.Generator) -> dict[str, Table]:
        data = dict(unbinned(rng))
        for name, observable, where, mean in binned:
            data[name] = Table(name, {observable: np.repeat(where, rng.poisson(mean)).astype(np.float64)})
        return data

    return generate


def involved_ensembles(model: Model) -> list[str]:
    """Ratio labels the unbinned regions' processes and their shape systematics use."""
    return model.used_ratios()


def _pool_size(model: Model, tables: Mapping[str, Table], point: BiasPoint) -> tuple[float, float]:
    """Expected data events and held-out pool events over the unbinned regions (for the resolution estimate)."""
    n_data = n_pool = 0.0
    for region in model.regions.values():
        if isinstance(region, UnbinnedRegion):
            for pname, process in region.processes.items():
                n_pool += len(tables[point.samples.get(pname, process.sample)])
                if isinstance(region.data, str) and region.data in tables:
                    n_data = float(len(tables[region.data]))
    return n_data, n_pool


def check_point(
    like: Likelihood,
    tables: Mapping[str, Table],
    point: BiasPoint,
    config: BiasGateConfig,
    exact: Likelihood | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Toys at one point: bias, its resolution and whether it passes (``exact``: paired with the exact method)."""
    poi = config.poi or like.parameters.pois[0]
    if poi not in like.index:
        raise StageError(f"bias-gate: poi {poi!r} is not a parameter of the model")
    generate = generator(like, tables, point)
    result = run_toys(like, generate, point.values, config.toys, seed=seed, poi=poi)
    summary = result.summary()
    mu_hat = np.array(result.mu_hat)
    sigma = float(np.median(result.sigma)) if result.sigma else math.nan
    entry: dict[str, Any] = {
        "point": dict(point.values),
        "name": describe(point.values),
        "pools": {r: {p: t.name for p, t in per.items()} for r, per in _pools(like.model, tables, point).items()},
        "truth": result.truth,
        "sigma": sigma,
        **summary,
    }
    if exact is not None:
        reference = run_toys(exact, generator(exact, tables, point), point.values, config.toys, seed=seed, poi=poi)
        if len(reference.mu_hat) != len(result.mu_hat) or reference.failed or result.failed:
            raise StageError(
                f"bias-gate: point {entry['name']}: {result.failed} NSBI and {reference.failed} exact fits failed; "
                "the paired comparison needs every toy"
            )
        diff = mu_hat - np.array(reference.mu_hat)
        entry["bias"] = float(np.mean(diff))
        entry["exact_bias"] = float(np.mean(reference.mu_hat) - result.truth)
        entry["resolution"] = float(np.std(diff) / math.sqrt(len(diff))) / sigma
    else:
        n_data, n_pool = _pool_size(like.model, tables, point)
        toys_noise = float(np.std(mu_hat) / math.sqrt(max(len(mu_hat), 1)))
        pool_noise = sigma * math.sqrt(n_data / n_pool) if n_pool else 0.0
        entry["resolution"] = math.hypot(toys_noise, pool_noise) / sigma
    entry["reference"] = config.reference
    entry["bias_over_sigma"] = entry["bias"] / sigma if sigma > 0 else math.inf
    entry["passed"] = bool(abs(entry["bias_over_sigma"]) <= config.max_bias) and summary["toys"] > 0
    return entry


def run_gate(
    like: Likelihood, tables: Mapping[str, Table], config: BiasGateConfig, exact: Likelihood | None = None
) -> dict[str, Any]:
    """Every point of ``config``; the report (``passed``, per point entries, the ensembles involved)."""
    if config.reference == "exact" and exact is None:
        raise StageError("bias-gate: reference: exact needs the model's truth (a simulator); use reference: truth")
    declared = config.points or [BiasPoint()]
    points = [check_point(like, tables, p, config, exact, config.seed + 1000 * i) for i, p in enumerate(declared)]
    return {
        "poi": config.poi or like.parameters.pois[0],
        "max_bias": config.max_bias,
        "toys": config.toys,
        "reference": config.reference,
        "ensembles": involved_ensembles(like.model),
        "points": points,
        "passed": all(p["passed"] for p in points),
    }


def failure(report: Mapping[str, Any]) -> str | None:
    """The one-line error of a failed gate (the worst point), or ``None`` when it passed."""
    bad = [p for p in report["points"] if not p["passed"]]
    if not bad:
        return None
    worst = max(bad, key=lambda p: abs(p["bias_over_sigma"]))
    pools = ", ".join(sorted({s for per in worst["pools"].values() for s in per.values()}))
    versus = "the exact fit" if report["reference"] == "exact" else "the truth"
    return (
        f"bias-gate: {report['poi']} is biased by {worst['bias']:+.3g} ({worst['bias_over_sigma']:+.2f} sigma, "
        f"limit {report['max_bias']:g}, resolution {worst['resolution']:.2f}) against {versus} at "
        f"{worst['name']} over {worst['toys']} toys (pools: {pools}); ensembles involved: "
        f"{', '.join(report['ensembles'])}; retrain them (more members, more events) before fitting the data"
    )
