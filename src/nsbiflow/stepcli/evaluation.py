"""Stages that use trained ensembles: ``calibrate`` (diagnostics gate), ``infer`` (streamed per-event ratios),
``fit`` (a declared statistical model: exact vs NSBI vs histogram)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.progress import Progress


class CalibrateConfig(BaseModel):
    """Parameters of ``calibrate``."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field("", description="ensemble label in the collection (default: its only one)")
    max_chi2_ndf: float = Field(3.0, description="closure tolerance (worst observable)")
    max_norm_deviation: float = Field(0.1, description="tolerance on |mean r over the reference - 1|")
    max_ece: float = Field(0.05, description="tolerance on the expected calibration error")
    max_ratio_closure_z: float = Field(
        3.09, gt=0, description="tolerance on the z-score of the closure in bins of the learned ratio"
    )
    max_two_sample_z: float = Field(
        3.09, gt=0, description="tolerance on the classifier two-sample test's (AUC - 0.5) / error"
    )
    two_sample: bool = Field(True, description="run the classifier two-sample test (scikit-learn HGB)")
    advisory: list[Literal["closure", "normalisation", "calibration", "ratio_closure", "two_sample"]] = Field(
        default_factory=list,
        description="gates reported (metrics.json 'advisory_failures', a warning) without stopping the chain",
    )
    two_sample_events: int = Field(50000, gt=100, description="events per sample the two-sample test uses at most")
    n_bins: int = Field(20, ge=2)
    aggregate: Literal["mean", "median"] = "mean"
    at: dict[str, float] = Field(
        default_factory=dict,
        description="where to evaluate a parametrized ensemble, e.g. {signal_mean: 1.5} (inside its trained range)",
    )


