"""PNG plots (matplotlib's Agg canvas with the mplhep ROOT style, tuned to draw fast).

The plots are drawn in every calibrate and limits stage, so they are built to be cheap: an
object-oriented ``Figure`` on an Agg canvas (no pyplot figure manager, no global rc changes: the
style is applied with ``rc_context`` around each figure), a fixed layout in inches instead of
``tight_layout`` (which draws every tick label once more just to measure it), no minor ticks
(tick objects are the bulk of the drawing time; the labelled major ticks carry the scale) and
titles at a fixed height (matplotlib otherwise measures the tick labels again to place them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110
"""Pixels per inch of every PNG (a 6 x 4.5 in plot is 660 x 495 pixels)."""

# Margins in inches (independent of the figure size); room for tick labels of up to ~6 characters
# ("0.0005", "100000") plus the axis label on the left, the x-axis label below, a title above.
_LEFT, _RIGHT, _BOTTOM, _TOP, _TOP_TITLE = 0.75, 0.2, 0.6, 0.2, 0.35


@cache
def _style() -> Any:  # dict[str, Any]; matplotlib's stubs want the rc keys as literals
    """The mplhep ROOT style with smaller fonts, no minor ticks and a fixed title height."""
    import mplhep

    return {
        **mplhep.style.ROOT,
        "font.size": 11,
        "axes.labelsize": 11,
        "axes.titlesize": 11,
        "legend.fontsize": 9,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "figure.dpi": DPI,
        "xtick.minor.visible": False,
        "ytick.minor.visible": False,
        "axes.titley": 1.0,  # a fixed title position: no measuring of the tick labels to place it
    }


@contextmanager
def _figure(
    path: Path,
    size: tuple[float, float],
    *,
    title: bool = False,
    wgap: float = 0.0,
    hgap: float = 0.0,
) -> Iterator[Figure]:
    """A figure of ``size`` inches drawn in the plot style, saved to ``path`` as PNG on exit.

    The axes area leaves fixed margins (in inches); ``wgap``/``hgap`` are the gaps between
    columns/rows of subplots in inches.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_style()):
        fig = Figure(figsize=size)
        FigureCanvasAgg(fig)
        yield fig
        width, height = size
        ncols, nrows = _grid_shape(fig)
        ax_w = (width - _LEFT - _RIGHT - (ncols - 1) * wgap) / ncols
        ax_h = (height - _BOTTOM - (_TOP_TITLE if title else _TOP) - (nrows - 1) * hgap) / nrows
        fig.subplots_adjust(
            left=_LEFT / width,
            right=1 - _RIGHT / width,
            bottom=_BOTTOM / height,
            top=1 - (_TOP_TITLE if title else _TOP) / height,
            wspace=wgap / ax_w,
            hspace=hgap / ax_h,
        )
        fig.savefig(str(path), metadata={"Software": None})


def _grid_shape(fig: Figure) -> tuple[int, int]:
    spec = fig.axes[0].get_subplotspec()
    if spec is None:
        return 1, 1
    nrows, ncols = spec.get_gridspec().get_geometry()
    return ncols, nrows


def closure(
    path: Path, label: str, closure_metrics: dict[str, dict[str, Any]], reference: str = "reference"
) -> None:
    """Numerator vs reweighted denominator (and the raw denominator) in every observable, chi2/ndf in the titles.

    ``reference`` names the ratio's denominator sample: the reference for a process ratio, the nominal
    background for a +-1 sigma variation.
    """
    import mplhep

    names = list(closure_metrics)
    with _figure(path, (3.2 * len(names), 4.8), title=True, wgap=0.55, hgap=0.25) as fig:
        axes = fig.subplots(2, len(names), sharex="col", gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
        for j, name in enumerate(names):
            c = closure_metrics[name]
            edges = np.array(c["edges"])
            width = np.diff(edges)  # densities: content / bin width (the bins have equal numerator content)
            num, rw = np.array(c["numerator"]), np.array(c["reweighted"])
            ax, rax = axes[0, j], axes[1, j]
            denominator = np.array(c["reference"]) / width
            mplhep.histplot(denominator, edges, ax=ax, color="grey", ls="--", label=f"{reference} (denominator)")
            mplhep.histplot(rw / width, edges, ax=ax, color="C0", label=f"{reference} x r")
            mplhep.histplot(
                num / width,
                edges,
                ax=ax,
                yerr=np.array(c["numerator_err"]) / width,
                histtype="errorbar",
                color="k",
                label=f"{label} (numerator)",
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
                rax.set_ylabel("numerator /\nreweighted")


def calibration(path: Path, label: str, curve: dict[str, Any]) -> None:
    """Reliability diagram of the classifier output, with the binomial uncertainty of each bin when recorded."""
    with _figure(path, (4.5, 4.5)) as fig:
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], color="grey", ls="--", label="perfect calibration")
        errors = curve.get("observed_err")
        ax.errorbar(
            curve["predicted"],
            curve["observed"],
            yerr=errors,
            fmt="o-",
            color="C0",
            capsize=2,
            markersize=4,
            label=f"{label} (ECE {curve['ece']:.3f})",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean classifier output s")
        ax.set_ylabel("numerator fraction")
        ax.legend(loc="upper left")


def losses(path: Path, label: str, curves: dict[str, dict[str, list[float]]]) -> None:
    """Training and holdout loss per epoch of every member (epochs counted from 1, integer ticks)."""
    from matplotlib.ticker import MaxNLocator

    with _figure(path, (5.5, 4), title=True) as fig:
        ax = fig.subplots()
        for k, (_, c) in enumerate(sorted(curves.items())):
            epochs = np.arange(1, len(c["train"]) + 1)
            ax.plot(epochs, c["train"], color="C0", alpha=0.5, label="train" if k == 0 else None)
            holdout = c["holdout"]
            ax.plot(epochs[: len(holdout)], holdout, color="C1", alpha=0.5, label="holdout" if k == 0 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted BCE")
        ax.set_title(f"{label}: {len(curves)} members")
        ax.legend()
