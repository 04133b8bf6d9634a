"""Plots of a fit's results: profile scans per parameter of interest, pulls with impacts, correlations.

Drawn from the results document (plain JSON), so a report can redraw them from ``results.json`` alone.
Object-oriented matplotlib on an Agg canvas (no pyplot state), as in ``physics.plots``. Every plot is titled
with the hypothesis it shows (:func:`hypothesis_title`: model, data, POI, injected values), on the figure and
in the PNG's ``Title`` text chunk, as the reinterpretation's compare plots are labelled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLES = {"exact": ("k", "-"), "nsbi": ("C0", "--"), "discriminant": ("C2", ":"), "histogram": ("C1", "-.")}


def hypothesis_title(model: str, data: str, poi: str, injected: Mapping[str, float] | None = None) -> str:
    """``toy-nsbi: data 'observed', POI mu (injected mu=1, nu_b=0)``: what a fit's plots show."""
    values = dict(injected or {})
    names = [poi] * (poi in values) + sorted(n for n in values if n != poi)
    shown = ", ".join(f"{n}={values[n]:g}" for n in names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{model}: {data}, POI {poi}" + (f" (injected {shown})" if shown else "")


@contextmanager
def _figure(path: Path, size: tuple[float, float], hypothesis: str = "") -> Iterator[Figure]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    if hypothesis:
        fig.suptitle(hypothesis, fontsize=9)
    yield fig
    fig.savefig(path, dpi=110, metadata={"Title": hypothesis} if hypothesis else None)


def scans(path: Path, methods: Mapping[str, Any], poi: str, injected: float | None = None,
          hypothesis: str = "") -> None:  # fmt: skip
    """``t(poi)`` of every method, with the 68 % and 95 % levels and the injected value labelled; the x-range
    is where some method's ``t`` stays below the plotted top (8), with a margin. ``hypothesis`` titles it."""
    with _figure(path, (7.5, 5), hypothesis) as fig:
        ax = fig.subplots()
        inside: list[float] = []
        for name, result in methods.items():
            if not result or poi not in result["pois"]:
                continue
            p = result["pois"][poi]
            color, ls = STYLES.get(name, ("C3", ":"))
            i68 = p["interval_68"]
            values, t = p["scan"]["values"], p["scan"]["t"]
            inside += [v for v, y in zip(values, t, strict=False) if y is not None and y <= 8.0]
            ax.plot(values, t, color=color, ls=ls, label=f"{name}: {p['hat']:.3f} [{i68['lo']:.3f}, {i68['hi']:.3f}]")
        if inside:
            lo, hi = min(inside), max(inside)
            margin = 0.15 * (hi - lo) or 0.5
            ax.set_xlim(lo - margin, hi + margin)
        x_text = ax.get_xlim()[0] + 0.02 * (ax.get_xlim()[1] - ax.get_xlim()[0])
        for level, text in ((1.0, "68% CL (t = 1)"), (3.84, "95% CL (t = 3.84)")):
            ax.axhline(level, color="grey", lw=0.8, ls=":")
            ax.text(x_text, level + 0.1, text, color="dimgrey", fontsize=8, va="bottom")
        if injected is not None:
            ax.axvline(injected, color="grey", lw=0.8, label=f"injected {poi} = {injected:g}")
        ax.set_ylim(0, 8)
        ax.set_xlabel(poi)
        ax.set_ylabel(f"-2 ln lambda({poi})")
        ax.legend(title=f"{poi} best fit [68% CL]", fontsize=8, loc="upper center")


def pulls(path: Path, result: Mapping[str, Any], title: str, hypothesis: str = "") -> None:
    """Pulls and post-fit constraints of the constrained nuisance parameters, ranked by impact on the POI."""
    ranked = [i["parameter"] for i in result.get("impacts", [])]
    params = result["parameters"]
    names = ranked or [n for n, p in params.items() if p.get("pull") is not None]
    names = [n for n in names if params[n].get("pull") is not None][:30]
    with _figure(path, (8, 1.5 + 0.35 * max(len(names), 1)), hypothesis) as fig:
        ax, ax2 = fig.subplots(1, 2, sharey=True, width_ratios=[2, 1])
        y = np.arange(len(names))[::-1]
        pull = [params[n]["pull"] for n in names]
        err = [params[n]["constraint"] or 0.0 for n in names]
        ax.errorbar(pull, y, xerr=err, fmt="ko", ms=4)
        ax.axvspan(-1, 1, color="C2", alpha=0.15)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, names)
        ax.set_xlabel("(theta_hat - theta_0) / sigma")
        ax.set_title(title)
        impacts = {i["parameter"]: i for i in result.get("impacts", [])}
        ax2.barh(y, [impacts.get(n, {}).get("up", 0.0) for n in names], color="C0", alpha=0.6, label="+1 sigma")
        ax2.barh(y, [impacts.get(n, {}).get("down", 0.0) for n in names], color="C3", alpha=0.6, label="-1 sigma")
        ax2.axvline(0, color="grey", lw=0.8)
        ax2.set_xlabel("impact on POI")
        ax2.legend(fontsize=8)


def correlations(path: Path, result: Mapping[str, Any], title: str, hypothesis: str = "") -> None:
    """The correlation matrix of the free parameters."""
    names = result["correlation"]["names"][:40]
    matrix = np.asarray(result["correlation"]["matrix"])[: len(names), : len(names)]
    size = 2.5 + 0.3 * len(names)
    with _figure(path, (size + 1, size + 0.3), hypothesis) as fig:
        ax = fig.subplots()
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(title)
        fig.colorbar(image, ax=ax)


def scan_2d(path: Path, result: Mapping[str, Any], title: str, hypothesis: str = "") -> None:
    """68 % and 95 % contours of a 2-D profile scan."""
    s = result["scan_2d"]
    with _figure(path, (6, 5.3), hypothesis) as fig:
        ax = fig.subplots()
        t = np.asarray(s["t"]).T
        ax.contour(s["x_values"], s["y_values"], t, levels=[2.30, 5.99], colors=["k", "grey"])
        ax.set_xlabel(s["x"])
        ax.set_ylabel(s["y"])
        ax.set_title(title)