class InferConfig(BaseModel):
    """Parameters of ``infer``."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(50000, gt=0, description="events per chunk (bounds the memory)")
    aggregate: Literal["mean", "median"] = "mean"
    normalise: bool = Field(True, description="rescale r to unit mean over its denominator sample")
    at: dict[str, float] = Field(
        default_factory=dict,
        description="where to evaluate a parametrized ensemble, e.g. {signal_mean: 1.5} (inside its trained range)",
    )


MethodName = Literal["exact", "nsbi", "discriminant", "histogram"]
METHODS: tuple[MethodName, ...] = ("exact", "nsbi", "discriminant", "histogram")


class FitConfig(BaseModel):
    """Parameters of ``fit`` (the statistical analysis of a declared model)."""

    model_config = ConfigDict(extra="forbid")

    methods: list[MethodName] = Field(
        default_factory=lambda: list(METHODS),
        description="exact: the model's simulator densities at every parameter point (skipped when the model has "
        "no truth); nsbi: the ratio ensembles; discriminant: each unbinned region binned in the learned "
        "discriminant ln p(x|alt)/p(x|null); histogram: each unbinned region binned in one observable (pyhf)",
    )
    truth_config: dict[str, Any] = Field(
        default_factory=dict, description="merged over the model's truth.config (e.g. the toy's signal_mean)"
    )
    n_scan: int = Field(41, ge=5, le=1001, description="points of each parameter of interest's profile scan")
    scan_2d: list[str] = Field(default_factory=list, description="two parameters of interest for a 2-D scan")
    n_scan_2d: int = Field(11, ge=3, le=101, description="points per axis of the 2-D scan")
    hist_observable: str = Field("auto", description="observable of the histogram method; auto: the support's")
    hist_bins: int = Field(20, ge=1, le=1000, description="quantile bins of the histogram and discriminant methods")
    hist_interpolation: Literal["code4", "code4p"] = Field(
        "code4",
        description="shape systematics of the binned methods: code4 multiplicative per bin (the NSBI convention), "
        "code4p pyhf's additive histosys",
    )
    discriminant_null: dict[str, float] = Field(
        default_factory=dict, description="the discriminant's null hypothesis (default: every POI at 0)"
    )
    discriminant_alt: dict[str, float] = Field(
        default_factory=dict, description="the discriminant's alternative (default: every POI at 1)"
    )
    impacts: bool = Field(True, description="rank the nuisance parameters by their impact on the first POI")
    cls: bool = Field(True, description="compute the 95 % CLs upper limit of each POI")
    injected: dict[str, float] = Field(
        default_factory=dict, description="true parameter values (reported and drawn; optional)"
    )

    @field_validator("scan_2d")
    @classmethod
    def _pair(cls, value: list[str]) -> list[str]:
        if value and len(value) != 2:
            raise ValueError("expected two parameter names")
        return value


@stage("calibrate", outputs=("report",), config=CalibrateConfig)
def calibrate(io: StageIO) -> None:
    """Closure, normalisation, calibration and loss diagnostics of one ensemble; fails beyond tolerance."""
    import numpy as np

    from nsbiflow.physics import diagnostics, plots
    from nsbiflow.physics.ensemble import CURVES, Ensemble, bind_point, labels_in
    from nsbiflow.physics.events import read_events

    cfg = io.config(CalibrateConfig)
    tol = diagnostics.Tolerances(
        max_chi2_ndf=cfg.max_chi2_ndf,
        max_norm_deviation=cfg.max_norm_deviation,
        max_ece=cfg.max_ece,
        max_ratio_closure_z=cfg.max_ratio_closure_z,
        max_two_sample_z=cfg.max_two_sample_z,
    )
    directory = io.input("ensemble")
    labels = labels_in(directory)
    label = cfg.label or (labels[0] if len(labels) == 1 else "")
    if not label:
        raise StageError(f"calibrate: {directory} holds several ensembles ({', '.join(labels)}); set 'label'")
    ens = Ensemble.load(directory, label)
    configure_threads()  # torch is loaded only on a CUDA device
    bind_point([ens], cfg.at, "calibrate")
    num = read_events(io.input("numerator"), ens.observables or None)
    ref = read_events(io.input("reference"), num.observables)
    lr_num, _ = ens.log_ratio(num.x, cfg.aggregate)
    lr_ref, spread_ref = ens.log_ratio(ref.x, cfg.aggregate)
    r_ref = np.exp(lr_ref)
    norm = diagnostics.normalisation(ref.weights, r_ref)
    closure = diagnostics.closure(num.x, num.weights, ref.x, ref.weights, r_ref / norm, num.observables, cfg.n_bins)
    log_norm = float(np.log(norm))
    calibration = diagnostics.calibration_curve(lr_num - log_norm, num.weights, lr_ref - log_norm, ref.weights)
    ratio_closure = diagnostics.ratio_closure(lr_num, num.weights, lr_ref, ref.weights, r_ref / norm, cfg.n_bins)
    two_sample = None
    if cfg.two_sample:
        rng = np.random.default_rng([len(num), len(ref), 4242])

        def cap(n: int) -> Any:
            if n <= cfg.two_sample_events:
                return slice(None)
            return np.sort(rng.choice(n, cfg.two_sample_events, replace=False))

        i, j = cap(len(num)), cap(len(ref))
        two_sample = diagnostics.two_sample(num.x[i], num.weights[i], ref.x[j], ref.weights[j], (r_ref / norm)[j])
    metrics: dict[str, Any] = {
        "label": label,
        "numerator": num.process,
        "reference": ref.process,
        "members": ens.size,
        "at": ens.point,
        "normalisation": norm,
        "closure": closure,
        "calibration": calibration,
        "ratio_closure": ratio_closure,
        "two_sample": two_sample,
        "losses": diagnostics.loss_summary(ens.manifest),
        "mean_spread": float(np.average(spread_ref, weights=ref.weights)),
        "tolerances": tol.model_dump(),
    }
    metrics["max_chi2_ndf"] = max(c["chi2_ndf"] for c in metrics["closure"].values())
    named = diagnostics.check_named(metrics, tol)
    failures = [sentence for gate, sentence in named if gate not in cfg.advisory]
    metrics["passed"] = not failures
    metrics["failures"] = failures
    metrics["advisory_failures"] = [sentence for gate, sentence in named if gate in cfg.advisory]
    out = io.output("report")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    panels = {**metrics["closure"], "learned log r": ratio_closure}
    plots.closure(out / f"closure_{label}.png", label, panels, reference=ref.process)
    plots.calibration(out / f"calibration_{label}.png", label, metrics["calibration"])
    curves = json.loads((directory / label / CURVES).read_text()) if (directory / label / CURVES).exists() else {}
    if curves:
        plots.losses(out / f"losses_{label}.png", label, curves)
    with Progress(f"calibrate {label}") as bar:
        bar.log(
            f"{label}: closure chi2/ndf max {metrics['max_chi2_ndf']:.2f}, normalisation {norm:.4f}, "
            f"ECE {metrics['calibration']['ece']:.4f}, holdout/train loss {metrics['losses']['holdout_over_train']:.4f}"
        )
        bar.log(
            f"{label}: closure in bins of the learned ratio z = {ratio_closure['z']:.2f} "
            f"(tolerance {tol.max_ratio_closure_z:g})"
            + (
                f", two-sample AUC {two_sample['auc']:.4f} z = {two_sample['z']:.2f} "
                f"(tolerance {tol.max_two_sample_z:g})"
                if two_sample
                else ""
            )
        )
        for sentence in metrics["advisory_failures"]:
            bar.log(f"warning (advisory gate, not enforced): {sentence}")
    if failures:
        raise StageError(
            f"calibrate: {failures[0]}"
            + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
            + "; retrain (more events, epochs or members) or loosen the tolerance"
        )


@stage("infer", outputs=("ratios",), config=InferConfig)
def infer(io: StageIO) -> None:
    """Per-event log-ratios of every ensemble on the data and the held-out samples, streamed in chunks."""
    from nsbiflow.physics.ensemble import bind_point
    from nsbiflow.physics.events import read_metadata
    from nsbiflow.physics.inference import infer_file, load_targets, normalise
    from nsbiflow.physics.support import SupportModel

    cfg = io.config(InferConfig)
    targets = load_targets(io.input_list("ensembles"))
    configure_threads()  # torch is loaded only on a CUDA device
    bind_point([t.ensemble for t in targets.values()], cfg.at, "infer")
    support_dir = io.optional_input("support")
    support_model = SupportModel.load(support_dir) if support_dir else None
    files = [io.input("data"), *io.input_list("samples", required=False)]
    by_process: dict[str, Path] = {}
    for path in files:
        process = str(read_metadata(path).get("process", path.stem))
        if process in by_process:
            raise StageError(f"infer: two inputs are process '{process}' ({by_process[process].name}, {path.name})")
        by_process[process] = path
    out = io.output("ratios")
    norms = normalise(targets, by_process, cfg.batch_size, cfg.aggregate) if cfg.normalise else {}
    with Progress("infer", unit="events") as bar:
        counts = {}
        for process, path in by_process.items():
            counts[process] = infer_file(
                path, out / f"{process}.parquet", targets, support_model, cfg.batch_size, cfg.aggregate, bar.update
            )
        info = {
            "normalisation": norms,
            "events": counts,
            "ensemble_size": {k: t.ensemble.size for k, t in targets.items()},
            "at": {k: t.ensemble.point for k, t in targets.items() if t.ensemble.point},
            "denominators": {k: t.denominator for k, t in targets.items()},
        }
        (out / "inference.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        bar.log("evaluated " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


def _fit_service(model: Path, ratios: list[Path], events: list[Path]) -> Any:
    """The methods' analyser of the fit service named by ``$NSBIFLOW_FIT_SERVER`` (with a token), or None.

    Opt-in and import-light: without the variable nothing of the service is imported and the fit runs here.
    """
    import os

    from nsbiflow.service.client import SERVER_ENV

    if not os.environ.get(SERVER_ENV):
        return None
    from nsbiflow.service.client import client_from_env, shown_url
    from nsbiflow.service.remote_fit import remote_analyser

    client = client_from_env(require_token=True)
    assert client is not None
    print(f"fit: the methods are evaluated by the fit service at {shown_url(client.url)}", flush=True)
    return remote_analyser(client, model, ratios, events)


@stage("fit", outputs=("results", "workspace", "plots"), config=FitConfig)
def fit(io: StageIO) -> None:
    """Fit a declared statistical model: exact vs NSBI vs histogram (best fit, intervals, CLs, Z0, impacts).

    With ``$NSBIFLOW_FIT_SERVER`` and a token set, the methods are evaluated by that fit service (same
    results; docs/service.md); without, here.
    """
    from nsbiflow.errors import NsbiflowError, SpecError
    from nsbiflow.physics.model.run import run_fit

    cfg = io.config(FitConfig)
    ratios = io.input_list("ratios", required=False)
    events = io.input_list("events", required=False)
    try:
        document, workspace = run_fit(
            model_path=io.input("model"),
            ratios=ratios,
            events=events,
            diagnostics=io.input_list("diagnostics", required=False),
            plots=io.output("plots"),
            analyser=_fit_service(io.input("model"), ratios, events),
            **cfg.model_dump(),
        )
    except SpecError as error:
        raise StageError(f"fit: invalid model: {error}") from None
    except StageError:
        raise
    except NsbiflowError as error:  # the fit service refused or could not be reached
        raise StageError(f"fit: {error}") from None
    io.output("workspace").write_text(json.dumps(workspace, indent=2, sort_keys=True) + "\n")
    io.output("results").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    table = render_table(document)
    (io.output("plots") / "summary.md").write_text(table + "\n")
    print(table, flush=True)


def render_table(doc: dict[str, Any]) -> str:
    """A markdown table of the methods (first parameter of interest)."""
    poi = doc.get("poi", "mu")
    rows = [
        f"| method | {poi} best fit | 68% interval | 95% interval | 95% CLs UL | Z0 | width68 / exact |",
        "|---|---|---|---|---|---|---|",
    ]
    exact = doc.get("exact")
    labels = {"discriminant": "histogram of the NSBI discriminant"}
    if doc.get("histogram_observable"):
        labels["histogram"] = f"histogram ({doc['histogram_observable']})"
    for method in METHODS:
        name = labels.get(method, method)
        r = doc.get(method)
        if r is None:
            rows.append(f"| {name} | n/a | | | | | |")
            continue
        ratio = f"{r['width_68'] / exact['width_68']:.3f}" if exact else "n/a"
        i68, i95 = r["interval_68"], r["interval_95"]
        ul = "n/a" if r["cls_upper_limit_95"] is None else f"{r['cls_upper_limit_95']:.3f}"
        rows.append(
            f"| {name} | {r['mu_hat']:.3f} | [{i68[0]:.3f}, {i68[1]:.3f}] | [{i95[0]:.3f}, {i95[1]:.3f}] | "
            f"{ul} | {r['z0']:.2f} | {ratio} |"
        )
    return "\n".join(rows)
