"""The ``fit`` stage's work: read the model and the samples, run every method, build the results document.

Each method's analysis is a ``MethodTask`` (plain JSON-able settings) evaluated by ``analyse_method`` on the
model and its tables. ``run_fit`` evaluates them in this process unless it is given an ``analyser``: a fit
service (``nsbiflow.service.remote_fit``) evaluates the same tasks with the same function on its warm
workers, so the results document is the same either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.model import plots as draw
from nsbiflow.physics.model.analysis import analyse
from nsbiflow.physics.model.data import Table, read_samples, require
from nsbiflow.physics.model.histogram import (
    DISCRIMINANT,
    Interpolation,
    binned_model,
    default_observable,
    discriminant_tables,
    to_pyhf,
)
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.model.methods import ALL_METHODS
from nsbiflow.physics.model.results import Results, summary
from nsbiflow.physics.model.spec import Asimov, Counts, Model, UnbinnedRegion


def _closure(diagnostics: Sequence[Path]) -> dict[str, Any]:
    closure: dict[str, Any] = {}
    for report in diagnostics:
        path = report / "metrics.json"
        if not path.exists():
            raise StageError(f"fit: diagnostics {report} has no metrics.json; bind calibrate's report")
        m = json.loads(path.read_text())
        closure[m["label"]] = {k: m[k] for k in ("max_chi2_ndf", "normalisation", "passed", "members", "mean_spread")}
        closure[m["label"]]["ece"] = m["calibration"]["ece"]
        if m.get("ratio_closure"):
            closure[m["label"]]["ratio_closure_z"] = m["ratio_closure"]["z"]
        closure[m["label"]]["advisory_failures"] = len(m.get("advisory_failures", []))
        if m.get("two_sample"):
            closure[m["label"]]["two_sample_auc"] = m["two_sample"]["auc"]
            closure[m["label"]]["two_sample_z"] = m["two_sample"]["z"]
    return closure


def _support_info(model: Model, tables: dict[str, Table]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for name, region in model.regions.items():
        if isinstance(region, UnbinnedRegion) and isinstance(region.data, str) and region.data in tables:
            inside = tables[region.data].in_support
            info[name] = {"observed_in_support": int(inside.sum()), "observed_outside_support": int((~inside).sum())}
        if isinstance(region, UnbinnedRegion):
            # every process's held-out sample (and the reference): the weighted fraction outside the support
            samples = {p.sample for p in region.processes.values()} | {region.reference}
            info.setdefault(name, {})["outside_fraction"] = {
                s: float(1 - np.average(tables[s].in_support, weights=np.abs(tables[s].weights)))
                for s in sorted(samples)
                if s in tables and len(tables[s]) and np.abs(tables[s].weights).sum() > 0
            }
    return info


@dataclass(frozen=True)
class MethodTask:
    """One method's analysis: what it needs besides the model and the tables (JSON-able)."""

    method: str
    """exact, nsbi, discriminant or histogram"""
    analyse: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of ``analyse`` (n_scan, scan_2d, n_scan_2d, with_cls, with_impacts)"""
    truth_config: dict[str, Any] = field(default_factory=dict)
    """exact: merged over the model's truth.config"""
    observable: str | None = None
    """histogram: the observable every unbinned region is binned in"""
    hist_bins: int = 20
    """histogram, discriminant: quantile bins"""
    hist_interpolation: str = "code4"
    """histogram, discriminant: the shape systematics' interpolation (code4: the NSBI convention; code4p: pyhf's)"""
    discriminant_null: dict[str, float] = field(default_factory=dict)
    """discriminant: the parameter point of the denominator of D = ln p(x|alt) / p(x|null)"""
    discriminant_alt: dict[str, float] = field(default_factory=dict)
    """discriminant: the parameter point of the numerator"""

    def as_dict(self) -> dict[str, Any]:
        """The task as plain data (what travels to a fit service)."""
        return asdict(self)


Analyser = Callable[[list[MethodTask]], Mapping[str, Mapping[str, Any]]]
"""Evaluates tasks: method -> ``analyse_method``'s answer."""


