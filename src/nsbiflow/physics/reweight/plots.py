"""Plots of a reweighting closure: MC_b vs reweighted MC_a per projection (with ratio panels, drawn by
``physics/plots.closure``) and the weight distribution (learned, and exact when known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics import plots

PER_FIGURE = 4


def closure(directory: Path, label: str, projections: dict[str, dict[str, Any]], target: str) -> list[Path]:
    """One figure per group of ``PER_FIGURE`` projections, trained ones first (the points are ``target``, the
    lines the source before and after reweighting); returns the files."""
    names = sorted(projections, key=lambda n: (not projections[n]["trained"], n))
    written = []
    for i in range(0, len(names), PER_FIGURE):
        group = {n: projections[n] for n in names[i : i + PER_FIGURE]}
        path = directory / f"closure_{label}_{i // PER_FIGURE}.png"
        plots.closure(path, target, group)
        written.append(path)
    return written


def weights(path: Path, label: str, log_w: NDArray[np.float64], log_w_exact: NDArray[np.float64] | None) -> None:
    """Histogram of log w (learned and exact) and, with the truth, learned against exact."""
    with plots._figure(path, (9.0 if log_w_exact is not None else 4.8, 4.0), wgap=0.8) as fig:
        axes = fig.subplots(1, 2 if log_w_exact is not None else 1, squeeze=False)[0]
        lo, hi = np.quantile(log_w, [0.0005, 0.9995])
        if log_w_exact is not None:
            lo, hi = min(lo, float(np.quantile(log_w_exact, 0.0005))), max(hi, float(np.quantile(log_w_exact, 0.9995)))
        edges = np.linspace(lo, hi, 61)
        axes[0].hist(log_w, edges, histtype="step", color="C0", label=label)
        if log_w_exact is not None:
            axes[0].hist(log_w_exact, edges, histtype="step", color="k", ls="--", label="exact")
            axes[1].hist2d(log_w_exact, log_w, bins=[edges, edges], cmin=1)
            axes[1].plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            axes[1].set_xlabel("exact log w")
            axes[1].set_ylabel("learned log w")
        axes[0].set_xlabel("log w")
        axes[0].set_ylabel("events")
        axes[0].set_yscale("log")
        axes[0].legend()
