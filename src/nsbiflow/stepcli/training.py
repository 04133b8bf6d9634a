"""Stages that train networks: ``support``, ``train-ratio``, and ``gather-ensemble`` (merges chunks)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.configs import TrainConfig
from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.progress import Progress


class TrainRatioConfig(TrainConfig):
    """Parameters of ``train-ratio``: the physics ``TrainConfig`` plus what the stage itself needs."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("", description="ensemble label (default: the numerator's process)")
    parameters: list[str] = Field(
        default_factory=list,
        description="numerator columns that are model parameters: trains r(x | theta), the reference paired with "
        "values drawn from the numerator's; evaluate it at a point with calibrate's and infer's 'at'",
    )


class SupportConfig(BaseModel):
    """Parameters of ``support``."""

    model_config = ConfigDict(extra="forbid")

    max_ratio: float = Field(20.0, gt=1, description="out of support where p_pool / p_ref exceeds this")
    members: int = Field(2, gt=0)
    seed: int = 0
    hidden: list[int] = Field(default_factory=lambda: [32, 32])
    max_epochs: int = 30
    patience: int = 4
    max_events: int = Field(20000, gt=0, description="events used per sample")


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _parameters_for_reference(theta: Any, weights: Any, n: int, seed: int) -> Any:
    """Parameter values for the reference events, drawn from the numerator's (weighted) distribution.

    The reference does not depend on the parameters, so pairing its events with values drawn like the
    numerator's makes the classifier's optimum the parametrized ratio p(x | theta) / p_ref(x).
    """
    import numpy as np

    rng = np.random.default_rng([seed, 104729])
    w = np.abs(weights)
    uniform = bool(np.all(w == w[0]))
    rows = rng.integers(0, len(theta), n) if uniform else rng.choice(len(theta), n, p=w / w.sum())
    return theta[rows]


@stage("train-ratio", outputs=("ensemble",), config=TrainRatioConfig)
def train_ratio(io: StageIO) -> None:
    """Train a chunk of a density-ratio ensemble r = p_numerator / p_reference by classification."""
    import numpy as np

    from nsbiflow.physics.ensemble import save_members
    from nsbiflow.physics.events import read_events
    from nsbiflow.physics.mlp import MLPConfig
    from nsbiflow.physics.training import train_ensemble

    cfg = io.config(TrainRatioConfig)
    configure_threads()
    _seed_everything(cfg.seed)
    num = read_events(io.input("numerator"))
    missing = [p for p in cfg.parameters if p not in num.observables]
    if missing:
        raise StageError(
            f"train-ratio: parameter '{missing[0]}' is not a column of {io.input('numerator').name} "
            f"(columns: {', '.join(num.observables)}); generate the numerator with it or drop it from parameters"
        )
    observables = [o for o in num.observables if o not in cfg.parameters]
    parameters = sorted(set(cfg.parameters))  # input order = name order, as the manifest's sorted keys list them
    ref = read_events(io.input("reference"), observables)
    num_x = num.x[:, [num.observables.index(c) for c in (*observables, *parameters)]]
    ref_x, ranges = ref.x, {}
    if parameters:
        theta = num_x[:, len(observables) :]
        ref_x = np.column_stack([ref.x, _parameters_for_reference(theta, num.weights, len(ref), cfg.seed)])
        declared = num.meta.get("parameters") or {}  # the generator's range, else the sample's
        ranges = {
            p: [float(v) for v in declared.get(p, (theta[:, j].min(), theta[:, j].max()))]
            for j, p in enumerate(parameters)
        }
    label = cfg.label or num.process
    train_cfg = TrainConfig(**cfg.model_dump(exclude={"label", "parameters"}))
    with Progress(f"train-ratio {label} chunk {cfg.chunk}", unit="members") as bar:
        members, scaler = train_ensemble(num_x, ref_x, train_cfg, num.weights, ref.weights, progress=bar.update)
        for m in members:
            bar.log(f"  {m.name}: best epoch {m.info['best_epoch']}, holdout loss {m.info['holdout_loss']:.5f}")
    extra = {
        "numerator": num.process,
        "reference": ref.process,
        "observables": observables,
        "parameters": ranges,
        "n_numerator": len(num),
        "n_reference": len(ref),
        "config": train_cfg.model_dump(),
    }
    mlp = MLPConfig(n_inputs=num_x.shape[1], hidden=cfg.hidden, activation=cfg.activation)
    save_members(io.output("ensemble"), label, members, scaler, mlp, extra)


@stage("gather-ensemble", outputs=("ensemble",))
def gather_ensemble(io: StageIO) -> None:
    """Merge the chunk outputs of train-ratio (one --in chunks=DIR per chunk) into one collection."""
    from nsbiflow.physics.collection import gather

    counts = gather(io.input_list("chunks"), io.output("ensemble"))
    with Progress("gather-ensemble") as bar:
        bar.log("gathered " + ", ".join(f"{label}: {n} members" for label, n in sorted(counts.items())))


@stage("support", outputs=("support",), config=SupportConfig)
def support(io: StageIO) -> None:
    """Train the support classifier (pooled samples vs reference) and record its threshold."""
    import numpy as np

    from nsbiflow.physics.ensemble import save_members
    from nsbiflow.physics.events import read_events
    from nsbiflow.physics.mlp import MLPConfig
    from nsbiflow.physics.support import LABEL, SUPPORT_JSON, pool
    from nsbiflow.physics.training import train_ensemble

    cfg = io.config(SupportConfig)
    configure_threads()
    _seed_everything(cfg.seed)
    ref = read_events(io.input("reference"))
    bound = [read_events(p, ref.observables) for p in io.input_list("samples")]
    # the pool is what the reference must cover: a copy of the reference in it would only dilute the ratio
    # (a pool of the reference and three backgrounds turns max_ratio 6 into a background ratio of ~7.7)
    samples = [s for s in bound if s.process != ref.process]
    excluded = [s.process for s in bound if s.process == ref.process]
    if not samples:
        raise StageError(
            f"support: every sample bound to 'samples' is the reference ('{ref.process}'); bind the signal and "
            "background samples whose phase space the reference must cover"
        )
    rng = np.random.default_rng([cfg.seed, 31337])

    def cap(x: Any, w: Any) -> tuple[Any, Any]:
        if len(x) <= cfg.max_events:
            return x, w
        idx = np.sort(rng.choice(len(x), cfg.max_events, replace=False))
        return x[idx], w[idx]

    x_pool, w_pool = pool([cap(s.x, s.weights) for s in samples])
    x_ref, w_ref = cap(ref.x, ref.weights)
    train_cfg = TrainConfig(
        members=cfg.members,
        seed=cfg.seed,
        hidden=cfg.hidden,
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        bootstrap=False,
    )
    with Progress("support", unit="members") as bar:
        members, scaler = train_ensemble(x_pool, x_ref, train_cfg, w_pool, w_ref, progress=bar.update)
        out = io.output("support")
        mlp = MLPConfig(n_inputs=len(ref.observables), hidden=cfg.hidden)
        extra = {
            "numerator": "pool",
            "reference": ref.process,
            "observables": ref.observables,
            "samples": [s.process for s in samples],
        }
        save_members(out, LABEL, members, scaler, mlp, extra)
        from nsbiflow.physics.support import SupportModel, outside_fraction

        (out / SUPPORT_JSON).write_text(json.dumps({"max_ratio": cfg.max_ratio}, indent=2) + "\n")
        model = SupportModel.load(out)
        fractions = {s.process: outside_fraction(model, s.x, s.weights) for s in (*samples, ref)}
        record = {
            "max_ratio": cfg.max_ratio,
            "pool": [s.process for s in samples],
            "excluded_from_pool": excluded,
            "outside_fraction": fractions,
        }
        (out / SUPPORT_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if excluded:
            bar.log(f"the reference '{ref.process}' was bound among the samples: left out of the pool")
        bar.log("outside the support: " + ", ".join(f"{k} {v:.2%}" for k, v in fractions.items()))