def analyse_method(model: Model, tables: Mapping[str, Table], task: MethodTask) -> dict[str, Any]:
    """One method's result; for the histogram method also its pyhf workspace (``None`` and why, if none).

    A method that cannot run on these samples answers ``{"skipped": reason}`` instead.
    """
    scan_2d = task.analyse.get("scan_2d")
    options = {**task.analyse, "scan_2d": tuple(scan_2d) if scan_2d else None}
    samples = dict(tables)
    workspace: dict[str, Any] | None = None
    note = ""
    if task.method == "exact":
        from nsbiflow.physics.truth import truth_from_spec

        if model.truth is None:
            raise StageError("fit: the exact method needs a model with a truth (simulator)")
        truth = truth_from_spec(model.truth.simulator, {**model.truth.config, **task.truth_config})
        result = analyse(Likelihood(model, samples, "exact", truth), **options)
    elif task.method == "nsbi":
        result = analyse(Likelihood(model, samples, "nsbi"), **options)
    elif task.method == "discriminant":
        try:
            with_d = discriminant_tables(model, samples, task.discriminant_null, task.discriminant_alt)
        except StageError as error:  # a process ratio not evaluated on some sample: the other methods still run
            return {"skipped": f"{error} (the discriminant needs every process ratio on every sample)"}
        interpolation = cast(Interpolation, task.hist_interpolation)
        binned = binned_model(model, DISCRIMINANT, task.hist_bins, interpolation, variations="reweighted")
        result = analyse(Likelihood(binned, with_d, "nsbi"), **options)
    elif task.method == "histogram" and task.observable is not None:
        interpolation = cast(Interpolation, task.hist_interpolation)
        hist = Likelihood(binned_model(model, task.observable, task.hist_bins, interpolation), samples, "nsbi")
        result = analyse(hist, **options)
        workspace, note = to_pyhf(hist)
        if workspace and interpolation == "code4":
            note = (
                "the fit interpolated the histogram's shape systematics with multiplicative code 4 (the NSBI "
                "convention); pyhf's histosys is additive (code 4p), so pyhf on this workspace differs slightly"
            )
    else:
        raise StageError(f"fit: unknown method {task.method!r} (or a histogram without an observable)")
    return {"result": result, "workspace": workspace, "workspace_note": note}


def _local(model: Model, tables: Mapping[str, Table]) -> Analyser:
    return lambda tasks: {task.method: analyse_method(model, tables, task) for task in tasks}


