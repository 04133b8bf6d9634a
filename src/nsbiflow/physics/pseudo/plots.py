"""Plots of a pseudo-experiment document: pulls per point, coverage per point and method, the limit distribution.

Drawn from the document alone (plain JSON), with the fit's figure helper and method styles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nsbiflow.physics.model.plots import STYLES, _figure


def pulls(path: Path, point: Mapping[str, Any]) -> None:
    """Histograms of the likelihood-ratio pulls of every method at one point, with N(0, 1)."""
    with _figure(path, (6.5, 4.5)) as fig:
        ax = fig.subplots()
        edges = [float(v) for v in np.linspace(-4, 4, 33)]
        for method, s in point["methods"].items():
            t = np.asarray(s["t_true"])
            mu = np.asarray(s["mu_hat"])
            values = np.sign(mu - point["truth"]) * np.sqrt(np.clip(t, 0, None))
            color, style = STYLES.get(method, ("C2", ":"))
            ax.hist(values, edges, histtype="step", density=True, color=color, linestyle=style,
                    label=f"{method}: mean {s['lr_pull']['mean']:.2f}, width {s['lr_pull']['width']:.2f}")
        grid = np.linspace(-4, 4, 200)
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="0.5", lw=1, label="N(0, 1)")
        ax.set_xlabel(f"sign({point['poi']}_hat - {point['poi']}) sqrt(t)")
        ax.set_ylabel("toys (normalised)")
        ax.set_title(f"pulls at {point['label']} ({point['toys']} toys)")
        ax.legend(fontsize=8)


def coverage(path: Path, points: list[Mapping[str, Any]]) -> None:
    """68 % and 95 % coverage with binomial errors, per point and method, against the nominal levels."""
    with _figure(path, (7.5, 4.5)) as fig:
        axes = fig.subplots(1, 2, sharey=False)
        for ax, key, level in ((axes[0], "coverage_68", 0.6827), (axes[1], "coverage_95", 0.95)):
            methods = sorted({m for p in points for m in p["methods"]})
            for j, method in enumerate(methods):
                xs, ys, es = [], [], []
                for i, p in enumerate(points):
                    if method in p["methods"]:
                        c = p["methods"][method][key]
                        xs.append(i + 0.15 * (j - (len(methods) - 1) / 2))
                        ys.append(c["value"])
                        es.append(c["error"])
                color, _ = STYLES.get(method, ("C2", ":"))
                ax.errorbar(xs, ys, es, fmt="o", color=color, label=method, capsize=3)
            ax.axhline(level, color="0.5", lw=1)
            ax.set_xticks(range(len(points)), [p["label"] for p in points], rotation=20, fontsize=8)
            ax.set_title(f"{key.replace('_', ' ')} % (nominal {level:.3f})")
        axes[0].legend(fontsize=8)


def limits(path: Path, document: Mapping[str, Any]) -> None:
    """The distribution of background-only CLs upper limits per method, with the asymptotic bands."""
    with _figure(path, (6.5, 4.5)) as fig:
        ax = fig.subplots()
        block = document["limits"]
        for method, s in block["methods"].items():
            color, style = STYLES.get(method, ("C2", ":"))
            if s["limits"]:
                ax.hist(s["limits"], 30, histtype="step", color=color, linestyle=style, density=True,
                        label=f"{method}: toys median {s['toys_bands']['0']:.3f}")
            band = s["asymptotic_bands"]
            if band.get("0") is not None:
                ax.axvline(band["0"], color=color, linestyle=style, lw=1.5)
            if band.get("-1") is not None and band.get("+1") is not None:
                ax.axvspan(band["-1"], band["+1"], color=color, alpha=0.12)
        ax.set_xlabel(f"95 % CLs upper limit on {document['poi']} (lines, shading: asymptotic median, +-1 sigma)")
        ax.set_ylabel("toys (normalised)")
        ax.set_title(f"background-only toys at {block['label']}")
        ax.legend(fontsize=8)
