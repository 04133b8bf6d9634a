"""A reinterpretation prints and exports the table of new vs original results, read from a generic document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsbiflow.archive.compare import compare_documents, methods, text_table
from tests.conftest import run_cli

# `fit` writes a result document whose numbers follow `scale`: mu_hat = 2 * scale, 68% interval +-0.5, Z0 = 3
WORKFLOW = r"""apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: tiny-fit}
parameters:
  scale: {type: float, default: 1.0, description: the signal hypothesis}
interface:
  parameters: [scale]
  results: [results]
outputs:
  results: fit.results
  plots: fit.plots
  notes: note.text
steps:
  note:
    foreach: [alpha, beta]
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do case $a in *=*) export "$a";; esac; done; echo "$name" > "$text"', sh]
      parameters: {name: {type: str}}
      outputs: {text: {kind: file, filename: note.txt}}
    with: {name: "${{ item }}"}
  fit:
    run:
      image: busybox:1.36
      command:
        - sh
        - -c
        - |
          for a; do case $a in *=*) export "$a";; esac; done
          m=$(awk "BEGIN {print 2 * $scale}"); lo=$(awk "BEGIN {print $m - 0.5}"); hi=$(awk "BEGIN {print $m + 0.5}")
          printf '{"exact": null, "nsbi": {"mu_hat": %s, "interval_68": [%s, %s], "z0": 3.0, "scan_mu": [0, 1]},
           "mu_injected": 1.0}' "$m" "$lo" "$hi" > "$results"
          echo "scan at scale $scale" > "$plots/scans.png"
        - sh
      parameters: {scale: {type: float}}
      outputs: {results: {kind: file, filename: results.json}, plots: {kind: dir}}
    with: {scale: "${{ params.scale }}"}
"""


def test_generic_documents_tolerate_new_methods_and_nesting() -> None:
    original = {"exact": {"mu_hat": 1.0, "interval_68": [0.5, 1.5], "scan_t": [1, 2]}, "settings": {"n": 3}}
    new = {"methods": {"exact": {"mu_hat": 1.5}, "fancy": {"poi": {"kappa": {"hat": 0.3, "upper_limit": 0.9}}}}}
    assert methods(original) == {"exact": {"mu_hat": 1.0, "interval_68": (0.5, 1.5)}}
    table = compare_documents("results", original, new, "k=1", "k=2")
    rows = {(r.method, r.quantity): (r.original, r.new, r.change) for r in table.rows}
    assert rows[("exact", "mu_hat")] == (1.0, 1.5, 0.5)
    assert rows[("exact", "interval_68")] == ((0.5, 1.5), None, None)
    assert rows[("fancy", "poi.kappa.hat")] == (None, 0.3, None)
    assert rows[("fancy", "poi.kappa.upper_limit")] == (None, 0.9, None)
    assert "original (k=1) vs new (k=2)" in text_table(table)


@pytest.fixture
def archived(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "wf").mkdir()
    workflow = tmp_path / "wf" / "tiny.yaml"
    workflow.write_text(WORKFLOW)
    store = tmp_path / "store"
    ran = run_cli("run", workflow, "--store", store, "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout.strip().splitlines()[-1])["run_id"]
    kept = run_cli("preserve", run_id, "--name", "tiny", "--store", store)
    assert kept.returncode == 0, kept.stderr
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps([{"op": "replace", "path": "/parameters/scale/default", "value": 1.5}]))
    return store, patch


def test_reinterpretation_prints_and_exports_new_vs_original(archived: tuple[Path, Path], tmp_path: Path) -> None:
    store, patch = archived
    out = run_cli("reinterpret", "tiny", "--patch", patch, "--store", store, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "results: original (scale=1.0) vs new (scale=1.5)" in out.stdout
    line = next(x for x in out.stdout.splitlines() if x.split()[:2] == ["nsbi", "mu_hat"])
    assert line.split()[2:] == ["2.000", "3.000", "+1.000"], line
    assert "exact      (no result)" in out.stdout or "exact  (no result)" in out.stdout.replace("  ", " ") or any(
        x.split()[:2] == ["exact", "(no"] for x in out.stdout.splitlines()
    )
    folder = tmp_path / "nsbiflow-results" / "tiny-reinterpreted"
    table = json.loads((folder / "comparison.json").read_text())[0]
    rows = {(r["method"], r["quantity"]): r for r in table["rows"]}
    assert rows[("nsbi", "interval_68")]["original"] == [1.5, 2.5]
    assert rows[("nsbi", "interval_68")]["new"] == [2.5, 3.5]
    assert rows[("nsbi", "z0")]["change"] == 0.0
    assert not any("scan" in q for _, q in rows)
    assert "| nsbi | mu_hat | 2.000 | 3.000 | +1.000 |" in (folder / "comparison.md").read_text()
    # the plots of each hypothesis, each folder saying which hypothesis it shows
    assert (folder / "original" / "plots" / "scans.png").read_text().strip() == "scan at scale 1.0"
    assert (folder / "new" / "plots" / "scans.png").read_text().strip() == "scan at scale 1.5"
    assert (folder / "original" / "hypothesis.txt").read_text().strip() == "scale=1.0"
    assert (folder / "new" / "hypothesis.txt").read_text().strip() == "scale=1.5"
    for side in ("original", "new"):  # gathered outputs in folders named by the fan-out key
        assert (folder / side / "notes" / "beta" / "note.txt").read_text().strip() == "beta"
    # --json carries the same table
    again = run_cli("reinterpret", "tiny", "--patch", patch, "--store", store, "--json", cwd=tmp_path)
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["comparison"][0]["rows"] == table["rows"]
    # `show` of the reinterpretation's run does not point at its deleted temporary workflow file
    shown = run_cli("show", report["run_id"], "--store", store)
    assert shown.returncode == 0, shown.stderr
    workflow_line = next(x for x in shown.stdout.splitlines() if x.startswith("workflow"))
    assert "nsbiflow-reinterpret-" not in workflow_line or "deleted" in workflow_line, workflow_line


def test_reinterpret_user_errors_exit_2(archived: tuple[Path, Path], tmp_path: Path) -> None:
    store, patch = archived
    missing = run_cli("reinterpret", "nothing-here", "--patch", patch, "--store", store, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: "), missing.stderr
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps([{"op": "replace", "path": "/metadata/name", "value": "x"}]))
    refused = run_cli("reinterpret", "tiny", "--patch", outside, "--store", store, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
