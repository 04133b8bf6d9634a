"""Stages that produce events: ``generate`` (toy simulation), ``generate-data`` (a pseudo-experiment),
``load-events`` (external Parquet or ROOT files)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.contract import StageIO, stage

SIGNAL_FIELDS = ("signal_mean", "signal_width", "signal_correlation", "signal_broad_fraction")


class GenerateConfig(BaseModel):
    """Parameters of ``generate``."""

    model_config = ConfigDict(extra="forbid")

    process: Literal["signal", "background", "background_up", "background_down", "reference"] = Field(
        description="which sample to simulate"
    )
    n_events: int = Field(20000, gt=0, description="training events")
    n_holdout: int = Field(20000, ge=0, description="held-out events (diagnostics, templates, Asimov)")
    n_calibration: int = Field(
        0, ge=0, description="calibration events (calibrate-ratio's sample, independent of training and held-out)"
    )
    seed: int = 0
    signal_mean: float = Field(1.0, description="displacement of the signal core (signal only)")
    signal_width: float = Field(0.7, description="width of the signal core (signal only)")
    signal_mean_range: list[float] = Field(
        default_factory=list,
        description="signal only: [low, high] draws signal_mean per event, uniformly, and writes it as a column "
        "of that name (the training sample of a signal ratio parametrized in signal_mean); empty: all at "
        "signal_mean",
    )

    @field_validator("signal_mean_range")
    @classmethod
    def _range(cls, value: list[float]) -> list[float]:
        if value and (len(value) != 2 or not value[0] < value[1]):
            raise ValueError("expected [low, high] with low < high")
        return value


class DataConfig(BaseModel):
    """Parameters of ``generate-data``."""

    model_config = ConfigDict(extra="forbid")

    mu: float = Field(1.0, ge=0, description="injected signal strength")
    nu_s: float = Field(100.0, gt=0, description="expected signal yield at mu = 1")
    nu_b: float = Field(1000.0, gt=0, description="expected background yield")
    alpha: float = Field(0.0, description="true detector-scale nuisance parameter")
    seed: int = 0
    signal_mean: float = Field(1.0, description="the true signal model (nature's), not the hypothesis")
    signal_width: float = 0.7
    poisson: bool = Field(True, description="Poisson-fluctuate the yields (else round the expectations)")


class LoadConfig(BaseModel):
    """Parameters of ``load-events``."""

    model_config = ConfigDict(extra="forbid")

    process: str = Field(
        ..., min_length=1, description="process name the chain knows the sample by (signal, background, observed, ...)"
    )
    observables: list[str] = Field(..., min_length=1, description="column names of the observables, in order")
    tree: str = Field("", description="TTree name (ROOT files; default the only tree)")
    weight_column: str = Field("", description="per-event weight column (default weights of 1)")
    holdout_fraction: float = Field(0.5, ge=0, lt=1, description="fraction of events held out (0 for observed data)")
    seed: int = 0


def sample_rng(seed: int, process: str, stream: int) -> Any:
    """The random generator of one (seed, process, purpose) stream (the stage programs' one source of them)."""
    import numpy as np

    # an independent stream per (process, purpose): changing one sample never changes another's bytes
    return np.random.default_rng([seed, zlib.crc32(process.encode()), stream])


def _toy_meta(model: Any, process: str) -> dict[str, Any]:
    toy = model.model_dump()
    if process != "signal":
        toy = {k: v for k, v in toy.items() if k not in SIGNAL_FIELDS}
    return toy


# ``calibration`` (steps/generate/step.yaml) is written whenever it is bound, so direct calls may leave it out
@stage("generate", outputs=("events", "holdout"), config=GenerateConfig)
def generate(io: StageIO) -> None:
    """Simulate one process of the toy (training, held-out and calibration events) with exact densities."""
    import numpy as np

    from nsbiflow.physics.events import Events, write_events
    from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel

    cfg = io.config(GenerateConfig)
    model = ToyModel(signal_mean=cfg.signal_mean, signal_width=cfg.signal_width)
    meta: dict[str, Any] = {
        "process": cfg.process,
        "seed": cfg.seed,
        "generator": "toy",
        "toy": _toy_meta(model, cfg.process),
    }
    if cfg.signal_mean_range:
        if cfg.process != "signal":
            raise StageError(f"generate: signal_mean_range applies to the signal only, not to '{cfg.process}'")
        low, high = cfg.signal_mean_range
        meta["toy"].pop("signal_mean")  # it varies per event: the column of that name holds it
        meta["parameters"] = {"signal_mean": [low, high]}
    splits = [("events", cfg.n_events, 0), ("holdout", cfg.n_holdout, 1)]
    if cfg.n_calibration or "calibration" in io.outputs:  # stream 2 is load-events' split
        splits.append(("calibration", cfg.n_calibration, 3))
    for name, n, stream in splits:
        rng = sample_rng(cfg.seed, cfg.process, stream)
        split = {**meta, "split": name}
        if cfg.signal_mean_range:
            x, means = model.sample_signal_family(n, rng, low, high)
            events = Events(np.column_stack([x, means]), np.ones(n), [*OBSERVABLES, "signal_mean"], split)
        else:
            events = Events(model.sample(cfg.process, n, rng), np.ones(n), list(OBSERVABLES), split)
        write_events(events, io.output(name))


@stage("generate-data", outputs=("events",), config=DataConfig)
def generate_data(io: StageIO) -> None:
    """A pseudo-experiment: signal at strength ``mu`` plus background at ``alpha``."""
    import numpy as np

    from nsbiflow.physics.events import Events, write_events
    from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel

    cfg = io.config(DataConfig)
    model = ToyModel(signal_mean=cfg.signal_mean, signal_width=cfg.signal_width)
    rng = sample_rng(cfg.seed, "observed", 0)
    ns = int(rng.poisson(cfg.mu * cfg.nu_s)) if cfg.poisson else round(cfg.mu * cfg.nu_s)
    nb = int(rng.poisson(cfg.nu_b)) if cfg.poisson else round(cfg.nu_b)
    x = model.sample_mixture(ns, nb, rng, alpha=cfg.alpha)
    truth = {"mu": cfg.mu, "alpha": cfg.alpha, "n_signal": ns, "n_background": nb, **model.model_dump()}
    meta = {
        "process": "observed",
        "seed": cfg.seed,
        "generator": "toy",
        "truth": truth,
        "toy": _toy_meta(model, "observed"),
    }
    write_events(Events(x, np.ones(len(x)), list(OBSERVABLES), meta), io.output("events"))


@stage("load-events", outputs=("events", "holdout"), config=LoadConfig)
def load_events(io: StageIO) -> None:
    """Read external events (Parquet, or a ROOT TTree with uproot), validate them, split off a holdout."""
    from nsbiflow.physics.events import Events, load_external, write_events

    cfg = io.config(LoadConfig)
    source = io.input("source")
    ev = load_external(source, cfg.observables, tree=cfg.tree or None, weight_column=cfg.weight_column or None)
    order = sample_rng(cfg.seed, cfg.process, 2).permutation(len(ev))
    n_hold = round(cfg.holdout_fraction * len(ev))
    meta = {"process": cfg.process, "seed": cfg.seed, "generator": "external", "source": Path(source).name}
    for name, idx in (("events", order[n_hold:]), ("holdout", order[:n_hold])):
        idx.sort()
        write_events(Events(ev.x[idx], ev.weights[idx], ev.observables, {**meta, "split": name}), io.output(name))
