"""The scan's result: the active contour against the exact one and against a regular grid's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from nsbiflow.physics.active import plots
from nsbiflow.physics.active.contour import evaluation_grid, exact_excluded, grid_excluded, misclassified
from nsbiflow.physics.active.scan import ActiveConfig, surrogate
from nsbiflow.physics.active.surrogate import Scale, fit, level, transform
from nsbiflow.physics.active.toy import ScanToy, exact_contour


def contour_line(surface: dict[str, Any]) -> dict[str, list[float | None]]:
    """``mu_up(mass)`` of a surface on a grid: the lowest ``mu`` above the level in each mass column."""
    mean, mu = np.asarray(surface["mean"]), np.asarray(surface["mu"])
    line: list[float | None] = []
    for column in mean.T:
        above = np.nonzero(column > surface["level"])[0]
        line.append(float(mu[above[0]]) if above.size else None)
    return {"mass": list(surface["mass"]), "mu": line}


def grid_surface(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A regular grid's CLs values as ``{"mass", "mu", "cls"[i_mu][i_mass]}`` (None if not a full grid)."""
    masses = sorted({r["mass"] for r in results})
    mus = sorted({r["mu"] for r in results})
    if len(masses) < 2 or len(mus) < 2 or len(masses) * len(mus) != len(results):
        return None
    table = np.full((len(mus), len(masses)), np.nan)
    for r in results:
        table[mus.index(r["mu"]), masses.index(r["mass"])] = r["cls"]
    if np.isnan(table).any():
        return None
    return {"mass": masses, "mu": mus, "cls": table.tolist(), "points": len(results)}


def report(history: list[dict[str, Any]], grid: list[dict[str, Any]], cfg: Any, plots_dir: Path) -> dict[str, Any]:
    """Results (points, misclassified fractions against the exact contour) and the figures in ``plots_dir``."""
    active = ActiveConfig(**cfg.model_dump(include=set(ActiveConfig.model_fields)))
    toy = ScanToy(**cfg.model_dump(include=set(ScanToy.model_fields)))
    scale = Scale([active.mass_range, active.mu_range])
    masses, limits = exact_contour(toy, active.mass_range, cfg.exact_masses, active.cls_level)
    fine = evaluation_grid()
    truth = exact_excluded(scale, fine, masses, limits)
    u = scale.to_unit(np.array([[p["mass"], p["mu"]] for p in history]))
    gp = fit(u, transform([p["cls"] for p in history]), active.seed)
    lvl = level(active.cls_level)
    active_error = misclassified(gp.predict(fine) > lvl, truth)
    surface = surrogate(history, active, resolution=61)
    results: dict[str, Any] = {
        "tolerance": cfg.tolerance,
        "active": {
            "points": len(history),
            "iterations": 1 + max(int(p.get("iteration", 0)) for p in history),
            "misclassified": active_error,
            "within_tolerance": active_error <= cfg.tolerance,
            "contour": contour_line(surface),
        },
        "exact": {"mass": masses.tolist(), "mu": [v if math.isfinite(v) else None for v in limits]},
    }
    grid_plot = None
    table = grid_surface(grid) if grid else None
    if table is not None:
        values = np.asarray(table["cls"])
        n_mu, n_mass = values.shape
        if n_mu == n_mass:
            grid_error = misclassified(grid_excluded(values, n_mass, fine, lvl), truth)
            results["grid"] = {
                "points": table["points"],
                "misclassified": grid_error,
                "within_tolerance": grid_error <= cfg.tolerance,
            }
        grid_plot = {
            "mass": table["mass"],
            "mu": table["mu"],
            "z": transform(values.ravel()).reshape(values.shape),
            "points": table["points"],
        }
    finite = np.isfinite(limits)
    plots.contour(plots_dir / "contour.png", surface, history, (masses[finite], limits[finite]), grid_plot)
    plots.surrogate(plots_dir / "surrogate.png", surface, history)
    return results
