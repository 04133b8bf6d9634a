"""``infer`` streams: its peak memory does not grow with the number of events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from nsbiflow.physics.events import Events, write_events
from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel
from tests.physics.conftest import run_step

_PEAK = """
import resource, sys
from nsbiflow.stepcli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    if exc.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(args: list[str]) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip().splitlines()[-1])


def test_infer_peak_memory_is_flat_in_events(tmp_path: Path) -> None:
    model = ToyModel()
    rng = np.random.default_rng(0)
    sizes = {"small": 20_000, "large": 600_000}
    for name, n in sizes.items():
        x = model.sample("background", n, rng)
        write_events(Events(x, np.ones(n), list(OBSERVABLES), {"process": "observed"}), tmp_path / f"{name}.parquet")
    ref = model.sample("reference", 4000, rng)
    num = model.sample("background", 4000, rng)
    for name, x in (("ref", ref), ("num", num)):
        meta = {"process": "reference" if name == "ref" else "background"}
        write_events(Events(x, np.ones(len(x)), list(OBSERVABLES), meta), tmp_path / f"{name}.parquet")
    ens = tmp_path / "ensemble"
    ens.mkdir()
    run = run_step(
        "train-ratio",
        {"members": 2, "hidden": [16], "max_epochs": 2},
        [("numerator", tmp_path / "num.parquet"), ("reference", tmp_path / "ref.parquet")],
        {"ensemble": ens},
    )
    assert run.exit_code == 0, run.stderr
    peaks = {}
    for name in sizes:
        out = tmp_path / f"ratios-{name}"
        out.mkdir()
        peaks[name] = _peak_rss_kib(
            [
                "infer",
                "--param",
                "batch_size=10000",
                "--param",
                "normalise=false",
                "--in",
                f"ensembles={ens}",
                "--in",
                f"data={tmp_path / f'{name}.parquet'}",
                "--out",
                f"ratios={out}",
            ]
        )
        info = json.loads((out / "inference.json").read_text())
        assert info["events"]["observed"] == sizes[name]
    # 30x the events: holding them (6 columns of float64 in, 3 out) would add > 40 MiB; streaming adds ~nothing
    growth_mib = (peaks["large"] - peaks["small"]) / 1024
    assert growth_mib < 15, peaks
