"""PNG plots (matplotlib with the non-interactive Agg backend and the mplhep style)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.labelsize": 11,
            "axes.titlesize": 11,
            "legend.fontsize": 9,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "figure.dpi": 80,
        }
    )
    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(str(path), metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def closure(path: Path, label: str, closure_metrics: dict[str, dict[str, Any]]) -> None:
    """Numerator vs reweighted reference (and the raw reference) in every observable, chi2/ndf in the legend."""
    plt = _pyplot()
    import mplhep

    names = list(closure_metrics)
    fig, axes = plt.subplots(
        2,
        len(names),
        figsize=(3.2 * len(names), 4.8),
        sharex="col",
        gridspec_kw={"height_ratios": [3, 1]},
        squeeze=False,
    )
    for j, name in enumerate(names):
        c = closure_metrics[name]
        edges = np.array(c["edges"])
        width = np.diff(edges)  # densities: content / bin width (the bins have equal numerator content)
        num, rw = np.array(c["numerator"]), np.array(c["reweighted"])
        ax, rax = axes[0, j], axes[1, j]
        mplhep.histplot(np.array(c["reference"]) / width, edges, ax=ax, color="grey", ls="--", label="reference")
        mplhep.histplot(rw / width, edges, ax=ax, color="C0", label="reference x r")
        mplhep.histplot(
            num / width,
            edges,
            ax=ax,
            yerr=np.array(c["numerator_err"]) / width,
            histtype="errorbar",
            color="k",
            label=label,
            markersize=3,
        )
        ax.set_title(f"{name}: chi2/ndf = {c['chi2_ndf']:.2f}")
        ratio = np.divide(num, rw, out=np.ones_like(num), where=rw > 0)
        err = np.divide(np.hypot(c["numerator_err"], c["reweighted_err"]), rw, out=np.zeros_like(num), where=rw > 0)
        mplhep.histplot(ratio, edges, yerr=err, ax=rax, histtype="errorbar", color="k", markersize=3)
        rax.axhline(1, color="C0")
        rax.set_ylim(0.8, 1.2)
        rax.set_xlim(edges[1] - 1.0, edges[-2] + 1.0)
        rax.set_xlabel(name)
        if j == 0:
            ax.set_ylabel("density")
            ax.legend()
            rax.set_ylabel("num / rw")
    fig.tight_layout()
    _save(fig, path)


def calibration(path: Path, label: str, curve: dict[str, Any]) -> None:
    """Reliability diagram of the classifier output."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--")
    ax.plot(curve["predicted"], curve["observed"], "o-", color="C0", label=f"{label} (ECE {curve['ece']:.3f})")
    ax.set_xlabel("mean classifier output s")
    ax.set_ylabel("numerator fraction")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def losses(path: Path, label: str, curves: dict[str, dict[str, list[float]]]) -> None:
    """Training and holdout loss per epoch of every member."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, (_, c) in enumerate(sorted(curves.items())):
        ax.plot(c["train"], color="C0", alpha=0.5, label="train" if k == 0 else None)
        ax.plot(c["holdout"], color="C1", alpha=0.5, label="holdout" if k == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted BCE")
    ax.set_title(f"{label}: {len(curves)} members")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def scans(path: Path, results: dict[str, Any], mu_injected: float | None = None) -> None:
    """Profile likelihood scans ``t(mu)`` of the methods, with the 68 % and 95 % levels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    styles = {"exact": ("k", "-"), "nsbi": ("C0", "--"), "histogram": ("C1", "-.")}
    for name, res in results.items():
        if res is None:
            continue
        color, ls = styles.get(name, ("C2", ":"))
        lo, hi = res.interval_68
        ax.plot(res.scan_mu, res.scan_t, color=color, ls=ls, label=f"{name}: {res.mu_hat:.2f} [{lo:.2f}, {hi:.2f}]")
    for level in (1.0, 3.84):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    if mu_injected is not None:
        ax.axvline(mu_injected, color="grey", lw=0.8)
    ax.set_ylim(0, 8)
    ax.set_xlabel("signal strength mu")
    ax.set_ylabel("-2 ln lambda(mu)")
    ax.legend(title="mu_hat [68% CL]")
    fig.tight_layout()
    _save(fig, path)
