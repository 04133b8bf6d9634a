"""The fit's ``results.json``: pydantic models (its schema is exported and checked in like the model's)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntervalResult(_Open):
    """A confidence interval; ``*_clipped`` when the crossing was not reached before the parameter's bound."""

    lo: float
    hi: float
    lo_clipped: bool
    hi_clipped: bool


class Scan(_Open):
    """``t = -2 ln lambda`` of a profile scan."""

    values: list[float]
    t: list[float]


class PoiResult(_Open):
    """Everything about one parameter of interest."""

    hat: float = Field(description="best fit")
    error: float = Field(description="Hessian error")
    interval_68: IntervalResult
    interval_95: IntervalResult
    width_68: float
    width_95: float
    scan: Scan
    z0: float = Field(description="discovery significance sqrt(q0)")
    cls_upper_limit_95: float | None = Field(description="95 % CLs upper limit (q~_mu); null when not bracketed")


class ParameterResult(_Open):
    """One parameter at the best fit."""

    value: float
    error: float | None
    fixed: bool
    pull: float | None = Field(None, description="(value - auxiliary) / constraint sigma")
    constraint: float | None = Field(None, description="post-fit error / constraint sigma")


class Impact(_Open):
    """Shift of the first parameter of interest when a nuisance parameter is fixed at its best fit +- error."""

    parameter: str
    up: float
    down: float
    impact: float


class Correlation(_Open):
    """Correlation matrix of the free parameters."""

    names: list[str]
    matrix: list[list[float]]


class Scan2D(_Open):
    """A 2-D profile scan of two parameters of interest."""

    x: str
    y: str
    x_values: list[float]
    y_values: list[float]
    t: list[list[float]]


class MethodResult(_Open):
    """One method's fit."""

    twice_nll: float
    converged: bool
    nonpositive_density_events: int = Field(description="events/bins whose total density is <= 0 at the best fit")
    profile_found_lower_minimum: int = Field(description="times a profile fit found a lower minimum than the fit")
    parameters: dict[str, ParameterResult]
    pois: dict[str, PoiResult]
    correlation: Correlation
    impacts: list[Impact]
    scan_2d: Scan2D | None


class Summary(_Open):
    """The first parameter of interest in the shape every results table reads."""

    mu_hat: float
    interval_68: list[float]
    interval_95: list[float]
    width_68: float
    width_95: float
    cls_upper_limit_95: float | None
    z0: float


class Results(BaseModel):
    """``results.json`` of the ``fit`` step."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model's metadata.name")
    poi: str = Field(description="the first parameter of interest (the summaries' parameter)")
    methods: dict[str, MethodResult | None] = Field(description="full results per method (null: not run)")
    skipped: dict[str, str] = Field(default_factory=dict, description="methods not run, and why")
    exact: Summary | None = None
    nsbi: Summary | None = None
    histogram: Summary | None = None
    discriminant: Summary | None = Field(None, description="the binned fit of the learned NSBI discriminant")
    comparison: dict[str, float] = Field(default_factory=dict, description="width ratios to the exact method")
    injected: dict[str, float] = Field(default_factory=dict, description="true parameter values, when known")
    mu_injected: float | None = Field(None, description="the first POI's true value, when known")
    support: dict[str, Any] = Field(default_factory=dict)
    closure: dict[str, Any] = Field(default_factory=dict)
    ensemble_size: dict[str, int] = Field(default_factory=dict)
    histogram_observable: str | None = None
    workspace: str = Field("", description="why the pyhf workspace is empty, if it is")
    settings: dict[str, Any] = Field(default_factory=dict)


def summary(result: dict[str, Any], poi: str) -> dict[str, Any]:
    """The ``Summary`` of one method's result."""
    p = result["pois"][poi]
    return {
        "mu_hat": p["hat"],
        "interval_68": [p["interval_68"]["lo"], p["interval_68"]["hi"]],
        "interval_95": [p["interval_95"]["lo"], p["interval_95"]["hi"]],
        "width_68": p["width_68"],
        "width_95": p["width_95"],
        "cls_upper_limit_95": p["cls_upper_limit_95"],
        "z0": p["z0"],
    }
