"""Must-show: a user's own ROOT analysis, in a folder outside the repository, runs end to end with catalog
steps only, and its NSBI 68 % interval is within 5 % of the exact one (the exact likelihood computed here,
from the user's truth densities, on the same events and the same model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsbiflow.physics.model.analysis import analyse
from nsbiflow.physics.model.data import read_samples
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import load_model
from tests.e2e.user_analysis import UserTruth, write_analysis

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_user_analysis_runs_outside_the_repository_and_matches_the_exact_interval(tmp_path: Path) -> None:
    folder = tmp_path / "my-analysis"
    workflow = write_analysis(folder, n_events=40000)
    assert REPO not in folder.resolve().parents
    env = {k: v for k, v in os.environ.items() if k != "NSBIFLOW_STEPS_PATH"}
    nsbiflow = str(Path(sys.executable).parent / "nsbiflow")
    run = subprocess.run(
        [
            nsbiflow,
            "run",
            workflow.name,
            "--store",
            str(tmp_path / "store"),
            "--results",
            str(tmp_path / "out"),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results.json")).read_text())
    nsbi = results["nsbi"]
    assert results.get("exact") is None  # the user's model names no simulator: the workflow cannot know the truth
    # the exact likelihood: the same model, events and yields, with the user's truth densities
    ratios = next(p.parent for p in (tmp_path / "out").rglob("inference.json"))
    tables, _ = read_samples([ratios])
    exact = analyse(
        Likelihood(load_model(folder / "model.yaml"), tables, "exact", UserTruth()), with_cls=False, with_impacts=False
    )["pois"]["mu"]
    ratio = nsbi["width_68"] / exact["width_68"]
    assert abs(ratio - 1.0) < 0.05, (nsbi, exact["interval_68"], ratio)
    assert abs(nsbi["mu_hat"] - exact["hat"]) < 0.25 * exact["width_68"]
    assert results["histogram"] is not None
