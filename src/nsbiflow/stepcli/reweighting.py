"""Stages of the reweighting chain: ``generate-objects`` (the truth-known toy of object sets),
``load-objects`` (jagged ROOT/Parquet input), ``train-reweighter`` (Deep Sets or BDT), ``apply-reweighter``
(a weight column and a varied sample for the nominal) and ``reweight-closure`` (diagnostics and gates)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.reweight.config import BDTConfig, ClosureTolerances, DeepSetsConfig, EnsembleConfig, ToyParameters
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.generate import sample_rng
from nsbiflow.stepcli.progress import Progress

WEIGHTS_KEY = "reweighting"


class GenerateObjectsConfig(ToyParameters):
    """Parameters of ``generate-objects``: the two configurations (``physics.reweight.config.ToyParameters``), which one
    to simulate, and how many events."""

    configuration: Literal["a", "b"] = Field(..., description="which configuration to simulate")
    process: str = Field("", description="sample name; default: mc_a or mc_b")
    n_events: int = Field(20000, gt=0, description="training events")
    n_holdout: int = Field(20000, ge=0, description="held-out events (closure, application)")
    seed: int = Field(0, description="master seed (each configuration and split has its own stream)")


class LoadObjectsConfig(BaseModel):
    """Parameters of ``load-objects``."""

    model_config = ConfigDict(extra="forbid")

    process: str = Field(..., min_length=1, description="sample name")
    collection: str = Field(..., min_length=1, description="object collection: branches/columns <collection>_<field>")
    fields: list[str] = Field(..., min_length=1, description="object fields, e.g. [pt, eta, phi]")
    observables: list[str] = Field(default_factory=list, description="flat event-level columns to keep")
    tree: str = Field("", description="TTree name of a ROOT file (default: its only tree)")
    weight_column: str = Field("", description="per-event weight column (default: unit weights)")
    holdout_fraction: float = Field(0.5, ge=0, lt=1, description="fraction of the events held out")
    seed: int = Field(0, description="seeds the holdout split")


class _TrainReweighterFields(DeepSetsConfig):
    """What ``train-reweighter`` reads besides the models' settings."""

    method: Literal["deepsets", "bdt"] = Field("deepsets", description="Deep Sets on the objects, or a BDT")
    label: str = Field("", description="reweighter name; default: <source>_to_<target>")
    fields: list[str] = Field(default_factory=list, description="deepsets: object fields (default: all)")
    observables: list[str] = Field(
        default_factory=list,
        description="event-level observables: bdt inputs (default: every flat column of the source); "
        "deepsets: concatenated to the sum (default: none)",
    )
    normalisation: Literal["yield", "shape"] = Field(
        "yield", description="calibrate sum(w) over the source to the target's yield, or to the source's (shape only)"
    )


def _prefixed(model: type[BaseModel], prefix: str) -> dict[str, Any]:
    """The fields ``model`` declares beyond the ensemble's, renamed ``<prefix>_<name>`` (types, defaults, bounds
    and descriptions taken from ``model``: it stays the one owner of them)."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in EnsembleConfig.model_fields:
            continue
        renamed = copy.copy(info)
        renamed.description = f"{prefix}: {info.description or name}"
        fields[f"{prefix}_{name}"] = (info.annotation, renamed)
    return fields


TrainReweighterConfig = create_model(
    "TrainReweighterConfig",
    __base__=_TrainReweighterFields,
    __doc__="Parameters of ``train-reweighter``: the ensemble and Deep-Sets settings (``DeepSetsConfig``), the "
    "BDT's (``BDTConfig``, prefixed ``bdt_``), and what to read.",
    **_prefixed(BDTConfig, "bdt"),
)


class ApplyReweighterConfig(BaseModel):
    """Parameters of ``apply-reweighter``."""

    model_config = ConfigDict(extra="forbid")

    process: str = Field("", description="name of the varied sample; default: <nominal process>_<label>")
    power: float = Field(1.0, description="weight = nominal x w^power: 1 the learned variation, -1 its mirror")
    keep_objects: bool = Field(True, description="copy the object list columns into the varied sample")


class ClosureConfig(ClosureTolerances):
    """Parameters of ``reweight-closure``: the tolerances (``ClosureTolerances``) and the diagnostics' settings."""

    label: str = Field("", description="name in messages and plots; default: the reweighter's label")
    n_bins: int = Field(20, ge=2, description="bins per projection (quantiles of the target)")
    classifier: bool = Field(True, description="run the classifier two-sample test")
    cv_folds: int = Field(3, ge=2, description="cross-validation folds of the classifier test")
    max_events: int = Field(10000, gt=0, description="events per sample in the classifier test")
    seed: int = Field(0, description="seeds the classifier test")
    gate: bool = Field(True, description="fail the stage when a diagnostic exceeds its tolerance")


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@stage("generate-objects", outputs=("events", "holdout"), config=GenerateObjectsConfig)
def generate_objects(io: StageIO) -> None:
    """Simulate events as sets of objects in configuration a or b of the truth-known toy (exact weights)."""
    from nsbiflow.physics.objects import write_object_events
    from nsbiflow.physics.reweight.toy import GENERATOR, ObjectToy

    cfg = io.config(GenerateObjectsConfig)
    toy = ObjectToy(**cfg.model_dump(include=set(ObjectToy.model_fields)))
    process = cfg.process or f"mc_{cfg.configuration}"
    meta = {
        "process": process,
        "seed": cfg.seed,
        "generator": GENERATOR,
        "configuration": cfg.configuration,
        "objects_toy": toy.model_dump(),
    }
    for name, n, stream in (("events", cfg.n_events, 0), ("holdout", cfg.n_holdout, 1)):
        ev = toy.sample(cfg.configuration, n, sample_rng(cfg.seed, f"objects-{cfg.configuration}", stream))
        ev.events.meta = {**meta, "split": name}
        write_object_events(ev, io.output(name))


