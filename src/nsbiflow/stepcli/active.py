"""Stages of the active-learning scan: ``choose-points``, ``scan-point``, ``update-surrogate``, ``scan-report``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from nsbiflow.physics.active.scan import ActiveConfig
from nsbiflow.physics.active.toy import ScanToy
from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.contract import StageIO, stage


class ScanPointConfig(ScanToy):
    """One scan point: simulate the signal at ``mass``, then the exact-likelihood CLs of ``mu``."""

    mass: float = Field(..., description="signal mass of the point")
    mu: float = Field(..., description="signal strength of the point")
    events: int = Field(20000, ge=100, le=10_000_000, description="simulated signal events")
    seed: int = Field(1, description="seed of the signal simulation")


class UpdateConfig(ActiveConfig):
    """The surrogate update: ``ActiveConfig`` plus the iteration the new results belong to."""

    iteration: int = Field(0, ge=0, description="the loop iteration (loop.iteration)")


class ReportConfig(ActiveConfig, ScanToy):
    """The scan's report: the scan settings and the toy (for the exact contour)."""

    tolerance: float = Field(0.01, gt=0, lt=1, description="declared tolerance: misclassified fraction of the scan")
    exact_masses: int = Field(29, ge=3, le=400, description="masses where the exact contour is computed")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StageError(f"{what}: cannot read {path} as JSON: {exc}") from None


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _history(io: StageIO, what: str) -> list[dict[str, Any]]:
    path = io.optional_input("history")
    if path is None:
        return []
    data = _read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise StageError(f"{what}: {path} is not a scan history (expected {{'points': [...]}})")
    return list(data["points"])


@stage("choose-points", outputs=("points",), config=ActiveConfig)
def choose_points(io: StageIO) -> None:
    """The next batch of scan points: a space-filling design first, then the straddle of the CLs contour."""
    from nsbiflow.physics.active.scan import choose

    cfg = io.config(ActiveConfig)
    history = _history(io, "choose-points")
    _write_json(io.output("points"), {"points": choose(history, cfg)})


@stage("scan-point", outputs=("result",), config=ScanPointConfig)
def scan_point(io: StageIO) -> None:
    """Simulate the signal at one (mass, mu) point and compute its CLs with the exact likelihood."""
    from nsbiflow.physics.active.toy import point_cls, simulated_signal

    cfg = io.config(ScanPointConfig)
    toy = ScanToy(**cfg.model_dump(include=set(ScanToy.model_fields)))
    signal = simulated_signal(toy, cfg.mass, cfg.events, cfg.seed)
    value = point_cls(toy, cfg.mass, cfg.mu, signal)
    _write_json(io.output("result"), {"mass": cfg.mass, "mu": cfg.mu, "cls": value})


@stage("update-surrogate", outputs=("history", "status"), config=UpdateConfig)
def update_surrogate(io: StageIO) -> None:
    """Add this iteration's results to the history, refit the GP, and say whether the contour is certain."""
    from nsbiflow.physics.active.scan import status

    cfg = io.config(UpdateConfig)
    history = _history(io, "update-surrogate")
    for path in io.input_list("results"):
        result = _read_json(path, "update-surrogate")
        if not isinstance(result, dict) or not {"mass", "mu", "cls"} <= set(result):
            raise StageError(f"update-surrogate: {path} is not a scan-point result (mass, mu, cls)")
        history.append({"mass": result["mass"], "mu": result["mu"], "cls": result["cls"], "iteration": cfg.iteration})
    _write_json(io.output("history"), {"points": history})
    _write_json(
        io.output("status"),
        {**status(history, ActiveConfig(**cfg.model_dump(exclude={"iteration"}))), "iteration": cfg.iteration},
    )


@stage("scan-report", outputs=("results", "plots"), config=ReportConfig)
def scan_report(io: StageIO) -> None:
    """The exclusion contour of the active scan against the exact one and a regular grid's, with figures."""
    from nsbiflow.physics.active.report import report

    cfg = io.config(ReportConfig)
    history = _history(io, "scan-report")
    if not history:
        raise StageError("scan-report: input 'history' is required (the loop's history output)")
    grid = [_read_json(p, "scan-report") for p in io.input_list("grid", required=False)]
    plots = io.output("plots")
    plots.mkdir(parents=True, exist_ok=True)
    _write_json(io.output("results"), report(history, grid, cfg, plots))
