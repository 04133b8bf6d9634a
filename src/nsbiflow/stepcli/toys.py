"""Stages of trust: ``toys`` (pseudo-experiments with every fit method) and ``summarize`` (a plain summary of
every check a run made: calibrate gates, support, pseudo-experiments, other gates)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.forward import cpu_threads
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.progress import Progress


class ToysConfig(BaseModel):
    """Parameters of ``toys``."""

    model_config = ConfigDict(extra="forbid")

    n_toys: int = Field(0, ge=0, le=100000, description="pseudo-experiments per point (0: write an empty document)")
    points: list[dict[str, float]] = Field(
        default_factory=list,
        description="parameter points, e.g. [{mu: 1, alpha: 1}] (others at their init); []: the model's nominal point",
    )
    limit_toys: int = Field(
        -1, ge=-1, le=100000, description="background-only toys for the CLs upper-limit distribution (-1: n_toys)"
    )
    methods: list[Literal["exact", "nsbi", "histogram"]] = Field(
        default_factory=lambda: ["exact", "nsbi", "histogram"],  # type: ignore[arg-type]
        description="fit methods, as in fit (exact skipped without a truth)",
    )
    truth_config: dict[str, Any] = Field(
        default_factory=dict, description="merged over the model's truth.config (e.g. the toy's signal_mean)"
    )
    source: Literal["auto", "generator", "holdout"] = Field(
        "auto", description="generator: the model's simulator; holdout: Poisson resampling of held-out events"
    )
    seed: int = Field(0, description="seed of the pseudo-data and the auxiliary measurements")
    hist_observable: str = Field("auto", description="observable of the histogram method; auto: the support's")
    hist_bins: int = Field(20, ge=1, le=1000, description="quantile bins of the histogram method")
    aggregate: Literal["mean", "median"] = "mean"
    batch_size: int = Field(50000, gt=0, description="events per chunk when evaluating the ensembles")
    at: dict[str, float] = Field(default_factory=dict, description="where to evaluate a parametrized ensemble")


@stage("toys", outputs=("toys", "plots"), config=ToysConfig)
def toys(io: StageIO) -> None:
    """Pseudo-experiments at parameter points: coverage, pulls, bias, widths, background-only CLs limits."""
    cfg = io.config(ToysConfig)
    out, plots = io.output("toys"), io.output("plots")
    plots.mkdir(parents=True, exist_ok=True)
    if cfg.n_toys == 0:  # switched off (the bundled workflows' default): nothing heavy is imported
        out.write_text(json.dumps({"toys_per_point": 0, "points": [], "limits": None, "checks": []}, indent=2) + "\n")
        return
    from nsbiflow.errors import SpecError
    from nsbiflow.physics.pseudo.run import run_pseudo

    ensembles = io.input_list("ensembles", required=False)
    support = io.optional_input("support")
    n_limits = cfg.n_toys if cfg.limit_toys < 0 else cfg.limit_toys
    with Progress("toys", unit="toys") as bar:
        state = {"last": ""}

        def progress(done: int, total: int, message: str) -> None:
            bar.update(done, total, message)
            if message != state["last"] and "events" not in message:
                state["last"] = message
                bar.log(f"toys: {message}")

        try:
            document = run_pseudo(
                model_path=io.input("model"),
                ratios=io.input_list("ratios", required=False),
                events=io.input_list("events", required=False),
                evaluator=_evaluator_factory(ensembles, support, cfg) if ensembles else None,
                plots_dir=plots,
                n_toys=cfg.n_toys,
                points=cfg.points,
                limit_toys=n_limits,
                methods=cfg.methods,
                truth_config=cfg.truth_config,
                source=cfg.source,
                seed=cfg.seed,
                hist_observable=cfg.hist_observable,
                hist_bins=cfg.hist_bins,
                progress=progress,
                workers=cpu_threads(),  # the step's cpu request: one fitting process per cpu
            )
        except SpecError as error:
            raise StageError(f"toys: invalid model: {error}") from None
        for check in document["checks"]:
            bar.log(
                f"toys {check['method']} at {check['point']}: 68% coverage {check['coverage_68']:.3f} "
                f"+- {check['coverage_68_error']:.3f}, pull width {check['pull_width']:.3f} "
                f"({'pass' if check['passed'] else 'FAIL'})"
            )
    out.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _evaluator_factory(ensembles: Sequence[Path], support: Path | None, cfg: ToysConfig) -> Any:
    def build(observables: Sequence[str], info: Mapping[str, Any]) -> Any:
        import math

        from nsbiflow.physics.ensemble import bind_point
        from nsbiflow.physics.inference import load_targets
        from nsbiflow.physics.pseudo.pools import Evaluator
        from nsbiflow.physics.support import SupportModel

        targets = load_targets(ensembles)
        configure_threads()
        bind_point([t.ensemble for t in targets.values()], cfg.at, "toys")
        norms = info.get("normalisation", {})
        for label, target in targets.items():
            if label in norms:
                target.log_norm = math.log(float(norms[label]))
        model = SupportModel.load(support) if support else None
        return Evaluator(observables, targets, model, cfg.aggregate, cfg.batch_size)

    return build


# -- summarize ---------------------------------------------------------------------------------------------


class SummarizeConfig(BaseModel):
    """Parameters of ``summarize``."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("", description="heading of the summary (default: the fit's model name)")


@stage("summarize", outputs=("summary", "checks"), config=SummarizeConfig)
def summarize(io: StageIO) -> None:
    """A short plain summary of every check of a run (what was tested, passed, failed, with numbers)."""
    from nsbiflow.physics.checks_summary import collect_checks, render

    cfg = io.config(SummarizeConfig)
    results = io.optional_input("results")
    document = _read_json(results) if results else None
    checks = collect_checks(
        results=document,
        diagnostics=[_read_json(p / "metrics.json") for p in io.input_list("diagnostics", required=False)
                     if (p / "metrics.json").exists()],
        support=_read_json(support / "support.json") if (support := io.optional_input("support")) else None,
        toys=_read_json(t) if (t := io.optional_input("toys")) else None,
        gates=[_read_json(p) for p in io.input_list("gates", required=False)],
    )
    title = cfg.title or f"Checks: {document.get('model', 'run') if document else 'run'}"
    text = render(title, checks, document)
    io.output("summary").write_text(text)
    io.output("checks").write_text(json.dumps(checks, indent=2, sort_keys=True) + "\n")
    print(text, flush=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"summarize: {path}: not a readable JSON document ({error})") from None
