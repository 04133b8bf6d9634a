"""Binned reinterpretation with a pyhf patchset applied to an archived workspace result."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyhf

from tests.archive.conftest import snapshot
from tests.conftest import run_cli

WORKFLOW = """apiVersion: nsbiflow/v1
kind: Workflow
metadata: {{name: binned}}
interface: {{results: [workspace]}}
outputs: {{workspace: make.workspace}}
steps:
  make:
    run:
      image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
      command: [{python}, {script}]
      parameters: {{signal: {{type: list, default: [5.0, 3.0]}}}}
      outputs: {{workspace: {{kind: file, filename: workspace.json}}}}
"""


def test_patchset_refits_the_archived_workspace(tmp_path: Path) -> None:
    workflow = tmp_path / "binned.yaml"
    script = Path(__file__).with_name("make_workspace.py")
    workflow.write_text(WORKFLOW.format(python=sys.executable, script=script))
    store = tmp_path / "store"
    ran = run_cli("run", workflow, "--store", store, "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout.strip().splitlines()[-1])["run_id"]
    assert run_cli("preserve", run_id, "--name", "binned", "--store", store).returncode == 0
    exported = tmp_path / "nsbiflow-results" / "binned" / "workspace" / "workspace.json"
    spec = json.loads(exported.read_text())
    patchset = {
        "metadata": {
            "name": "new-signal",
            "description": "a bigger signal",
            "digests": {"sha256": pyhf.utils.digest(spec)},
            "labels": ["mass"],
            "references": {"hepdata": "ins0000000"},
        },
        "patches": [
            {
                "metadata": {"name": "m500", "values": [500]},
                "patch": [{"op": "replace", "path": "/channels/0/samples/0/data", "value": [20.0, 12.0]}],
            }
        ],
        "version": "1.0.0",
    }
    patch_file = tmp_path / "patchset.json"
    patch_file.write_text(json.dumps(patchset))
    result = run_cli("reinterpret", "binned", "--patch", patch_file, "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["kind"] == "pyhf-patchset"
    original, patched = report["original_results"]["cls"]["CLs_obs"], report["results"]["cls"]["CLs_obs"]
    assert patched < original  # a larger signal is excluded more strongly
    assert 0.0 < patched < 1.0
    # a patch name that is not in the patchset: one line, nothing written
    before = snapshot(store)
    bad = run_cli("reinterpret", "binned", "--patch", patch_file, "--patch-name", "m900", "--store", store)
    assert bad.returncode == 2 and bad.stderr == "error: the patchset has no patch 'm900' (patches: m500)\n"
    assert snapshot(store) == before
