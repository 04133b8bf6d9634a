"""``bias-gate``: pseudo-experiments at known parameter points before the data are fitted; fails when biased."""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import ConfigDict, Field

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.gates.config import BiasGateConfig
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.progress import Progress


class BiasGateStageConfig(BiasGateConfig):
    """Parameters of ``bias-gate`` (the gate's points and threshold, plus the exact method's configuration)."""

    model_config = ConfigDict(extra="forbid")

    truth_config: dict[str, Any] = Field(
        default_factory=dict, description="merged over the model's truth.config (reference: exact)"
    )
    enforce: bool = Field(
        True, description="fail the step on a biased point (false: report passed: false, warn, and succeed)"
    )


@stage("bias-gate", outputs=("report",), config=BiasGateStageConfig)
def bias_gate(io: StageIO) -> None:
    """Fit pseudo-data resampled from held-out samples at known parameter points; fail on a biased POI."""
    from nsbiflow.errors import SpecError
    from nsbiflow.physics.gates.bias import failure, run_gate, with_columns
    from nsbiflow.physics.model.data import read_samples, require
    from nsbiflow.physics.model.likelihood import Likelihood
    from nsbiflow.physics.model.loader import load_model

    cfg = io.config(BiasGateStageConfig)
    configure_threads()
    try:
        model = load_model(io.input("model"))
    except SpecError as error:
        raise StageError(f"bias-gate: invalid model: {error}") from None
    tables, _ = read_samples(io.input_list("ratios"), io.input_list("events", required=False))
    require(tables, model.samples(), "bias-gate")
    extra = io.input_list("pools", required=False)
    pools = with_columns(tables, read_samples(extra)[0]) if extra else tables
    exact = None
    if cfg.reference == "exact":
        if model.truth is None:
            raise StageError("bias-gate: reference: exact needs a model with a truth (simulator); use reference: truth")
        from nsbiflow.physics.truth import truth_from_spec

        truth = truth_from_spec(model.truth.simulator, {**model.truth.config, **cfg.truth_config})
        exact = Likelihood(model, tables, "exact", truth)
    with Progress("bias-gate") as bar:
        report = run_gate(
            Likelihood(model, tables, "nsbi"),
            pools,
            BiasGateConfig(**cfg.model_dump(exclude={"truth_config", "enforce"})),
            exact,
        )
        for p in report["points"]:
            bar.log(
                f"{p['name']}: bias {p['bias']:+.4f} ({p['bias_over_sigma']:+.3f} sigma, resolution "
                f"{p['resolution']:.3f}), coverage68 {p['coverage_68']:.3f} over {p['toys']} toys: "
                + ("pass" if p["passed"] else "FAIL")
            )
    message = failure(report)
    if message and cfg.enforce:
        raise StageError(message)
    report["enforced"] = cfg.enforce
    io.output("report").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if message:  # not enforced: the chain goes on, the report and the log say so
        print(f"WARNING (not enforced) {message}", file=sys.stderr, flush=True)
