"""The support classifier: its pool is the signal and background samples (never the reference), the rule is
``p_pool / p_ref > max_ratio`` (docs/physics.md), and every process's fraction outside is reported."""

from __future__ import annotations

import json
from pathlib import Path

from tests.physics.conftest import generate_sample, must, run_step


def test_pool_excludes_the_reference_and_covers_a_signal_the_reference_misses(tmp_path: Path) -> None:
    near, far = tmp_path / "near", tmp_path / "far"
    paths = {p: generate_sample(near, p, 11)[0] for p in ("background", "reference")}
    # a signal core far outside the reference N(0, 1.5^2): the support must see it (the signal is in the pool)
    paths["signal"] = generate_sample(far, "signal", 11, signal_mean=6.0, signal_width=0.5)[0]
    out = tmp_path / "support"
    out.mkdir()
    run = must(
        run_step(
            "support",
            {"seed": 2, "max_ratio": 20.0, "max_epochs": 15},
            [
                ("reference", paths["reference"]),
                *[("samples", paths[p]) for p in ("signal", "background", "reference")],
            ],
            {"support": out},
        )
    )
    record = json.loads((out / "support.json").read_text())
    assert record["pool"] == ["signal", "background"] and record["excluded_from_pool"] == ["reference"]
    assert "left out of the pool" in run.stderr + run.stdout
    fractions = record["outside_fraction"]
    assert set(fractions) == {"signal", "background", "reference"}
    # the far signal core (70 % of the signal) lies where p_pool / p_ref is huge; the background does not
    assert fractions["signal"] > 0.5, fractions
    assert fractions["background"] < 0.05 and fractions["reference"] < 0.02, fractions


def test_a_pool_of_only_the_reference_is_refused(tmp_path: Path) -> None:
    (ref,) = [generate_sample(tmp_path, "reference", 3)[0]]
    out = tmp_path / "support"
    out.mkdir()
    run = run_step("support", {"max_epochs": 2}, [("reference", ref), ("samples", ref)], {"support": out})
    assert run.exit_code != 0
    assert "every sample bound to 'samples' is the reference" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
