"""Closure diagnostics of a reweighting: reweighted MC_a against MC_b, and the gates.

* projections: every event-level and object-level observable (``observables.projections``), each marked
  trained (an input of the reweighter) or untrained (derived, never seen in training); per projection the
  binned shape comparison and its chi2/ndf (both samples' statistical errors, the objects of one event
  counted together) and a weighted two-sample Kolmogorov-Smirnov test (effective numbers of events);
* normalisation: the reweighted yield of MC_a over the yield of MC_b;
* a classifier two-sample test: a gradient-boosted classifier (scikit-learn) separating reweighted MC_a
  from MC_b, cross-validated; its weighted ROC AUC must be 0.5 if the weights close;
* the weight distribution: effective sample size, quantiles, the largest weight, the share of the top 1 %;
* against the truth, when the exact weight is known: the RMS of log w - log w_exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.objects import ObjectEvents
from nsbiflow.physics.reweight.config import ClosureTolerances
from nsbiflow.physics.reweight.observables import Projection, projections
from nsbiflow.physics.two_sample import classifier_auc, ess

FloatArray = NDArray[np.float64]
LEADING_OBJECTS = 3  # objects (in pt) whose fields the classifier test sees, besides every event-level observable


def weighted_ks(
    x1: FloatArray, w1: FloatArray, x2: FloatArray, w2: FloatArray, n1: float, n2: float
) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov distance of weighted samples and its asymptotic p-value for effective
    sample sizes ``n1``, ``n2``.

    Hand-written: scipy's ``ks_2samp`` takes no weights.
    """
    from scipy.stats import kstwobign

    grid = np.unique(np.concatenate([x1, x2]))
    c1 = np.cumsum(np.bincount(np.searchsorted(grid, x1), w1, len(grid))) / w1.sum()
    c2 = np.cumsum(np.bincount(np.searchsorted(grid, x2), w2, len(grid))) / w2.sum()
    d = float(np.max(np.abs(c1 - c2)))
    return d, float(kstwobign.sf(d * math.sqrt(n1 * n2 / (n1 + n2))))