def run_fit(
    model_path: Path,
    ratios: Sequence[Path],
    events: Sequence[Path],
    diagnostics: Sequence[Path],
    plots: Path,
    methods: Sequence[str],
    truth_config: dict[str, Any],
    n_scan: int,
    scan_2d: Sequence[str],
    n_scan_2d: int,
    hist_observable: str,
    hist_bins: int,
    impacts: bool,
    cls: bool,
    injected: dict[str, float],
    hist_interpolation: Interpolation = "code4",
    discriminant_null: dict[str, float] | None = None,
    discriminant_alt: dict[str, float] | None = None,
    analyser: Analyser | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Results document and pyhf workspace; plots are written into ``plots``.

    ``analyser`` evaluates the methods' tasks (default: here, one after the other).
    """
    model = load_model(model_path)
    if not ratios and not events:
        raise StageError("fit: no samples: bind infer's ratios (and/or raw events for binned regions)")
    tables, info = read_samples(ratios, events)
    require(tables, model.samples(), "fit")
    for name in injected:
        if name not in model.parameters:
            raise StageError(f"fit: injected parameter {name!r} is not a parameter of the model")
    pair = (scan_2d[0], scan_2d[1]) if scan_2d else None
    for name in scan_2d:
        if name not in model.pois():
            raise StageError(f"fit: scan_2d parameter {name!r} is not a parameter of interest ({model.pois()})")
    options: dict[str, Any] = {
        "n_scan": n_scan,
        "scan_2d": pair,
        "n_scan_2d": n_scan_2d,
        "with_cls": cls,
        "with_impacts": impacts,
    }
    skipped: dict[str, str] = {}
    tasks: list[MethodTask] = []
    observable = None
    for method in methods:
        if method == "exact":
            if model.truth is None:
                skipped["exact"] = "the model declares no truth (simulator)"
                continue
            tasks.append(MethodTask("exact", options, truth_config=truth_config))
        elif method == "nsbi":
            tasks.append(MethodTask("nsbi", options))
        elif method == "discriminant":
            pois = model.pois()
            null = {p: 0.0 for p in pois} | dict(discriminant_null or {})
            alt = {p: 1.0 for p in pois} | dict(discriminant_alt or {})
            for name in (*null, *alt):
                if name not in model.parameters:
                    raise StageError(f"fit: discriminant parameter {name!r} is not a parameter of the model")
            tasks.append(
                MethodTask(
                    "discriminant",
                    options,
                    hist_bins=hist_bins,
                    hist_interpolation=hist_interpolation,
                    discriminant_null=null,
                    discriminant_alt=alt,
                )
            )
        else:
            first = tables[next(iter(next(iter(model.regions.values())).processes.values())).sample]
            names = list(first.meta.get("observables", [])) or [c for c in first.columns if not c.startswith("logr_")]
            observable = default_observable(model, tables, names) if hist_observable == "auto" else hist_observable
            tasks.append(
                MethodTask(
                    "histogram",
                    options,
                    observable=observable,
                    hist_bins=hist_bins,
                    hist_interpolation=hist_interpolation,
                )
            )
    answers = (analyser or _local(model, tables))(tasks)
    results: dict[str, Any] = {}
    for task in tasks:
        answer = answers[task.method]
        if answer.get("skipped"):
            skipped[task.method] = str(answer["skipped"])
        else:
            results[task.method] = answer["result"]
    workspace: dict[str, Any] = {}
    workspace_note = ""
    if "histogram" in results:
        workspace = dict(answers["histogram"]["workspace"] or {})
        workspace_note = str(answers["histogram"]["workspace_note"])
    poi = model.pois()[0]
    truth_meta: dict[str, Any] = {}
    for region in model.regions.values():
        if isinstance(region.data, str) and region.data in tables:
            truth_meta = tables[region.data].meta.get("truth", {}) or {}
            break
    known = dict(injected)
    if not known and isinstance(truth_meta, dict):
        known = {k: float(v) for k, v in truth_meta.items() if k in model.parameters and isinstance(v, int | float)}
    document: dict[str, Any] = {
        "model": model.metadata.name,
        "poi": poi,
        "methods": {m: results.get(m) for m in ALL_METHODS if m in results or m in skipped},
        "skipped": skipped,
        "injected": known,
        "mu_injected": known.get(poi),
        "support": _support_info(model, tables),
        "closure": _closure(diagnostics),
        "ensemble_size": {k: int(v) for k, v in info.get("ensemble_size", {}).items()},
        "histogram_observable": observable,
        "workspace": workspace_note,
        "settings": {
            "methods": list(methods),
            "truth_config": truth_config,
            "n_scan": n_scan,
            "hist_bins": hist_bins,
            "hist_interpolation": hist_interpolation,
        },
    }
    for method, result in results.items():
        document[method] = summary(result, poi)
    if "exact" in results:
        for method in ALL_METHODS[1:]:
            if method in results:
                for key in ("width_68", "width_95"):
                    document["comparison"] = document.get("comparison", {})
                    document["comparison"][f"{method}_over_exact_{key}"] = (
                        document[method][key] / document["exact"][key]
                    )
    Results.model_validate(document)  # the schema is the contract
    _draw(plots, document, results, data_label(model))
    return document, workspace


def data_label(model: Model) -> str:
    """The data the fit sees, for plot titles: ``data 'observed'``, ``Asimov (mu=1)``, ``counts``."""
    labels: list[str] = []
    for region in model.regions.values():
        data = region.data
        if isinstance(data, Asimov):
            values = ", ".join(f"{k}={v:g}" for k, v in data.asimov.items())
            labels.append(f"Asimov ({values})" if values else "Asimov")
        elif isinstance(data, Counts):
            labels.append("counts in the model")
        else:
            labels.append(f"'{data}'")
    unique = list(dict.fromkeys(labels))
    return "data " + ", ".join(unique[:3]) + (", ..." if len(unique) > 3 else "")


def _draw(folder: Path, document: dict[str, Any], results: dict[str, Any], data: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    injected = document["injected"]
    for poi in next((r["pois"] for r in results.values() if r), {}):
        title = draw.hypothesis_title(document["model"], data, poi, injected)
        draw.scans(folder / f"scan_{poi}.png", results, poi, injected.get(poi), hypothesis=title)
    title = draw.hypothesis_title(document["model"], data, document["poi"], injected)
    for method, result in results.items():
        draw.pulls(folder / f"pulls_{method}.png", result, f"{method}: pulls and impacts", title)
        draw.correlations(folder / f"correlations_{method}.png", result, f"{method}: correlations", title)
        if result.get("scan_2d"):
            draw.scan_2d(folder / f"scan2d_{method}.png", result, method, title)
