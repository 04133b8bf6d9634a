"""The bias gate's settings (light: pydantic only, so ``nsbiflow-step`` imports fast; ``bias.py`` does the work)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BiasPoint(BaseModel):
    """One parameter point of the gate."""

    model_config = ConfigDict(extra="forbid")

    values: dict[str, float] = Field(
        default_factory=dict, description="true parameter values (the others at their starting values)"
    )
    samples: dict[str, str] = Field(
        default_factory=dict,
        description="process -> held-out sample simulated at these values (default: the process's own sample); "
        "required for every process a shape nuisance away from 0 acts on",
    )


class BiasGateConfig(BaseModel):
    """What the bias gate tests and how strictly."""

    model_config = ConfigDict(extra="forbid")

    points: list[BiasPoint] = Field(
        default_factory=list,
        description="parameter points, each {values: {name: value}, samples: {process: sample}}; [] = nominal only",
    )
    toys: int = Field(200, ge=10, le=100000, description="pseudo-experiments per point")
    max_bias: float = Field(0.2, gt=0, description="largest allowed |mean bias| of the POI, in units of its error")
    reference: Literal["truth", "exact"] = Field(
        "truth",
        description="truth: bias = <mu_hat> - mu_true; exact: <mu_hat - mu_hat_exact> on the same pseudo-data "
        "(needs the model's truth; cancels the pools' and the toys' noise)",
    )
    seed: int = Field(0, description="seed of the pseudo-experiments")
    poi: str = Field("", description="parameter of interest (default: the model's first)")