def _histogram(p: Projection, w: FloatArray, edges: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-bin sums of the event weights and their variances, counting the objects of one event in one bin
    together (they share the event's weight, so they are not independent entries)."""
    nb = len(edges) - 1
    b = np.clip(np.searchsorted(edges, p.values, side="right") - 1, 0, nb - 1)
    keys, inverse = np.unique(p.rows * nb + b, return_inverse=True)
    per_event_bin = np.bincount(inverse, w[p.rows], len(keys))
    h = np.bincount(keys % nb, per_event_bin, nb).astype(np.float64)
    return h, np.bincount(keys % nb, per_event_bin**2, nb).astype(np.float64)


def _events_ess(p: Projection, w: FloatArray) -> float:
    """The effective number of independent entries of a projection: its events, not its objects."""
    return ess(w[np.unique(p.rows)])


def projection_closure(
    source: Projection,
    w_nominal: FloatArray,
    w_source: FloatArray,
    target: Projection,
    w_target: FloatArray,
    n_bins: int,
) -> dict[str, Any]:
    """Shape closure of one projection: histograms, chi2/ndf and the weighted KS test.

    ``w_nominal`` and ``w_source`` are the source's per-event weights before and after reweighting. Each
    projection is normalised on its own (the yield is checked once, per event), so per-object projections
    compare shapes too. The layout of the result is ``physics/diagnostics.closure``'s (its plots draw it); the
    errors here count each event once per bin.
    """
    edges = np.unique(np.quantile(target.values, np.linspace(0, 1, n_bins + 1)))
    edges[0] = min(edges[0], source.values.min())
    edges[-1] = max(edges[-1], source.values.max())
    if len(edges) < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    ws_total = float(np.sum(w_source[source.rows]))
    wt_total = float(np.sum(w_target[target.rows]))
    h_t, v_t = _histogram(target, w_target / wt_total, edges)
    h_s, v_s = _histogram(source, w_source / ws_total, edges)
    raw = w_nominal / float(np.sum(w_nominal[source.rows]))
    chi2 = float(np.sum((h_t - h_s) ** 2 / np.maximum(v_t + v_s, 1e-300)))
    ndf = len(edges) - 1
    ks, pvalue = weighted_ks(
        source.values,
        w_source[source.rows],
        target.values,
        w_target[target.rows],
        _events_ess(source, w_source),
        _events_ess(target, w_target),
    )
    return {
        "edges": edges.tolist(),
        "numerator": h_t.tolist(),
        "numerator_err": np.sqrt(v_t).tolist(),
        "reweighted": h_s.tolist(),
        "reweighted_err": np.sqrt(v_s).tolist(),
        "reference": _histogram(source, raw, edges)[0].tolist(),
        "chi2": chi2,
        "ndf": ndf,
        "chi2_ndf": chi2 / ndf,
        "ks": ks,
        "ks_pvalue": pvalue,
        "level": source.level,
    }


def classifier_test(
    source: ObjectEvents, w_source: FloatArray, target: ObjectEvents, folds: int, seed: int, max_events: int
) -> dict[str, float]:
    """Cross-validated weighted ROC AUC of a classifier of MC_b against reweighted MC_a (0.5: they agree)."""
    rng = np.random.default_rng([seed, 2718])
    xs, ws = _features(source, w_source, rng, max_events)
    xt, wt = _features(target, target.weights, rng, max_events)
    result = classifier_auc(xs, ws, xt, wt, folds=folds, seed=seed)
    return {"auc": result["auc"], "auc_error": result["auc_error"], "events": int(result["events"])}


def _features(
    ev: ObjectEvents, w: FloatArray, rng: np.random.Generator, max_events: int
) -> tuple[FloatArray, FloatArray]:
    """Every event-level projection (NaN where undefined) and the leading objects' fields, of at most
    ``max_events`` events."""
    rows = np.arange(len(ev))
    if len(ev) > max_events:
        rows = np.sort(rng.choice(len(ev), max_events, replace=False))
    sub = ev.select(rows)
    columns = []
    for proj in projections(sub).values():
        if proj.level == "event":
            column = np.full(len(sub), np.nan)
            column[proj.rows] = proj.values
            columns.append(column)
    offsets = sub.offsets
    for rank in range(LEADING_OBJECTS):
        has = sub.counts > rank
        for values in sub.fields.values():
            column = np.full(len(sub), np.nan)
            column[has] = values[offsets[:-1][has] + rank]
            columns.append(column)
    return np.column_stack(columns), w[rows]


def weight_summary(w: FloatArray, nominal: FloatArray) -> dict[str, Any]:
    """The learned weights' distribution over MC_a: effective sample size, quantiles, tails."""
    total = nominal * w
    order = np.sort(w)
    top = max(1, len(w) // 100)
    return {
        "ess": ess(total),
        "ess_fraction": ess(total) / max(ess(nominal), 1e-300),
        "mean": float(np.average(w, weights=nominal)),
        "min": float(order[0]),
        "max": float(order[-1]),
        "max_over_mean": float(order[-1] / np.average(w, weights=nominal)),
        "quantiles": {str(q): float(np.quantile(w, q)) for q in (0.001, 0.01, 0.16, 0.5, 0.84, 0.99, 0.999)},
        "top_1pct_share": float(np.sort(total)[-top:].sum() / total.sum()),
        "negative": int(np.sum(w < 0)),
    }


def truth_comparison(log_w: FloatArray, log_w_exact: FloatArray, nominal: FloatArray) -> dict[str, float]:
    """Learned vs exact log-weights over MC_a: the normalisation offset and the RMS of the rest."""
    d = log_w - log_w_exact
    offset = float(np.average(d, weights=nominal))
    return {
        "mean_log_error": offset,
        "rms_log_error": float(np.sqrt(np.average((d - offset) ** 2, weights=nominal))),
        "rms_log_w_exact": float(
            np.sqrt(np.average((log_w_exact - np.average(log_w_exact, weights=nominal)) ** 2, weights=nominal))
        ),
        "correlation": float(np.corrcoef(log_w, log_w_exact)[0, 1]) if np.std(log_w) > 0 else 0.0,
    }


def closure(
    source: ObjectEvents,
    w: FloatArray,
    target: ObjectEvents,
    trained: list[str],
    n_bins: int = 20,
    classifier: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Every diagnostic of ``source`` reweighted by ``w`` against ``target`` (``classifier``: folds, seed and
    max_events of the two-sample test; None: no test)."""
    w_source = source.weights * w
    ps, pt = projections(source), projections(target)
    result: dict[str, Any] = {"projections": {}}
    for name, proj in ps.items():
        if name not in pt or not len(proj.values) or not len(pt[name].values):
            continue
        entry = projection_closure(proj, source.weights, w_source, pt[name], target.weights, n_bins)
        entry["trained"] = name in trained
        result["projections"][name] = entry
    result["normalisation"] = float(w_source.sum() / target.weights.sum())
    result["weights"] = weight_summary(w, source.weights)
    if classifier is not None:
        result["classifier"] = classifier_test(source, w, target, **classifier)
    return result


def check(metrics: dict[str, Any], tol: ClosureTolerances, label: str) -> list[str]:
    """The failed gates, worst projection first, each one sentence naming the projection and the excess."""
    failures: list[tuple[float, str]] = []
    for name, p in metrics["projections"].items():
        limit = tol.max_chi2_ndf if p["trained"] else tol.max_chi2_ndf_untrained
        kind = "trained" if p["trained"] else "untrained"
        if p["chi2_ndf"] > limit:
            failures.append(
                (
                    p["chi2_ndf"] / limit,
                    f"closure of '{label}' in {name} ({kind}): chi2/ndf = {p['chi2_ndf']:.2f} exceeds the tolerance "
                    f"{limit:g} by {p['chi2_ndf'] - limit:.2f}",
                )
            )
        if p["ks_pvalue"] < tol.min_ks_pvalue:
            failures.append(
                (
                    tol.min_ks_pvalue / max(p["ks_pvalue"], 1e-300),
                    f"closure of '{label}' in {name} ({kind}): KS p-value {p['ks_pvalue']:.2g} is below "
                    f"{tol.min_ks_pvalue:g} (KS distance {p['ks']:.4f})",
                )
            )
    norm = metrics["normalisation"]
    if abs(norm - 1) > tol.max_norm_deviation:
        failures.append(
            (
                abs(norm - 1) / tol.max_norm_deviation,
                f"normalisation of '{label}': reweighted yield / target yield = {norm:.4f}, off by {abs(norm - 1):.4f} "
                f"(tolerance {tol.max_norm_deviation:g})",
            )
        )
    if "classifier" in metrics:
        dev = abs(metrics["classifier"]["auc"] - 0.5)
        if dev > tol.max_auc_deviation:
            failures.append(
                (
                    dev / tol.max_auc_deviation,
                    f"classifier test of '{label}': AUC = {metrics['classifier']['auc']:.4f}, |AUC - 0.5| exceeds "
                    f"the tolerance {tol.max_auc_deviation:g} by {dev - tol.max_auc_deviation:.4f}",
                )
            )
    fraction = metrics["weights"]["ess_fraction"]
    if fraction < tol.min_ess_fraction:
        failures.append(
            (
                tol.min_ess_fraction / max(fraction, 1e-300),
                f"weights of '{label}': effective sample size fraction {fraction:.4f} "
                f"is below {tol.min_ess_fraction:g}",
            )
        )
    return [message for _, message in sorted(failures, key=lambda f: -f[0])]
