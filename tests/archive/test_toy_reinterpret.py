"""Reinterpretation of the toy NSBI analysis (small sizes): only the signal-dependent steps re-run, and the
answer matches a full fresh run of the patched workflow. Skipped, saying why, while the toy does not plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import NsbiflowError
from tests.conftest import REPO, run_cli

TOY = REPO / "workflows" / "toy-nsbi.yaml"
# small sizes for the test; only the names the toy workflow declares are used
SMALL = {"n_train": "4000", "n_holdout": "4000", "members_per_chunk": "2", "max_epochs": "10", "chunks": "[0]",
         "hidden": "[32, 32]", "gate_scale": "100", "bias_toys": "10", "reference_holdout": "4000",
         "n_calibration": "4000"}


def _toy_overrides() -> dict[str, str]:
    try:
        plan = load_plan(TOY)
    except NsbiflowError as exc:
        pytest.skip(f"{TOY.name} does not plan yet: {str(exc).splitlines()[0]}")
    if not plan.workflow.interface.parameters:
        pytest.skip(f"{TOY.name} declares no interface parameters")
    return {k: v for k, v in SMALL.items() if k in plan.workflow.parameters}


@pytest.mark.slow
def test_toy_reinterpretation_reruns_only_signal_dependent_steps(tmp_path: Path) -> None:
    overrides = _toy_overrides()
    original = load_plan(TOY, overrides=overrides)
    name = original.workflow.interface.parameters[0]
    value = original.parameters[name]
    new = value + 0.5 if isinstance(value, float) else value + 1
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    store = tmp_path / "store"
    ran = run_cli("run", TOY, "--store", store, "--json", *sets, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    run_id = json.loads(ran.stdout.strip().splitlines()[-1])["run_id"]
    assert run_cli("preserve", run_id, "--name", "toy", "--store", store).returncode == 0
    assert run_cli("archive", "verify", "toy", "--store", store).returncode == 0
    patch = tmp_path / "signal.json"
    patch.write_text(json.dumps([{"op": "replace", "path": f"/parameters/{name}/default", "value": new}]))
    result = run_cli("reinterpret", "toy", "--patch", patch, "--store", store, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # the signal-dependent steps: those whose parameters change, and everything downstream of them
    patched = load_plan(TOY, overrides={**overrides, name: json.dumps(new)})
    changed = {sid for sid, s in patched.steps.items() if s.parameters != original.steps[sid].parameters}
    assert set(report["reran"]) == patched.downstream_of(changed)
    assert report["reused"], "nothing was reused: the background models should be"
    fresh = run_cli("run", TOY, "--store", tmp_path / "fresh", "--json", *sets, "--set", f"{name}={new}", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    fresh_outputs = json.loads(fresh.stdout.strip().splitlines()[-1])["outputs"]
    for result_name, ref in report["results"].items():
        assert fresh_outputs[result_name]["digest"] == ref["digest"], result_name
