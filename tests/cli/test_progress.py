"""Progress inside steps: the stage programs' JSON lines reach the runner's display (plain mode, not a TTY)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from nsbiflow.backends.local.progress import PlainProgress, StepProgress, progress_file
from nsbiflow.stepcli.progress import PROGRESS_ENV, Progress
from nsbiflow.store import RunManifest, StepRecord
from tests.conftest import REPO, run_cli

TRAINING = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: progress-demo}
steps:
  simulate:
    uses: generate
    foreach: [signal, reference]
    with: {process: "${{ item }}", n_events: 1500, n_holdout: 200, seed: 1}
  train:
    uses: train-ratio
    with: {label: signal, members: 2, seed: 3, hidden: [8], max_epochs: 3, mode: loop}
    inputs: {numerator: "simulate[signal].events", reference: "simulate[reference].events"}
"""


def test_stage_program_writes_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(channel))
    with Progress("train-ratio signal", unit="members", channel_every=0.0) as bar:
        bar.update(0, 4, "members [0] epoch 1")
        bar.update(4, 4, "trained 4/4 members")
    lines = [json.loads(line) for line in channel.read_text().splitlines()]
    assert lines[-1] == {
        "done": 4, "total": 4, "unit": "members", "message": "trained 4/4 members", "label": "train-ratio signal"
    }
    assert lines[0]["message"] == "members [0] epoch 1"


def test_plain_display_prints_step_progress_with_eta(tmp_path: Path) -> None:
    path = progress_file(tmp_path / "work" / "train")
    path.parent.mkdir(parents=True)
    state = StepProgress(path)
    path.write_text('{"done": 1, "total": 4, "unit": "members", "message": "members [1] epoch 18"}\n{"bad json\n')
    assert state.poll() and state.describe() == "1/4 members: members [1] epoch 18"
    with path.open("a") as handle:
        handle.write('{"done": 2, "total": 4, "unit": "members", "message": "m"}\n')
    assert state.poll() and state.eta() is not None and "ETA" in state.describe()
    stream = io.StringIO()
    display = PlainProgress(stream=stream, every=0.0, poll=0.01)
    display.watch("train", path)
    display.update("train", "succeeded", StepRecord(template="train", image="x", parameters={}, seconds=1.0))
    printed = stream.getvalue()
    assert "  train: 2/4 members" in printed and printed.index("  train: ") < printed.index("succeeded")
    assert display.watched == {}
    manifest = RunManifest(run_id="r", workflow={}, parameters={}, started="", store="s", steps={})
    display.finish(manifest)
    assert "run r" in stream.getvalue().splitlines()[-1] and " in " in stream.getvalue().splitlines()[-1]


@pytest.mark.slow
def test_training_progress_reaches_the_plain_display(tmp_path: Path) -> None:
    workflow = tmp_path / "progress.yaml"
    workflow.write_text(TRAINING)
    env = {"NSBIFLOW_STEPS_PATH": str(REPO / "steps")}
    result = run_cli("run", workflow, "--store", tmp_path / "store", "--jobs", "2", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    progress = [line for line in lines if line.startswith("  train: ")]
    assert progress, result.stderr
    assert progress[-1].startswith("  train: 2/2 members: trained 2/2 members"), progress
    # the progress line comes before the step's status line, and the run ends with its wall time
    assert lines.index(progress[-1]) < next(i for i, line in enumerate(lines) if " train succeeded in " in line)
    assert lines[-1].startswith("run ") and " succeeded in " in lines[-1]
    assert os.environ.get(PROGRESS_ENV) is None


SHELL_PROGRESS = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: shell-progress}
steps:
  work:
    run:
      image: busybox:1.36
      command:
        - sh
        - -c
        - |
          echo '{"done": 2, "total": 4, "unit": "chunks", "message": "halfway"}' >> "$NSBIFLOW_PROGRESS"
          sleep 1.2
          for a; do case $a in out=*) echo done > "${a#*=}";; esac; done
        - sh
      outputs: {out: {kind: file}}
"""


def test_rich_display_draws_a_bar_for_a_running_step(tmp_path: Path) -> None:
    from rich.console import Console

    from nsbiflow.backends.local.executor import LocalExecutor
    from nsbiflow.backends.local.progress import RichProgress
    from nsbiflow.engine.plan import load_plan
    from nsbiflow.store import open_store

    workflow = tmp_path / "shell.yaml"
    workflow.write_text(SHELL_PROGRESS)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140, color_system=None)
    manifest = LocalExecutor(open_store(str(tmp_path / "store")), progress=RichProgress(console)).run(
        load_plan(workflow)
    )
    assert manifest.status == "succeeded"
    drawn = screen.getvalue()
    assert "2/4 chunks" in drawn and "halfway" in drawn, drawn[-3000:]
    assert "1/1 steps done" in drawn
    assert "succeeded in " in drawn.splitlines()[-1]