@stage("load-objects", outputs=("events", "holdout"), config=LoadObjectsConfig)
def load_objects(io: StageIO) -> None:
    """Read external events with an object collection (ROOT jagged branches or Parquet list columns)."""
    from nsbiflow.physics.objects import load_objects as load
    from nsbiflow.physics.objects import write_object_events

    cfg = io.config(LoadObjectsConfig)
    source = io.input("source")
    ev = load(source, cfg.collection, cfg.fields, cfg.observables, cfg.tree or None, cfg.weight_column or None)
    order = sample_rng(cfg.seed, cfg.process, 2).permutation(len(ev))
    n_hold = round(cfg.holdout_fraction * len(ev))
    meta = {"process": cfg.process, "seed": cfg.seed, "generator": "external", "source": Path(source).name}
    for name, idx in (("events", order[n_hold:]), ("holdout", order[:n_hold])):
        idx.sort()
        part = ev.select(idx)
        part.events.meta = {**meta, "split": name}
        write_object_events(part, io.output(name))


@stage("train-reweighter", outputs=("reweighter",), config=TrainReweighterConfig)
def train_reweighter(io: StageIO) -> None:
    """Learn per-event weights w = p_target / p_source (Deep Sets on the objects, or a BDT), calibrated."""
    from nsbiflow.physics.reweight.model import read_sample
    from nsbiflow.physics.reweight.train import train_reweighter as train

    cfg = io.config(TrainReweighterConfig)
    common = {"members": cfg.members, "seed": cfg.seed, "folds": cfg.folds, "bootstrap": cfg.bootstrap}
    source = read_sample(io.input("source"))
    target = read_sample(io.input("target"))
    model: DeepSetsConfig | BDTConfig
    if cfg.method == "deepsets":
        _seed(cfg.seed)
        configure_threads()
        model = DeepSetsConfig(**common, **cfg.model_dump(include=set(DeepSetsConfig.model_fields) - set(common)))
        fields, observables = cfg.fields or source.field_names, cfg.observables
    else:
        bdt = {k.removeprefix("bdt_"): v for k, v in cfg.model_dump().items() if k.startswith("bdt_")}
        model = BDTConfig(**common, **bdt)
        fields, observables = [], cfg.observables or source.events.observables
    with Progress(f"train-reweighter {cfg.method}") as bar:
        rw = train(
            source,
            target,
            model,
            io.output("reweighter"),
            fields=fields,
            observables=observables,
            normalisation=cfg.normalisation,
            label=cfg.label,
            progress=bar.update,
        )
        bar.log(
            f"{rw.manifest['label']}: {len(rw.manifest['members'])} {cfg.method} members, "
            f"calibration scale {rw.manifest['calibration']['scale']:.4f}"
        )


def _weights_table(values: Any, spread: Any, meta: dict[str, Any]) -> Any:
    import pyarrow as pa

    from nsbiflow.physics.events import METADATA_KEY

    table = pa.table({"w": pa.array(values), "log_w_std": pa.array(spread)})
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


@stage("apply-reweighter", outputs=("events", "weights"), config=ApplyReweighterConfig)
def apply_reweighter(io: StageIO) -> None:
    """Weight the nominal sample: a varied sample (weight = nominal x w^power) and the bare weight column."""
    import numpy as np
    import pyarrow.parquet as pq

    from nsbiflow.physics.events import Events, write_events
    from nsbiflow.physics.objects import write_object_events
    from nsbiflow.physics.reweight.model import Reweighter, read_sample

    cfg = io.config(ApplyReweighterConfig)
    rw = Reweighter.load(io.input("reweighter"))
    configure_threads()
    path = io.input("events")
    nominal = read_sample(path)
    log_w, spread = rw.log_weights(nominal, path.name)
    w = np.exp(cfg.power * log_w)
    label = str(rw.manifest["label"])
    process = cfg.process or f"{nominal.events.process}_{label}"
    info = {
        "reweighter": label,
        "method": rw.method,
        "nominal": nominal.events.process,
        "power": cfg.power,
        "events": len(nominal),
        "trained": rw.trained,
    }
    meta = {**nominal.events.meta, "process": process, WEIGHTS_KEY: info}
    varied = Events(nominal.events.x, nominal.weights * w, nominal.events.observables, meta)
    if cfg.keep_objects and nominal.collection:
        nominal.events = varied
        write_object_events(nominal, io.output("events"))
    else:
        write_events(varied, io.output("events"))
    table = _weights_table(w, np.abs(cfg.power) * spread, {"process": process, WEIGHTS_KEY: info})
    pq.write_table(table, str(io.output("weights")), compression="zstd", use_dictionary=False)
    with Progress("apply-reweighter") as bar:
        bar.log(f"{process}: {len(w)} events, mean w {np.average(w, weights=nominal.weights):.4f}")


