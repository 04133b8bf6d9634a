"""CLI details a new user meets: show's order and files, exports named by fan-out key, one line per mistake,
interrupted runs' counts, and a corrupted output blob that must not pass for a successful export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import CliResult, run_cli

WORKFLOW = r"""apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: details}
outputs:
  diagnostics: check.report
  summary: summary.summary
steps:
  summary:
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do case $a in summary=*) cat in/reports/*/metrics.json > "${a#*=}";; esac; done', sh]
      inputs: {reports: {kind: dir, multiple: true}}
      outputs: {summary: {kind: file, filename: summary.txt}}
    inputs: {reports: check.report}
  check:
    foreach: [signal, background]
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do case $a in *=*) export "$a";; esac; done; echo $label > "$report/metrics.json"', sh]
      parameters: {label: {type: str}}
      outputs: {report: {kind: dir}}
    with: {label: "${{ item }}"}
"""


def _run(tmp_path: Path, *extra: str) -> tuple[CliResult, dict[str, Any]]:
    workflow = tmp_path / "details.yaml"
    workflow.write_text(WORKFLOW)
    result = run_cli("run", workflow, "--store", tmp_path / "store", "--json", *extra, cwd=tmp_path)
    summary = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    return result, summary


def test_show_lists_steps_in_run_order_and_names_files(tmp_path: Path) -> None:
    result, _ = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    exported = tmp_path / "nsbiflow-results" / "details" / "diagnostics"
    assert sorted(p.name for p in exported.iterdir()) == ["background", "signal"]  # the fan-out keys, not 0, 1
    assert (exported / "signal" / "metrics.json").read_text().strip() == "signal"
    shown = run_cli("show", "latest", "--store", tmp_path / "store")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    steps = [line.split()[0] for line in lines[lines.index("steps (in run order):") + 1 : lines.index("outputs:")]]
    assert set(steps) == {"check[signal]", "check[background]", "summary"}
    assert steps[-1] == "summary", steps  # not alphabetical: it ran after both checks
    outputs = lines[lines.index("outputs:") + 1 :]
    assert sum(line.strip() == "metrics.json" for line in outputs) == 2, outputs


def test_a_fanned_out_mistake_is_reported_once(tmp_path: Path) -> None:
    workflow = tmp_path / "typo.yaml"
    workflow.write_text(WORKFLOW.replace("with: {label: ", "with: {lable: 1, label: "))
    checked = run_cli("validate", workflow)
    assert checked.returncode == 2
    problems = [line for line in checked.stderr.splitlines() if "lable" in line]
    assert len(problems) == 1, checked.stderr
    assert problems[0].startswith(f"{workflow}:") and "did you mean 'label'" in problems[0]


def test_validate_checks_overrides_as_run_would_apply_them(tmp_path: Path) -> None:
    workflow = tmp_path / "params.yaml"
    declared = "metadata: {name: details}\nparameters: {n: {type: int, default: 1}}"
    workflow.write_text(WORKFLOW.replace("metadata: {name: details}", declared))
    assert run_cli("validate", workflow, "--set", "n=3").returncode == 0
    wrong_type = run_cli("validate", workflow, "--set", "n=three")
    assert wrong_type.returncode == 2 and "--set n=three: expected an int" in wrong_type.stderr, wrong_type.stderr
    unknown = run_cli("validate", workflow, "--set", "m=3")
    assert unknown.returncode == 2 and "no parameter 'm'" in unknown.stderr, unknown.stderr
    assert "Traceback" not in wrong_type.stderr + unknown.stderr


def test_a_corrupted_output_blob_fails_the_export_and_leaves_no_stale_copy(tmp_path: Path) -> None:
    first, summary = _run(tmp_path)
    assert first.returncode == 0
    exported = tmp_path / "nsbiflow-results" / "details" / "summary" / "summary.txt"
    assert exported.is_file()
    blob = Path(summary["outputs"]["summary"]["store_location"])
    blob.chmod(0o644)
    blob.write_text("tampered\n")
    second, _ = _run(tmp_path)
    assert second.returncode == 1
    stderr = second.stderr
    assert "error: could not export output 'summary'" in stderr, stderr
    assert not exported.exists(), "the previous run's copy would pass for this run's output"
    assert "Traceback" not in stderr


def test_an_interrupted_runs_counts_are_reconciled(tmp_path: Path) -> None:
    result, summary = _run(tmp_path)
    assert result.returncode == 0
    store = tmp_path / "store"
    manifest_path = store / "runs" / str(summary["run_id"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    gone = subprocess.Popen(["true"])
    gone.wait()
    manifest.update(status="running", pid=gone.pid, finished=None, outputs={})
    manifest["steps"]["check[signal]"]["status"] = "running"  # its outputs reached the cache before the kill
    manifest["steps"]["summary"].update(status="running", key="sha256:" + "0" * 64)  # this one never finished
    manifest_path.write_text(json.dumps(manifest))
    listed = run_cli("runs", "--store", store, "--json")
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["status"] == "interrupted"
    assert row["steps"] == {"succeeded": 2, "interrupted": 1}, row


def test_latest_is_the_last_run_started_even_within_one_second() -> None:
    """Run ids sort in the order they were made: with whole seconds, two runs in the same second were ordered by
    their random suffix and ``latest`` named the earlier one half the time (seen in CI)."""
    from nsbiflow.backends.local.executor import new_run_id
    from nsbiflow.cli.local import resolve_run_id

    made = [new_run_id() for _ in range(200)]
    assert len(set(made)) == len(made)
    assert sorted(made) == made
    assert resolve_run_id(sorted(made), "latest") == made[-1]
    older = "20261202T061739-fffff0"  # an id of an older store, same second, no fraction
    assert sorted([made[-1], older])[0] == older
