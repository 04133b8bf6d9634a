"""``generate-offshell``: one ROOT file of the off-shell H*->ZZ toy (a process, a variation, or pseudo-data).

The files look like an analysis' own ntuples (a TTree ``events`` with one branch per observable and a
``weight`` branch), so the chain reads them through ``load-events`` exactly as it reads real ones.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.offshell import Offshell, OffshellConfig, simulate, truth_keys_by, write_root
from nsbiflow.stepcli.contract import StageIO, stage


class GenerateOffshellConfig(BaseModel):
    """Parameters of ``generate-offshell``."""

    model_config = ConfigDict(extra="forbid")

    process: str = Field(
        ...,
        min_length=1,
        description="ggH, ggZZ, interference, SBI, qqZZ, qqZZ_cr, reference, a variation "
        "<process>_<nuisance>_up|down, or observed / observed_cr (pseudo-data of the signal / control region)",
    )
    n_events: int = Field(40000, gt=0, description="simulated events written (load-events splits off the holdout)")
    seed: int = Field(0, description="master seed; every (process, seed) has its own random stream")
    stream: int = Field(
        0,
        ge=0,
        le=1000,
        description="an independent stream of the same (process, seed): 0 training and held-out events, 1 the "
        "calibration events of calibrate-ratio",
    )
    truth: dict[str, Any] = Field(
        default_factory=dict,
        description="OffshellConfig fields (yields, shapes, systematic sizes); {} = defaults. The step is passed "
        "only the fields its sample depends on (keys_by, from nsbiflow.physics.offshell.truth_keys_by), so a "
        "patch of one process's fields re-runs that process alone",
        json_schema_extra={"keys_by": cast(JsonValue, truth_keys_by())},  # pydantic types it as JSON
    )
    nuisances: dict[str, float] = Field(
        default_factory=dict, description="shape nuisance values (sigma units) of the sample or the pseudo-data"
    )
    mu: float = Field(1.0, ge=0, description="observed only: signal strength of the pseudo-data")
    gg_factor: float = Field(1.0, gt=0, description="observed only: gg yield factor (QCD scale, luminosity)")
    qq_factor: float = Field(1.0, gt=0, description="observed only: qqZZ yield factor (k_qqZZ, luminosity)")
    poisson: bool = Field(True, description="observed only: Poisson-fluctuate the yields (else round them)")


@stage("generate-offshell", outputs=("events",), config=GenerateOffshellConfig)
def generate_offshell(io: StageIO) -> None:
    """Simulate one sample of the off-shell toy into a ROOT file (per-event MC weights summing to its yield)."""
    cfg = io.config(GenerateOffshellConfig)
    try:
        toy = Offshell(OffshellConfig.model_validate(cfg.truth))
    except ValidationError as error:
        err = error.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise StageError(
            f"generate-offshell: parameter 'truth.{where}': {err['msg']} (got {err.get('input')!r})"
        ) from None
    except ValueError as error:
        raise StageError(f"generate-offshell: parameter 'truth': {error}") from None
    try:
        x, w = simulate(
            toy,
            cfg.process,
            cfg.n_events,
            cfg.seed,
            cfg.nuisances,
            cfg.mu,
            cfg.gg_factor,
            cfg.qq_factor,
            cfg.poisson,
            cfg.stream,
        )
    except ValueError as error:
        raise StageError(f"generate-offshell: {error}") from None
    write_root(io.output("events"), x, w)
