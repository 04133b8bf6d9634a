"""The ``toys`` stage's work: pseudo-datasets at each parameter point, fitted with every method, summarised.

Per point, the toys' events are drawn once (the simulator's generator, else resampling of held-out events), the
ratio ensembles are evaluated once on all of them, and every method fits the same toys with the same auxiliary
measurements. Background-only toys give the distribution of the 95 % CLs upper limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.model.data import Table, read_samples, require
from nsbiflow.physics.model.histogram import binned_model, default_observable
from nsbiflow.physics.model.likelihood import BinnedTerm, Likelihood
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.model.spec import Model
from nsbiflow.physics.pseudo import experiments, plots
from nsbiflow.physics.pseudo.generators import generator, has_generator, holdout_generator
from nsbiflow.physics.pseudo.parallel import FitPool
from nsbiflow.physics.pseudo.pools import Evaluator, draw_pool, split

ProgressFn = Callable[[int, int, str], None]
TARGETS = {"coverage_68": (0.6827, 0.04), "pull_width": (1.0, 0.1)}


def label_of(values: Mapping[str, float], model: Model) -> str:
    """``mu=1, alpha=+1`` (parameters at their init value are left out, except the POIs)."""
    pois = set(model.pois())
    shown = [(k, v) for k, v in values.items() if k in pois or v != model.parameters[k].start()]
    return ", ".join(f"{k}={v:+g}" if k not in pois else f"{k}={v:g}" for k, v in shown) or "nominal"


def _point(model: Model, given: Mapping[str, float]) -> dict[str, float]:
    for name in given:
        if name not in model.parameters:
            known = ", ".join(model.parameters)
            raise StageError(f"toys: point parameter {name!r} is not a parameter of the model ({known})")
    return {name: float(given.get(name, p.start())) for name, p in model.parameters.items()}


def _likelihoods(
    model: Model, tables: Mapping[str, Table], methods: Sequence[str], truth: Any, hist_observable: str, hist_bins: int
) -> tuple[dict[str, Likelihood], dict[str, str]]:
    likes: dict[str, Likelihood] = {}
    skipped: dict[str, str] = {}
    for method in methods:
        if method == "exact":
            if truth is None:
                skipped["exact"] = "the model declares no truth (simulator)"
                continue
            likes["exact"] = Likelihood(model, tables, "exact", truth)
        elif method == "nsbi":
            likes["nsbi"] = Likelihood(model, tables, "nsbi")
        else:
            first = tables[next(iter(next(iter(model.regions.values())).processes.values())).sample]
            names = list(first.meta.get("observables", [])) or [c for c in first.columns if not c.startswith("logr_")]
            observable = default_observable(model, tables, names) if hist_observable == "auto" else hist_observable
            likes["histogram"] = Likelihood(binned_model(model, observable, hist_bins), tables, "nsbi")
    return likes, skipped


class _Pseudo:
    """Toys of one model: the generator source, the evaluator, and the likelihood that fixes the counts."""

    def __init__(self, model: Model, tables: Mapping[str, Table], truth: Any, evaluator: Evaluator | None,
                 source: str, counting: Likelihood) -> None:
        self.model, self.tables, self.truth, self.evaluator = model, tables, truth, evaluator
        self.source, self.counting = source, counting

    def toys(self, values: Mapping[str, float], n: int, rng: np.random.Generator,
             progress: ProgressFn | None) -> list[dict[str, Table]]:
        if self.source == "holdout":
            draw_tables = holdout_generator(self.model, self.counting, self.tables, values)
            return [draw_tables(rng) for _ in range(n)]
        assert self.evaluator is not None
        pool = draw_pool(generator(self.model, self.truth, self.counting, values), n, rng)
        binned = {t.name for t in self.counting.regions if isinstance(t, BinnedTerm)}
        columns = {
            region: self.evaluator.columns(x, region not in binned, progress) for region, x in pool.events.items()
        }
        return split(pool, columns)


@dataclass(frozen=True)
class Inputs:
    """What a likelihood of the toys is built from (picklable: each fitting worker builds its own)."""

    model_path: Path
    ratios: tuple[Path, ...]
    events: tuple[Path, ...]
    methods: tuple[str, ...]
    truth_config: Mapping[str, Any]
    hist_observable: str
    hist_bins: int

    def load(self) -> tuple[Model, dict[str, Table], Mapping[str, Any], Any]:
        """The model, the sample tables, the inference info and the truth (``None`` without a simulator)."""
        model = load_model(self.model_path)
        tables, info = read_samples(self.ratios, self.events)
        require(tables, model.samples(), "toys")
        truth = None
        if model.truth is not None:
            from nsbiflow.physics.truth import truth_from_spec

            truth = truth_from_spec(model.truth.simulator, {**model.truth.config, **self.truth_config})
        return model, tables, info, truth

    def __call__(self) -> dict[str, Likelihood]:
        """Method -> likelihood (a worker's build)."""
        model, tables, _, truth = self.load()
        return _likelihoods(model, tables, self.methods, truth, self.hist_observable, self.hist_bins)[0]


def run_pseudo(
    model_path: Path,
    ratios: Sequence[Path],
    events: Sequence[Path],
    evaluator: Callable[[Sequence[str], Mapping[str, Any]], Evaluator] | None,
    plots_dir: Path,
    *,
    n_toys: int,
    points: Sequence[Mapping[str, float]],
    limit_toys: int,
    methods: Sequence[str],
    truth_config: Mapping[str, Any],
    source: str,
    seed: int,
    hist_observable: str,
    hist_bins: int,
    progress: ProgressFn | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The pseudo-experiment document (``evaluator(observables, inference_info)`` builds the ratio evaluator).

    ``workers`` processes fit the toys (``physics/pseudo/parallel.py``; the document does not depend on it).
    """
    inputs = Inputs(Path(model_path), tuple(ratios), tuple(events), tuple(methods), dict(truth_config),
                    hist_observable, hist_bins)
    model, tables, info, truth = inputs.load()
    if source == "auto":
        source = "generator" if model.truth is not None and has_generator(model.truth.simulator) else "holdout"
    if source == "generator" and truth is None:
        raise StageError("toys: source generator needs a model with a truth (simulator); set source: holdout")
    likes, skipped = _likelihoods(model, tables, methods, truth, hist_observable, hist_bins)
    counting = likes.get("nsbi") or Likelihood(model, tables, "nsbi")
    ev = None
    if source == "generator":
        if evaluator is None:
            raise StageError("toys: bind the trained ensembles ('ensembles') to evaluate ratios on generated events")
        assert truth is not None
        ev = evaluator(list(truth.observables()), info)
    with FitPool(inputs, workers if n_toys > 1 else 1, likes) as pool:
        return _run(model, likes, skipped, _Pseudo(model, tables, truth, ev, source, counting), pool, plots_dir,
                    n_toys=n_toys, points=points, limit_toys=limit_toys, source=source, seed=seed, progress=progress)


def _run(
    model: Model,
    likes: Mapping[str, Likelihood],
    skipped: Mapping[str, str],
    pseudo: _Pseudo,
    pool: FitPool,
    plots_dir: Path,
    *,
    n_toys: int,
    points: Sequence[Mapping[str, float]],
    limit_toys: int,
    source: str,
    seed: int,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    poi = model.pois()[0]
    chosen = [_point(model, p) for p in (points or [{}])]
    rng = np.random.default_rng(seed)
    document: dict[str, Any] = {
        "model": model.metadata.name,
        "poi": poi,
        "source": source,
        "toys_per_point": n_toys,
        "methods": list(likes),
        "skipped": dict(skipped),
        "seed": seed,
        "targets": {k: {"value": v, "tolerance": t} for k, (v, t) in TARGETS.items()},
        "points": [],
        "limits": None,
    }
    asimov: dict[str, experiments.AsimovCurve] = {}
    if limit_toys > 0:
        background = _point(model, {poi: max(model.parameters[poi].limits()[0], 0.0)})
        asimov = {m: experiments.AsimovCurve(like, poi, background) for m, like in likes.items()}
    for k, values in enumerate(chosen):
        label = label_of(values, model)
        toys = pseudo.toys(values, n_toys, rng, progress)
        point: dict[str, Any] = {"values": values, "label": label, "poi": poi, "truth": values[poi],
                                 "toys": n_toys, "methods": {}}
        fitted = pool.fit_all(list(likes), toys, values, seed + 1000 * (k + 1), progress, label)
        for method, result in fitted.items():
            summary = experiments.summarise(result)
            if method in asimov:
                summary["cls_excludes_truth"] = experiments.excludes_truth(summary, values[poi], asimov[method])
            point["methods"][method] = summary
        document["points"].append(point)
    if limit_toys > 0:
        toys = pseudo.toys(background, limit_toys, rng, progress)
        label = label_of(background, model)
        document["limits"] = {"values": background, "label": label, "methods": {}}
        for method, like in likes.items():
            document["limits"]["methods"][method] = experiments.limit_toys(
                like, asimov[method], toys, background, seed + 7, progress, f"{method} limits"
            )
    document["checks"] = checks(document)
    _draw(plots_dir, document)
    return document


def checks(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pass/fail of every (point, method) against the targets (68 % coverage, pull width), with the numbers."""
    out = []
    (c_value, c_tol), (w_value, w_tol) = TARGETS["coverage_68"], TARGETS["pull_width"]
    for point in document["points"]:
        for method, s in point["methods"].items():
            cov, width = s["coverage_68"]["value"], s["lr_pull"]["width"]
            ok = (
                s["toys"] > 0
                and not math.isnan(cov)
                and abs(cov - c_value) <= c_tol
                and not math.isnan(width)
                and abs(width - w_value) <= w_tol
            )
            out.append({
                "point": point["label"],
                "method": method,
                "coverage_68": cov,
                "coverage_68_error": s["coverage_68"]["error"],
                "pull_width": width,
                "toys": s["toys"],
                "passed": bool(ok),
            })
    return out


def _draw(folder: Path, document: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not document["points"]:
        return
    for k, point in enumerate(document["points"]):
        plots.pulls(folder / f"pulls_{k}.png", point)
    plots.coverage(folder / "coverage.png", document["points"])
    if document["limits"]:
        plots.limits(folder / "limits.png", {"poi": document["poi"], "limits": document["limits"]})
