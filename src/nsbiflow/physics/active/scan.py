"""One active scan, as functions of its history (what the workflow's steps call, and the benchmark too).

The history is the list of analysed points ``{"mass", "mu", "cls", "iteration"}``. ``choose`` proposes the next
batch (a space-filling initial design when the history is empty), ``status`` says whether the contour is
certain enough to stop, ``surrogate`` is the GP's mean and standard deviation on a grid (for plots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.active.acquisition import choose_batch, expected_misclassified, initial_design
from nsbiflow.physics.active.surrogate import Scale, fit, level, transform, unit_grid


class ActiveConfig(BaseModel):
    """Settings of the active scan (the ``choose-points`` and ``update-surrogate`` steps share them)."""

    model_config = ConfigDict(extra="forbid")

    initial: int = Field(6, ge=3, le=256, description="points of the initial space-filling design")
    batch: int = Field(3, ge=1, le=64, description="points chosen per iteration (simulated in parallel)")
    resolution: int = Field(41, ge=5, le=201, description="candidate grid per axis (acquisition, stopping rule)")
    cls_level: float = Field(0.05, gt=0, lt=1, description="the contour: CLs = cls_level")
    stop_fraction: float = Field(
        0.01, ge=0, lt=1, description="stop when the GP's expected misclassified fraction of the scan is below this"
    )
    patience: int = Field(
        2, ge=1, le=10, description="iterations in a row the stopping condition must hold (the last ones)"
    )
    seed: int = Field(0, description="seed of the initial design and the GP optimiser restarts")
    mass_range: list[float] = Field([1.5, 8.5], min_length=2, max_length=2, description="scan range of the signal mass")
    mu_range: list[float] = Field(
        [0.0, 2.0], min_length=2, max_length=2, description="scan range of the signal strength"
    )


def _scale(cfg: ActiveConfig) -> Scale:
    return Scale([cfg.mass_range, cfg.mu_range])


def _training(history: Sequence[dict[str, Any]], cfg: ActiveConfig) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[p["mass"], p["mu"]] for p in history], dtype=float).reshape(-1, 2)
    return _scale(cfg).to_unit(x), transform([p["cls"] for p in history])


def choose(history: Sequence[dict[str, Any]], cfg: ActiveConfig) -> list[dict[str, float]]:
    """The next batch of points ``{"mass", "mu"}`` (rounded to 1e-6, so they are stable cache keys)."""
    if not history:
        unit = initial_design(cfg.initial, cfg.seed)
    else:
        u, z = _training(history, cfg)
        gp = fit(u, z, cfg.seed)
        unit = choose_batch(gp, u, z, unit_grid(cfg.resolution), level(cfg.cls_level), cfg.batch)
    x = _scale(cfg).from_unit(unit)
    return [{"mass": round(float(m), 6), "mu": round(float(mu), 6)} for m, mu in x]


def surrogate(history: Sequence[dict[str, Any]], cfg: ActiveConfig, resolution: int | None = None) -> dict[str, Any]:
    """GP mean and std of the transformed CLs on a ``resolution``-square grid (``[i_mu][i_mass]``)."""
    n = resolution or cfg.resolution
    u, z = _training(history, cfg)
    gp = fit(u, z, cfg.seed)
    mean, std = gp.predict(unit_grid(n), return_std=True)
    return {
        "mass": np.linspace(cfg.mass_range[0], cfg.mass_range[1], n).tolist(),
        "mu": np.linspace(cfg.mu_range[0], cfg.mu_range[1], n).tolist(),
        "mean": mean.reshape(n, n).tolist(),
        "std": std.reshape(n, n).tolist(),
        "level": level(cfg.cls_level),
    }


def _expected_error(history: Sequence[dict[str, Any]], cfg: ActiveConfig) -> float:
    u, z = _training(history, cfg)
    gp = fit(u, z, cfg.seed)
    mean, std = gp.predict(unit_grid(cfg.resolution), return_std=True)
    return expected_misclassified(mean, std, level(cfg.cls_level))


def status(history: Sequence[dict[str, Any]], cfg: ActiveConfig) -> dict[str, Any]:
    """``{"done", "expected_misclassified", "points"}``: done when the GP's expected misclassified fraction is
    below ``stop_fraction`` after each of the last ``patience`` iterations.

    With few points the fitted length-scales can be too long and the GP overconfident (its expected error then
    undershoots the true one for an iteration or two); asking for the condition on consecutive iterations, each
    judged by the GP of the points known then, is what keeps the rule from stopping on such a fluke.
    """
    fraction = _expected_error(history, cfg)
    done = fraction < cfg.stop_fraction
    iterations = sorted({int(p.get("iteration", 0)) for p in history})
    if done and cfg.patience > 1:
        if len(iterations) < cfg.patience:
            done = False
        for last in iterations[-cfg.patience : -1] if done else []:
            earlier = [p for p in history if int(p.get("iteration", 0)) <= last]
            if _expected_error(earlier, cfg) >= cfg.stop_fraction:
                done = False
                break
    return {"done": bool(done), "expected_misclassified": fraction, "points": len(history)}
