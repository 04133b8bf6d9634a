"""The ``fit`` stage's work: read the model and the samples, run every method, build the results document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from nsbiflow.physics.model.results import Results, summary
from nsbiflow.physics.model.spec import Model, UnbinnedRegion

ALL_METHODS = ("exact", "nsbi", "discriminant", "histogram")


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
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Results document and pyhf workspace; plots are written into ``plots``."""
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
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    workspace: dict[str, Any] = {}
    workspace_note = ""
    observable = None
    for method in methods:
        if method == "exact":
            if model.truth is None:
                skipped["exact"] = "the model declares no truth (simulator)"
                continue
            from nsbiflow.physics.truth import truth_from_spec

            truth = truth_from_spec(model.truth.simulator, {**model.truth.config, **truth_config})
            results["exact"] = analyse(Likelihood(model, tables, "exact", truth), **options)
        elif method == "nsbi":
            results["nsbi"] = analyse(Likelihood(model, tables, "nsbi"), **options)
        elif method == "discriminant":
            pois = model.pois()
            null = {p: 0.0 for p in pois} | dict(discriminant_null or {})
            alt = {p: 1.0 for p in pois} | dict(discriminant_alt or {})
            for name in (*null, *alt):
                if name not in model.parameters:
                    raise StageError(f"fit: discriminant parameter {name!r} is not a parameter of the model")
            try:
                with_d = discriminant_tables(model, tables, null, alt)
            except StageError as error:  # a process ratio not evaluated on some sample: the others still run
                skipped["discriminant"] = f"{error} (the discriminant needs every process ratio on every sample)"
                continue
            binned = binned_model(model, DISCRIMINANT, hist_bins, hist_interpolation, variations="reweighted")
            results["discriminant"] = analyse(Likelihood(binned, with_d, "nsbi"), **options)
        else:
            first = tables[next(iter(next(iter(model.regions.values())).processes.values())).sample]
            names = list(first.meta.get("observables", [])) or [c for c in first.columns if not c.startswith("logr_")]
            observable = default_observable(model, tables, names) if hist_observable == "auto" else hist_observable
            hist = Likelihood(binned_model(model, observable, hist_bins, hist_interpolation), tables, "nsbi")
            results["histogram"] = analyse(hist, **options)
            spec, workspace_note = to_pyhf(hist)
            workspace = spec or {}
            if spec and hist_interpolation == "code4":
                workspace_note = (
                    "the fit interpolated the histogram's shape systematics with multiplicative code 4 (the NSBI "
                    "convention); pyhf's histosys is additive (code 4p), so pyhf on this workspace differs slightly"
                )
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
    _draw(plots, document, results)
    return document, workspace


def _draw(folder: Path, document: dict[str, Any], results: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for poi in next((r["pois"] for r in results.values() if r), {}):
        draw.scans(folder / f"scan_{poi}.png", results, poi, document["injected"].get(poi))
    for method, result in results.items():
        draw.pulls(folder / f"pulls_{method}.png", result, f"{method}: pulls and impacts")
        draw.correlations(folder / f"correlations_{method}.png", result, f"{method}: correlations")
        if result.get("scan_2d"):
            draw.scan_2d(folder / f"scan2d_{method}.png", result, method)
