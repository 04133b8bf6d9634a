"""Diagnostics that gate the analysis: reweighting closure, normalisation, calibration, losses.

* closure: the reference reweighted by ``r`` must reproduce the numerator in every 1-D projection;
  ``chi2/ndf`` per observable with both samples' statistical uncertainties;
* normalisation: the weighted mean of ``r`` over the reference must be 1;
* calibration: binned in the classifier output ``s = r / (1 + r)``, the numerator fraction (classes
  balanced) must equal the mean ``s`` (the expected calibration error, ECE, summarises it);
* losses: training vs holdout loss of every member at its best epoch;
* ratio closure: the same comparison in bins of the learned ratio itself (where a miscalibrated ratio is
  wrong, a 1-D marginal averages it away), as a z-score of its chi2 against the chi2 distribution;
* a classifier two-sample test: a classifier of the numerator against the reference reweighted by ``r``
  (held-out weighted AUC, 0.5 when ``r`` is right), as a z-score against its null error.

The two z-score gates are calibrated on the exact ratio: with the toy's exact densities, at the workflow's
sample sizes, both z-scores scatter like a standard normal (docs/physics.md: the numbers and the rule), so a
tolerance of ``z = 3.09`` (a one-sided p-value of 1e-3) is one the exact ratio passes 999 times in 1000.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

FloatArray = NDArray[np.float64]


class Tolerances(BaseModel):
    """Declared tolerances; a diagnostic beyond one fails the stage."""

    model_config = ConfigDict(extra="forbid")

    max_chi2_ndf: float = Field(3.0, gt=0, description="closure chi2/ndf, worst observable")
    max_norm_deviation: float = Field(0.1, gt=0, description="|mean r over the reference - 1|")
    max_ece: float = Field(0.05, gt=0, description="expected calibration error of s = r/(1+r)")
    max_ratio_closure_z: float = Field(3.09, gt=0, description="closure in bins of the learned ratio, z-score")
    max_two_sample_z: float = Field(3.09, gt=0, description="classifier two-sample test, (AUC - 0.5) / error")


def _compare(
    v_num: FloatArray, w_num: FloatArray, v_ref: FloatArray, w_rw: FloatArray, w_raw: FloatArray, edges: Any, ndf: int
) -> dict[str, Any]:
    """Numerator (weights ``w_num``) vs reweighted reference (``w_rw``) histograms of ``v_*`` in ``edges``, the
    raw reference (``w_raw``), both statistical errors, and the chi2."""
    h_num = np.histogram(v_num, edges, weights=w_num)[0]
    e_num = np.histogram(v_num, edges, weights=w_num**2)[0]
    h_rw = np.histogram(v_ref, edges, weights=w_rw)[0]
    e_rw = np.histogram(v_ref, edges, weights=w_rw**2)[0]
    chi2 = float(np.sum((h_num - h_rw) ** 2 / np.maximum(e_num + e_rw, 1e-300)))
    return {
        "edges": np.asarray(edges).tolist(),
        "numerator": h_num.tolist(),
        "numerator_err": np.sqrt(e_num).tolist(),
        "reweighted": h_rw.tolist(),
        "reweighted_err": np.sqrt(e_rw).tolist(),
        "reference": np.histogram(v_ref, edges, weights=w_raw)[0].tolist(),
        "chi2": chi2,
        "ndf": ndf,
        "chi2_ndf": chi2 / ndf,
    }


def closure(
    x_num: FloatArray,
    w_num: FloatArray,
    x_ref: FloatArray,
    w_ref: FloatArray,
    r_ref: FloatArray,
    observables: list[str],
    n_bins: int = 20,
) -> dict[str, dict[str, Any]]:
    """Per observable: bin edges, numerator and reweighted-reference densities, their errors, chi2/ndf."""
    out: dict[str, dict[str, Any]] = {}
    wn = w_num / w_num.sum()
    wr = w_ref / w_ref.sum()
    for j, name in enumerate(observables):
        edges = np.quantile(x_num[:, j], np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = min(edges[0], x_ref[:, j].min()), max(edges[-1], x_ref[:, j].max())
        edges = np.unique(edges)
        out[name] = _compare(x_num[:, j], wn, x_ref[:, j], wr * r_ref, wr, edges, len(edges) - 1)
    return out


MIN_REFERENCE_PER_BIN = 25  # reference events a ratio bin needs for its weighted sum's variance estimate


def ratio_closure(
    log_r_num: FloatArray,
    w_num: FloatArray,
    log_r_ref: FloatArray,
    w_ref: FloatArray,
    r_ref: FloatArray,
    n_bins: int = 20,
) -> dict[str, Any]:
    """Numerator vs reweighted reference in bins of the learned ``log r``; chi2, ndf, p-value and z-score.

    Bins hold equal numerator weight (so the ratio's largest values, where the reference is sparse, get bins
    of their own); from the top down, a bin with fewer than ``MIN_REFERENCE_PER_BIN`` reference events is
    merged into the next one. Both histograms are normalised, so ``ndf = bins - 1``. ``r_ref`` is the
    (normalised) ratio the reference is weighted with; ``log_r_*`` only define the bins.
    """
    from scipy.stats import chi2 as chi2_dist
    from scipy.stats import norm

    edges = np.unique(np.quantile(log_r_num, np.linspace(0, 1, n_bins + 1)))
    edges[0] = min(edges[0], float(log_r_ref.min()))
    edges[-1] = max(edges[-1], float(log_r_ref.max()))
    counts = np.histogram(log_r_ref, edges)[0]
    keep = [len(edges) - 1]  # merge sparse bins from the top (highest ratio) down
    running = 0
    for k in range(len(counts) - 1, 0, -1):
        running += counts[k]
        if running >= MIN_REFERENCE_PER_BIN:
            keep.append(k)
            running = 0
    keep.append(0)
    edges = edges[sorted(set(keep))]
    wn = w_num / w_num.sum()
    wr = w_ref / w_ref.sum()
    out = _compare(log_r_num, wn, log_r_ref, wr * r_ref, wr, edges, max(len(edges) - 2, 1))
    p_value = float(chi2_dist.sf(out["chi2"], out["ndf"]))
    return {**out, "p_value": p_value, "z": float(np.clip(norm.isf(max(p_value, 1e-300)), -40.0, 40.0))}


def two_sample(
    x_num: FloatArray, w_num: FloatArray, x_ref: FloatArray, w_ref: FloatArray, r_ref: FloatArray, seed: int = 0
) -> dict[str, float] | None:
    """Classifier two-sample test of the numerator against the reference reweighted by ``r_ref``.

    ``None`` when a sample has negative weights (the classifier's weights must be non-negative).
    """
    if (w_num < 0).any() or (w_ref < 0).any():
        return None
    from nsbiflow.physics.two_sample import classifier_auc

    return classifier_auc(x_ref, w_ref * r_ref, x_num, w_num, folds=2, seed=seed)


def normalisation(w_ref: FloatArray, r_ref: FloatArray) -> float:
    """Weighted mean of ``r`` over the reference (1 for a perfect ratio)."""
    return float(np.sum(w_ref * r_ref) / np.sum(w_ref))


def calibration_curve(
    log_r_num: FloatArray, w_num: FloatArray, log_r_ref: FloatArray, w_ref: FloatArray, n_bins: int = 10
) -> dict[str, Any]:
    """Reliability diagram of ``s = sigmoid(log r)`` with balanced classes, and its ECE."""
    s = 1.0 / (1.0 + np.exp(-np.concatenate([log_r_num, log_r_ref])))
    y = np.concatenate([np.ones(len(log_r_num)), np.zeros(len(log_r_ref))])
    w = np.concatenate([w_num / w_num.sum(), w_ref / w_ref.sum()])
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(s, edges) - 1, 0, n_bins - 1)
    total = np.bincount(which, weights=w, minlength=n_bins)
    predicted = np.bincount(which, weights=w * s, minlength=n_bins) / np.maximum(total, 1e-300)
    observed = np.bincount(which, weights=w * y, minlength=n_bins) / np.maximum(total, 1e-300)
    filled = total > 0
    ece = float(np.sum(total[filled] * np.abs(predicted - observed)[filled]) / total.sum())
    n_eff = total**2 / np.maximum(np.bincount(which, weights=w * w, minlength=n_bins), 1e-300)  # Kish
    observed_err = np.sqrt(np.clip(observed * (1 - observed), 0, None) / np.maximum(n_eff, 1.0))
    return {
        "edges": edges.tolist(),
        "predicted": predicted[filled].tolist(),
        "observed": observed[filled].tolist(),
        "observed_err": observed_err[filled].tolist(),
        "fraction": (total / total.sum())[filled].tolist(),
        "ece": ece,
    }


def loss_summary(manifest: dict[str, Any]) -> dict[str, float]:
    """Mean training and holdout loss of the members at their best epochs."""
    members = manifest["members"]
    train = float(np.mean([m["train_loss"] for m in members]))
    hold = float(np.mean([m["holdout_loss"] for m in members]))
    return {"train_loss": train, "holdout_loss": hold, "holdout_over_train": hold / train if train else float("nan")}


GATES = ("closure", "normalisation", "calibration", "ratio_closure", "two_sample")
Gate = Literal["closure", "normalisation", "calibration", "ratio_closure", "two_sample"]


def check(metrics: dict[str, Any], tol: Tolerances) -> list[str]:
    """The failed checks, each as one sentence saying which check and by how much."""
    return [sentence for _, sentence in check_named(metrics, tol)]


def check_named(metrics: dict[str, Any], tol: Tolerances) -> list[tuple[Gate, str]]:
    """The failed checks as (gate name, sentence) pairs."""
    label = metrics["label"]
    failures: list[tuple[Gate, str]] = []
    worst_name, worst = max(((k, v["chi2_ndf"]) for k, v in metrics["closure"].items()), key=lambda kv: kv[1])
    if worst > tol.max_chi2_ndf:
        failures.append(
            (
                "closure",
                f"closure of '{label}' in {worst_name}: chi2/ndf = {worst:.2f} exceeds the tolerance "
                f"{tol.max_chi2_ndf:g} by {worst - tol.max_chi2_ndf:.2f}",
            )
        )
    norm = metrics["normalisation"]
    if abs(norm - 1) > tol.max_norm_deviation:
        failures.append(
            (
                "normalisation",
                f"normalisation of '{label}': mean r over the reference = {norm:.4f}, off by {abs(norm - 1):.4f} "
                f"(tolerance {tol.max_norm_deviation:g})",
            )
        )
    ece = metrics["calibration"]["ece"]
    if ece > tol.max_ece:
        failures.append(
            ("calibration", f"calibration of '{label}': ECE = {ece:.4f} exceeds the tolerance {tol.max_ece:g}")
        )
    rc = metrics.get("ratio_closure")
    if rc is not None and rc["z"] > tol.max_ratio_closure_z:
        failures.append(
            (
                "ratio_closure",
                f"closure of '{label}' in bins of the learned ratio: chi2/ndf = {rc['chi2']:.1f}/{rc['ndf']} "
                f"(z = {rc['z']:.2f}) exceeds the tolerance z = {tol.max_ratio_closure_z:g}",
            )
        )
    ts = metrics.get("two_sample")
    if ts is not None and ts["z"] > tol.max_two_sample_z:
        failures.append(
            (
                "two_sample",
                f"two-sample test of '{label}': a classifier tells the numerator from the reweighted reference, "
                f"AUC = {ts['auc']:.4f} +- {ts['auc_error']:.4f} (z = {ts['z']:.2f}) exceeds the tolerance "
                f"z = {tol.max_two_sample_z:g}",
            )
        )
    return failures
