"""Stages that use trained ensembles: ``calibrate`` (diagnostics gate), ``infer`` (streamed per-event ratios),
``limits`` (exact vs NSBI vs histogram)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.configs import LimitsConfig
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


class LimitsStageConfig(LimitsConfig):
    """Parameters of ``limits``: the physics ``LimitsConfig`` plus what the stage reports."""

    model_config = ConfigDict(extra="forbid")

    mu_injected: float | None = Field(
        None, description="true mu (reported and drawn; default from the data's metadata)"
    )


@stage("calibrate", outputs=("report",), config=CalibrateConfig)
def calibrate(io: StageIO) -> None:
    """Closure, normalisation, calibration and loss diagnostics of one ensemble; fails beyond tolerance."""
    import numpy as np

    from nsbiflow.physics import diagnostics, plots
    from nsbiflow.physics.ensemble import CURVES, Ensemble, bind_point, labels_in
    from nsbiflow.physics.events import read_events

    cfg = io.config(CalibrateConfig)
    tol = diagnostics.Tolerances(
        max_chi2_ndf=cfg.max_chi2_ndf, max_norm_deviation=cfg.max_norm_deviation, max_ece=cfg.max_ece
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
    metrics: dict[str, Any] = {
        "label": label,
        "numerator": num.process,
        "reference": ref.process,
        "members": ens.size,
        "at": ens.point,
        "normalisation": norm,
        "closure": closure,
        "calibration": calibration,
        "losses": diagnostics.loss_summary(ens.manifest),
        "mean_spread": float(np.average(spread_ref, weights=ref.weights)),
        "tolerances": tol.model_dump(),
    }
    metrics["max_chi2_ndf"] = max(c["chi2_ndf"] for c in metrics["closure"].values())
    failures = diagnostics.check(metrics, tol)
    metrics["passed"] = not failures
    metrics["failures"] = failures
    out = io.output("report")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    plots.closure(out / f"closure_{label}.png", label, metrics["closure"], reference=ref.process)
    plots.calibration(out / f"calibration_{label}.png", label, metrics["calibration"])
    curves = json.loads((directory / label / CURVES).read_text()) if (directory / label / CURVES).exists() else {}
    if curves:
        plots.losses(out / f"losses_{label}.png", label, curves)
    with Progress(f"calibrate {label}") as bar:
        bar.log(
            f"{label}: closure chi2/ndf max {metrics['max_chi2_ndf']:.2f}, normalisation {norm:.4f}, "
            f"ECE {metrics['calibration']['ece']:.4f}, holdout/train loss {metrics['losses']['holdout_over_train']:.4f}"
        )
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
    from nsbiflow.physics.inference import infer_file, load_targets, normalise, toy_from_metadata
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
    need_signal = any("signal" in (t.numerator, t.denominator) for t in targets.values())
    toy = toy_from_metadata([read_metadata(p) for p in files], need_signal)
    out = io.output("ratios")
    norms = normalise(targets, by_process, cfg.batch_size, cfg.aggregate) if cfg.normalise else {}
    with Progress("infer", unit="events") as bar:
        counts = {}
        for process, path in by_process.items():
            counts[process] = infer_file(
                path, out / f"{process}.parquet", targets, support_model, toy, cfg.batch_size, cfg.aggregate, bar.update
            )
        info = {
            "normalisation": norms,
            "events": counts,
            "exact": toy is not None,
            "ensemble_size": {k: t.ensemble.size for k, t in targets.items()},
            "at": {k: t.ensemble.point for k, t in targets.items() if t.ensemble.point},
            "denominators": {k: t.denominator for k, t in targets.items()},
        }
        (out / "inference.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        bar.log("evaluated " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


@stage("limits", outputs=("results", "workspace", "plots"), config=LimitsStageConfig)
def limits(io: StageIO) -> None:
    """Profile-likelihood intervals, CLs limit and Z0: exact ratio vs NSBI ensembles vs a pyhf histogram."""
    from nsbiflow.physics import analysis, histfactory, plots

    cfg = io.config(LimitsStageConfig)
    lim = analysis.LimitsConfig(**cfg.model_dump(exclude={"mu_injected"}))
    folders = io.input_list("ratios")
    where = ", ".join(str(f) for f in folders)
    tables, info = analysis.read_ratio_folders(folders)
    if "observed" not in tables:
        raise StageError(f"limits: {where} has no observed.parquet; bind infer's output and give it the data")
    missing = [s for s in analysis.SAMPLES if s not in tables]
    if missing:
        raise StageError(f"limits: {where} lacks held-out sample(s) {', '.join(missing)}; add them to infer's samples")
    observed, samples = tables["observed"], {s: tables[s] for s in analysis.SAMPLES}
    with Progress("limits", unit="methods") as bar:
        observable, sigmas = analysis.choose_observable(samples, lim)
        bar.log(f"histogram observable: {observable}")
        results: dict[str, Any] = {}
        results["exact"] = (
            analysis.exact_result(observed, samples, lim)
            if info.get("exact", True) and "exact_logr_signal" in observed.columns
            else None
        )
        bar.update(1, 3, "exact")
        results["nsbi"], support_info = analysis.nsbi_result(observed, samples, lim, observable)
        bar.update(2, 3, "nsbi")
        spec = analysis.histogram_workspace(observed, samples, lim, observable)
        results["histogram"] = histfactory.analyse_workspace(spec, lim.n_scan)
        bar.update(3, 3, "histogram")
    closure = {}
    for report in io.input_list("diagnostics", required=False):
        m = json.loads((report / "metrics.json").read_text())
        closure[m["label"]] = {k: m[k] for k in ("max_chi2_ndf", "normalisation", "passed", "members", "mean_spread")}
        closure[m["label"]]["ece"] = m["calibration"]["ece"]
        closure[m["label"]]["chi2_ndf"] = {k: v["chi2_ndf"] for k, v in m["closure"].items()}
    summary: dict[str, Any] = {name: (r.summary() if r is not None else None) for name, r in results.items()}
    exact = summary["exact"]
    comparison = {}
    if exact is not None:
        for name in ("nsbi", "histogram"):
            for key in ("width_68", "width_95"):
                comparison[f"{name}_over_exact_{key}"] = summary[name][key] / exact[key]
    truth = observed.meta.get("truth", {}) if isinstance(observed.meta, dict) else {}
    document = {
        **summary,
        "comparison": comparison,
        "ensemble_size": info.get("ensemble_size", {}),
        "n_events": {
            "observed": len(observed.weights),
            "in_support": support_info["observed_in_support"],
            "outside_support": support_info["observed_outside_support"],
        },
        "support": support_info,
        "closure": closure,
        "histogram_observable": observable,
        "histogram_expected_sigma": sigmas,
        "mu_injected": cfg.mu_injected if cfg.mu_injected is not None else truth.get("mu"),
        "settings": lim.model_dump(),
    }
    plot_dir = io.output("plots")
    io.output("results").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    io.output("workspace").write_text(json.dumps(histfactory.for_limits(spec), indent=2, sort_keys=True) + "\n")
    table = render_table(document)
    (plot_dir / "summary.md").write_text(table + "\n")
    plots.scans(plot_dir / "scans.png", results, document["mu_injected"])
    for report in io.input_list("diagnostics", required=False):
        for png in sorted(report.glob("closure_*.png")):
            shutil.copyfile(png, plot_dir / png.name)
    print(table, flush=True)


def render_table(doc: dict[str, Any]) -> str:
    """A markdown table of the three methods."""
    rows = [
        "| method | mu_hat | 68% interval | 95% interval | 95% CLs UL | Z0 | width68 / exact |",
        "|---|---|---|---|---|---|---|",
    ]
    exact = doc.get("exact")
    for name in ("exact", "nsbi", "histogram"):
        r = doc.get(name)
        if r is None:
            rows.append(f"| {name} | n/a | | | | | |")
            continue
        ratio = f"{r['width_68'] / exact['width_68']:.3f}" if exact else "n/a"
        i68, i95 = r["interval_68"], r["interval_95"]
        rows.append(
            f"| {name} | {r['mu_hat']:.3f} | [{i68[0]:.3f}, {i68[1]:.3f}] | [{i95[0]:.3f}, {i95[1]:.3f}] | "
            f"{r['cls_upper_limit_95']:.3f} | {r['z0']:.2f} | {ratio} |"
        )
    return "\n".join(rows)
