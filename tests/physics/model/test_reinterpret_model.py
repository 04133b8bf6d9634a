"""The model file is part of the archive, and a reinterpretation may patch it: only the fit re-runs.

A small workflow (no training: a binned model of raw toy events) is run, preserved and reinterpreted with
the model patched by a JSON patch (a new signal coefficient) and pointed to through the interface input
``fit.model``; the answer equals a fresh run with the patched model.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonpatch
import pytest
import yaml

from tests.conftest import REPO, run_cli

WORKFLOW = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: binned-model}
parameters:
  seed: {type: int, default: 2}
interface:
  inputs: [fit.model]
  results: [results]
outputs:
  results: fit.results
steps:
  simulate:
    uses: generate
    foreach: [signal, background]
    with: {process: "${{ item }}", n_events: 100, n_holdout: 4000, seed: "${{ params.seed }}"}
  data:
    uses: generate-data
    with: {seed: "${{ params.seed }}"}
  fit:
    uses: fit
    with: {methods: [nsbi], impacts: false}
    inputs:
      model: {path: model.yaml}
      events: [simulate.holdout, data.events]
"""

MODEL = {
    "apiVersion": "nsbiflow/v1",
    "kind": "Model",
    "metadata": {"name": "binned"},
    "parameters": {"mu": {"poi": True, "init": 1.0, "bounds": [0.0, 5.0]}, "bkg_norm": {}},
    "regions": {
        "SR": {
            "type": "binned",
            "observable": "x0",
            "edges": {"bins": 6},
            "data": "observed",
            "processes": {
                "signal": {"sample": "signal", "yield": 100.0, "coefficient": "mu"},
                "background": {
                    "sample": "background",
                    "yield": 1000.0,
                    "modifiers": [{"type": "normsys", "parameter": "bkg_norm", "lo": 0.95, "hi": 1.05}],
                },
            },
        }
    },
}


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_patched_model_reruns_only_the_fit(tmp_path: Path) -> None:
    work = tmp_path / "wf"
    work.mkdir()
    (work / "workflow.yaml").write_text(WORKFLOW)
    (work / "model.yaml").write_text(yaml.safe_dump(MODEL, sort_keys=False))
    store, steps = tmp_path / "store", str(REPO / "steps")
    ran = run_cli("run", work / "workflow.yaml", "--store", store, "--json", "--steps", steps, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    run_id = _last_json(ran.stdout)["run_id"]
    assert run_cli("preserve", run_id, "--name", "binned", "--store", store).returncode == 0
    shown = run_cli("archive", "show", "binned", "--store", store)
    assert shown.returncode == 0 and "/steps/fit/inputs/model" in shown.stdout, shown.stdout
    # the reinterpreter's change: a JSON patch on the model document (a new signal coefficient)
    operation = [{"op": "replace", "path": "/regions/SR/processes/signal/coefficient", "value": "2 * mu"}]
    patched_model = jsonpatch.apply_patch(MODEL, operation)
    (tmp_path / "model-2mu.yaml").write_text(yaml.safe_dump(patched_model, sort_keys=False))
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/steps/fit/inputs/model/path", "value": "model-2mu.yaml"}]))
    result = run_cli("reinterpret", "binned", "--patch", patch, "--store", store, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = _last_json(result.stdout)
    assert report["reran"] == ["fit"], report
    assert set(report["reused"]) == {"simulate[signal]", "simulate[background]", "data"}, report
    # the answer equals a fresh run of the workflow with the patched model
    (work / "model.yaml").write_text(yaml.safe_dump(patched_model, sort_keys=False))
    fresh = run_cli("run", work / "workflow.yaml", "--store", tmp_path / "fresh", "--json", "--steps", steps)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert _last_json(fresh.stdout)["outputs"]["results"]["digest"] == report["results"]["results"]["digest"]
