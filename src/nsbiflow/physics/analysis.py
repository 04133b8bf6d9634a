"""The limits stage's analysis: exact, NSBI and histogram likelihoods of one observed dataset.

Inputs are the per-event tables written by ``infer`` for the observed data and for held-out simulated
samples (signal, background, background_up, background_down), which provide the support efficiencies,
the binned templates and the background-only Asimov dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from nsbiflow.physics import histfactory
from nsbiflow.physics.configs import LimitsConfig
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import read_metadata
from nsbiflow.physics.likelihood import BinnedRegion, Code4, UnbinnedLikelihood
from nsbiflow.physics.limits import ProfileLikelihood, Result, analyse

FloatArray = NDArray[np.float64]
SAMPLES = ("signal", "background", "background_up", "background_down")


@dataclass
class Table:
    """Columns of one infer output file."""

    name: str
    columns: dict[str, FloatArray]
    meta: dict[str, Any]

    @property
    def weights(self) -> FloatArray:
        """Per-event weights."""
        return self.columns["weight"]

    def col(self, name: str) -> FloatArray:
        """A column, or a one-line error naming the file and the column."""
        if name not in self.columns:
            raise StageError(f"{self.name}: column '{name}' missing; re-run infer with the '{name[5:]}' ensemble")
        return self.columns[name]


def read_table(path: Path) -> Table:
    """Read an infer output file into memory (the limits stage needs all events at once)."""
    table = pq.read_table(str(path))
    cols = {n: table.column(n).to_numpy().astype(np.float64) for n in table.column_names if n != "in_support"}
    cols["in_support"] = (
        table.column("in_support").to_numpy().astype(bool)
        if "in_support" in table.column_names
        else np.ones(table.num_rows, bool)
    )
    return Table(path.name, cols, read_metadata(path))


def read_ratio_folders(folders: Sequence[Path]) -> tuple[dict[str, Table], dict[str, Any]]:
    """The per-process tables of one or several ``infer`` outputs, merged, and their merged ``inference.json``.

    Each folder may hold other ensembles (``infer`` split by ensemble, so that a reinterpretation re-runs only
    the signal's); the event columns (observables, weights, support flag) must then agree, as they do when
    every folder evaluated the same event files.
    """
    tables: dict[str, Table] = {}
    info: dict[str, Any] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.parquet")):
            table = read_table(path)
            if path.stem in tables:
                _merge_into(tables[path.stem], table, folder)
            else:
                tables[path.stem] = table
        if (folder / "inference.json").exists():
            part = json.loads((folder / "inference.json").read_text())
            for key, value in part.items():
                if isinstance(value, dict):
                    info.setdefault(key, {}).update(value)
                elif key == "exact":
                    info[key] = bool(info.get(key, True)) and bool(value)
                else:
                    info[key] = value
    return tables, info


def _merge_into(target: Table, extra: Table, folder: Path) -> None:
    for name, column in extra.columns.items():
        if name not in target.columns:
            target.columns[name] = column
        elif name.startswith(("logr_", "exact_logr_")):
            raise StageError(f"limits: {folder.name}/{extra.name} has '{name}' again; bind each ensemble's ratios once")
        elif not np.array_equal(target.columns[name], column):
            raise StageError(
                f"limits: {folder.name}/{extra.name}: column '{name}' differs from another ratios folder's; "
                "evaluate every ensemble on the same event files"
            )
    if isinstance(target.meta, dict) and isinstance(extra.meta, dict):
        target.meta["labels"] = sorted({*target.meta.get("labels", []), *extra.meta.get("labels", [])})


def _efficiency(t: Table) -> float:
    return float(np.sum(t.weights[t.columns["in_support"].astype(bool)]) / np.sum(t.weights))


def _unbinned(
    data: Table,
    prefix: str,
    cfg: LimitsConfig,
    select: NDArray[np.bool_] | None,
    weights: FloatArray | None = None,
    **extra: Any,
) -> UnbinnedLikelihood:
    sel = np.ones(len(data.weights), bool) if select is None else select
    return UnbinnedLikelihood(
        log_r_signal=data.col(f"{prefix}logr_signal")[sel],
        log_r_background=data.col(f"{prefix}logr_background")[sel],
        log_g_up=data.col(f"{prefix}logr_background_up")[sel],
        log_g_down=data.col(f"{prefix}logr_background_down")[sel],
        nu_s=cfg.nu_s,
        nu_b=cfg.nu_b,
        weights=None if weights is None else weights[sel],
        **extra,
    )


def _asimov_weights(bkg: Table, prefix: str, cfg: LimitsConfig, alpha: float) -> FloatArray:
    g = Code4(np.exp(bkg.col(f"{prefix}logr_background_up")), np.exp(bkg.col(f"{prefix}logr_background_down")))
    return np.asarray(cfg.nu_b * bkg.weights / bkg.weights.sum() * g(alpha))


def _analyse(
    build: Callable[[FloatArray | None, float], UnbinnedLikelihood],
    data_like: UnbinnedLikelihood,
    cfg: LimitsConfig,
) -> Result:
    bounds = (float(cfg.mu_bounds[0]), float(cfg.mu_bounds[1]))
    bounds = (max(bounds[0], data_like.mu_lower_bound()), bounds[1])
    alpha_a = ProfileLikelihood(data_like.twice_nll, bounds).profile_alpha(0.0)
    asimov = build(None, alpha_a)
    return analyse(data_like.twice_nll, asimov.twice_nll, bounds, cfg.n_scan)


def exact_result(observed: Table, samples: dict[str, Table], cfg: LimitsConfig) -> Result:
    """The exact likelihood ratio everywhere (no support split)."""
    bkg = samples["background"]
    data_like = _unbinned(observed, "exact_", cfg, None)

    def asimov(_: FloatArray | None, alpha: float) -> UnbinnedLikelihood:
        return _unbinned(bkg, "exact_", cfg, None, _asimov_weights(bkg, "exact_", cfg, alpha))

    return _analyse(asimov, data_like, cfg)


def nsbi_result(
    observed: Table, samples: dict[str, Table], cfg: LimitsConfig, observable: str
) -> tuple[Result, dict[str, Any]]:
    """Ensemble ratios inside the support, Poisson bins of ``observable`` outside."""
    inside = observed.columns["in_support"].astype(bool)
    eff_s = _efficiency(samples["signal"])
    eff_b = tuple(_efficiency(samples[p]) for p in ("background", "background_up", "background_down"))
    outside_mc = np.concatenate([(~t.columns["in_support"].astype(bool)) for t in samples.values()])
    binned: BinnedRegion | None = None
    edges: FloatArray | None = None
    if outside_mc.any() or (~inside).any():
        values = np.concatenate([t.col(observable)[~t.columns["in_support"].astype(bool)] for t in samples.values()])
        if len(values) == 0:
            raise StageError(
                f"limits: {int((~inside).sum())} observed events are outside the support but no simulated event is; "
                "raise the support max_ratio or simulate more events"
            )
        edges = histfactory.quantile_edges(values, np.ones(len(values)), cfg.support_bins)

    def region(t: Table) -> FloatArray:
        assert edges is not None
        out = ~t.columns["in_support"].astype(bool)
        return histfactory.histogram(t.col(observable)[out], t.weights[out], edges) / t.weights.sum()

    def make_binned(counts: FloatArray) -> BinnedRegion:
        return BinnedRegion(
            counts,
            region(samples["signal"]),
            region(samples["background"]),
            region(samples["background_up"]),
            region(samples["background_down"]),
        )

    if edges is not None:
        binned = make_binned(histfactory.histogram(observed.col(observable)[~inside], observed.weights[~inside], edges))
    extra: dict[str, Any] = {"eff_signal": eff_s, "eff_background": eff_b}
    data_like = _unbinned(observed, "", cfg, inside, binned=binned, **extra)
    bkg = samples["background"]
    bkg_inside = bkg.columns["in_support"].astype(bool)

    def asimov(_: FloatArray | None, alpha: float) -> UnbinnedLikelihood:
        asimov_binned = None
        if binned is not None:
            asimov_binned = make_binned(np.zeros(len(binned.counts)))
            asimov_binned.counts = asimov_binned.expected(0.0, alpha, cfg.nu_s, cfg.nu_b)
        w = _asimov_weights(bkg, "", cfg, alpha)
        return _unbinned(bkg, "", cfg, bkg_inside, w, binned=asimov_binned, **extra)

    info = {
        "observed_in_support": int(inside.sum()),
        "observed_outside_support": int((~inside).sum()),
        "efficiency_signal": eff_s,
        "efficiency_background": list(eff_b),
        "binned_edges": None if edges is None else [float(e) for e in edges[1:-1]],
    }
    return _analyse(asimov, data_like, cfg), info


def choose_observable(samples: dict[str, Table], cfg: LimitsConfig) -> tuple[str, dict[str, float]]:
    """The observable whose histogram gives the smallest expected uncertainty on mu (at mu = 1)."""
    observables = list(samples["background"].meta.get("observables", []))
    if cfg.hist_observable != "auto":
        if cfg.hist_observable not in observables:
            raise StageError(f"limits: hist_observable '{cfg.hist_observable}' is not one of {observables}")
        return cfg.hist_observable, {}
    sigma = {}
    for name in observables:
        templates = histogram_templates(samples, cfg, name)[1]
        sigma[name] = histfactory.binned_sigma_mu(*templates, mu=1.0)
    return min(sigma, key=lambda k: sigma[k]), sigma


def histogram_templates(
    samples: dict[str, Table], cfg: LimitsConfig, observable: str
) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray, FloatArray]]:
    """Bin edges (equal background content) and signal/background/up/down templates in expected events."""
    bkg = samples["background"]
    edges = histfactory.quantile_edges(bkg.col(observable), bkg.weights, cfg.hist_bins)

    def h(t: Table, nu: float) -> FloatArray:
        return histfactory.histogram(t.col(observable), t.weights, edges) * nu / t.weights.sum()

    return edges, (
        h(samples["signal"], cfg.nu_s),
        h(bkg, cfg.nu_b),
        h(samples["background_up"], cfg.nu_b),
        h(samples["background_down"], cfg.nu_b),
    )


def histogram_workspace(
    observed: Table, samples: dict[str, Table], cfg: LimitsConfig, observable: str
) -> dict[str, Any]:
    """The pyhf workspace of the histogram method."""
    edges, (s, b, up, down) = histogram_templates(samples, cfg, observable)
    counts = histfactory.histogram(observed.col(observable), observed.weights, edges)
    bounds = (float(cfg.mu_bounds[0]), float(cfg.mu_bounds[1]))
    # keep every bin's expectation positive over the mu range
    lowest = float(np.max(-b / np.maximum(s, 1e-12))) * 0.999
    bounds = (max(bounds[0], lowest), bounds[1])
    return histfactory.workspace(counts, s, b, up, down, bounds, channel=f"hist_{observable}")