def _read_weights(path: Path, n: int) -> tuple[Any, dict[str, Any]]:
    import numpy as np
    import pyarrow.parquet as pq

    from nsbiflow.physics.events import read_metadata

    meta = read_metadata(path)
    try:
        table = pq.read_table(str(path), columns=["w"])
    except Exception as exc:  # pyarrow raises several kinds for a missing column or a foreign file
        raise StageError(
            f"{path.name}: no readable weight column 'w' ({exc}); bind apply-reweighter's weights"
        ) from None
    w = table.column("w").to_numpy().astype(np.float64)
    if len(w) != n:
        raise StageError(f"{path.name}: {len(w)} weights for {n} source events; apply the reweighter to this source")
    if not np.all(np.isfinite(w)):
        raise StageError(f"{path.name}: {int(np.sum(~np.isfinite(w)))} weights are not finite")
    return w, dict(meta.get(WEIGHTS_KEY) or {})


@stage("reweight-closure", outputs=("report",), config=ClosureConfig)
def reweight_closure(io: StageIO) -> None:
    """Reweighted source vs target in every projection, a classifier test, the weights; fails beyond tolerance."""
    import numpy as np

    from nsbiflow.physics.reweight import closure as diag
    from nsbiflow.physics.reweight import plots
    from nsbiflow.physics.reweight.model import Reweighter, read_sample
    from nsbiflow.physics.reweight.toy import toy_of

    cfg = io.config(ClosureConfig)
    tol = diag.ClosureTolerances(**cfg.model_dump(include=set(diag.ClosureTolerances.model_fields)))
    source_path, target_path = io.input("source"), io.input("target")
    source, target = read_sample(source_path), read_sample(target_path)
    weights_path, directory = io.optional_input("weights"), io.optional_input("reweighter")
    if weights_path is None and directory is None:
        raise StageError("reweight-closure: bind 'reweighter' or 'weights' (apply-reweighter's weights of the source)")
    spread = None
    if weights_path is not None:
        w, info = _read_weights(weights_path, len(source))
        label, trained = cfg.label or str(info.get("reweighter", weights_path.stem)), list(info.get("trained", []))
    if directory is not None:
        rw = Reweighter.load(directory)
        configure_threads()
        if weights_path is None:
            log_w, spread = rw.log_weights(source, source_path.name)
            w = np.exp(log_w)
        label, trained = cfg.label or str(rw.manifest["label"]), rw.trained
    classifier = {"folds": cfg.cv_folds, "seed": cfg.seed, "max_events": cfg.max_events} if cfg.classifier else None
    with Progress(f"reweight-closure {label}") as bar:
        metrics = diag.closure(source, w, target, trained, cfg.n_bins, classifier)
        metrics |= {"label": label, "source": source.events.process, "target": target.events.process}
        if spread is not None:
            metrics["mean_log_w_spread"] = float(np.average(spread, weights=source.weights))
        toy = toy_of(source.events.meta)
        log_w_exact = None
        if toy is not None and source.events.meta.get("configuration") == "a" and "e" in source.fields:
            log_w_exact = toy.exact_log_weight(source)
            metrics["truth"] = diag.truth_comparison(np.log(w), log_w_exact, source.weights)
            exact = diag.closure(source, np.exp(log_w_exact), target, trained, cfg.n_bins, None)
            metrics["truth"]["exact_chi2_ndf"] = {k: v["chi2_ndf"] for k, v in exact["projections"].items()}
        failures = diag.check(metrics, tol, label)
        metrics |= {"tolerances": tol.model_dump(), "passed": not failures, "failures": failures}
        out = io.output("report")
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        plots.closure(out, label, metrics["projections"], target.events.process)
        plots.weights(out / f"weights_{label}.png", label, np.log(w), log_w_exact)
        worst = max(metrics["projections"].items(), key=lambda kv: kv[1]["chi2_ndf"])
        auc = metrics.get("classifier", {}).get("auc", float("nan"))
        truth = f", RMS log w error {metrics['truth']['rms_log_error']:.4f}" if "truth" in metrics else ""
        bar.log(f"{label}: worst chi2/ndf {worst[1]['chi2_ndf']:.2f} ({worst[0]}), AUC {auc:.4f}{truth}")
    if failures and cfg.gate:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise StageError(
            f"reweight-closure: {failures[0]}{more}; retrain (more events or epochs) or loosen the tolerance"
        )
