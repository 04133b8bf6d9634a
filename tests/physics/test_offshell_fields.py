"""Each generate-offshell step of the off-shell workflow is passed exactly the truth fields its events depend on.

For every OffshellConfig field: perturb it, plan the workflow with the perturbed truth, and simulate every
sample twice, with the whole truth and with what the planner passes the step. They must be the same events
(a field the sample depends on always reaches it: no stale background is ever reused), and a step's truth
must change exactly when its events do (a signal patch re-runs the signal's chain only).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nsbiflow.engine.plan import load_plan
from nsbiflow.physics.offshell import Offshell, OffshellConfig, simulate

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "offshell-toy.yaml"
# so the pseudo-data depend on the per-sigma sizes too (both act on both regions: the pass-by-nuisance table
# does not look at the process, so an angle tilt would reach the control region, which it leaves alone)
DATA_NUISANCES = {"m4l_scale": 1.0, "m4l_resolution": -1.0}
N_EVENTS = 200
# conservative on purpose: a shifted sample is passed the whole 'systematics' mapping, though only its own
# process' entry of its own nuisance changes its events
COARSE = {"systematics"}


def _perturbed(field: str, value: Any) -> Any:
    if field == "systematics":
        return {**value, "m4l_scale": ["qqZZ"]}  # qqZZ_cr no longer shifted by the m4l scale
    if isinstance(value, list):
        return [1.5 * v for v in value]
    return 1.5 * value


PERTURBATIONS = {f: _perturbed(f, v) for f, v in OffshellConfig().model_dump().items()}


@cache
def _steps(truth: str) -> dict[str, dict[str, Any]]:
    overrides = {"truth": truth, "data_nuisances": json.dumps(DATA_NUISANCES)}
    plan = load_plan(WORKFLOW, overrides=overrides)
    return {s.id: s.parameters for s in plan.steps.values() if s.definition.name == "generate-offshell"}


def _events(parameters: dict[str, Any], truth: dict[str, Any]) -> np.ndarray:
    p = parameters
    x, w = simulate(Offshell(OffshellConfig(**truth)), p["process"], N_EVENTS, p["seed"], p["nuisances"], p["mu"],
                    p["gg_factor"], p["qq_factor"], p["poisson"], p.get("stream", 0))  # fmt: skip
    return np.column_stack([x, w])


def test_every_config_field_is_perturbed() -> None:
    assert set(PERTURBATIONS) == set(OffshellConfig.model_fields)
    # 16 signal-region, 5 control-region and 2 pseudo-data files, and the 16 calibration samples
    assert len(_steps("{}")) == 39 and all(p["truth"] == {} for p in _steps("{}").values())


@pytest.mark.parametrize("field", sorted(PERTURBATIONS))
def test_a_field_reaches_exactly_the_samples_it_changes(field: str) -> None:
    truth = {field: PERTURBATIONS[field]}
    nominal, planned = _steps("{}"), _steps(json.dumps(truth))
    changed_events, changed_truth = set(), set()
    for step_id, parameters in planned.items():
        whole = _events(parameters, truth)
        passed = _events(parameters, parameters["truth"])
        assert np.array_equal(whole, passed), f"{step_id}: {field!r} changes its events but is not passed to it"
        if not np.array_equal(whole, _events(nominal[step_id], {})):
            changed_events.add(step_id)
        if parameters["truth"] != nominal[step_id]["truth"]:
            changed_truth.add(step_id)
    assert changed_events, f"perturbing {field!r} changed no sample: pick a perturbation that does"
    assert changed_events <= changed_truth
    if field not in COARSE:
        assert changed_truth == changed_events, f"{field!r} is passed to samples it does not change"
