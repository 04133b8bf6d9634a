"""Figures of an active scan (matplotlib ``Figure`` on an Agg canvas: no pyplot, no global state).

``contour``: the exact contour, the active scan's contour with its points coloured by iteration, and the regular
grid's contour; ``surrogate``: the GP's mean and standard deviation of the transformed CLs with the level set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def contour(
    path: Path,
    surrogate: dict[str, Any],
    history: list[dict[str, Any]],
    exact: tuple[np.ndarray, np.ndarray] | None = None,
    grid: dict[str, Any] | None = None,
    title: str = "",
) -> None:
    """The 95 % CLs exclusion contours (active scan, grid, exact) and the sampled points by iteration."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    mass, mu = np.asarray(surrogate["mass"]), np.asarray(surrogate["mu"])
    ax.contour(mass, mu, np.asarray(surrogate["mean"]), levels=[surrogate["level"]], colors="C0", linewidths=2)
    ax.plot([], [], color="C0", lw=2, label=f"active scan ({len(history)} points)")
    if grid is not None:
        ax.contour(
            np.asarray(grid["mass"]),
            np.asarray(grid["mu"]),
            np.asarray(grid["z"]),
            levels=[surrogate["level"]],
            colors="C2",
            linestyles="--",
        )
        ax.plot([], [], color="C2", ls="--", label=f"regular grid ({grid['points']} points)")
        g_m, g_mu = np.meshgrid(grid["mass"], grid["mu"])
        ax.scatter(g_m.ravel(), g_mu.ravel(), s=4, color="C2", alpha=0.4)
    if exact is not None:
        ax.plot(exact[0], exact[1], color="k", ls=":", lw=2, label="exact")
    iterations = np.array([p.get("iteration", 0) for p in history])
    points = ax.scatter(
        [p["mass"] for p in history],
        [p["mu"] for p in history],
        c=iterations,
        cmap="viridis",
        s=22,
        edgecolors="k",
        linewidths=0.4,
        zorder=3,
    )
    fig.colorbar(points, ax=ax, label="iteration")
    ax.set_xlim(mass[0], mass[-1])
    ax.set_ylim(mu[0], mu[-1])
    ax.set_xlabel("signal mass")
    ax.set_ylabel(r"signal strength $\mu$")
    ax.set_title(title or "95% CLs exclusion (excluded above the contour)")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=110)


def surrogate(path: Path, surrogate: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """The GP's mean and standard deviation of ``Phi^-1(1 - CLs)``, the level set and the points."""
    fig = _figure(10.0, 4.0)
    mass, mu = np.asarray(surrogate["mass"]), np.asarray(surrogate["mu"])
    for index, (key, label) in enumerate((("mean", "GP mean of $\\Phi^{-1}(1-CL_s)$"), ("std", "GP std"))):
        ax = fig.add_subplot(1, 2, index + 1)
        mesh = ax.pcolormesh(mass, mu, np.asarray(surrogate[key]), shading="auto", cmap="magma")
        fig.colorbar(mesh, ax=ax, label=label)
        ax.contour(mass, mu, np.asarray(surrogate["mean"]), levels=[surrogate["level"]], colors="c")
        ax.scatter(
            [p["mass"] for p in history], [p["mu"] for p in history], s=8, color="w", edgecolors="k", linewidths=0.3
        )
        ax.set_xlabel("signal mass")
        ax.set_ylabel(r"$\mu$")
    fig.savefig(path, dpi=110)
