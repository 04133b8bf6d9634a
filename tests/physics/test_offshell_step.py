"""``generate-offshell`` writes ROOT files that ``load-events`` reads, with one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import uproot
from click.testing import CliRunner

from nsbiflow.physics.events import read_events
from nsbiflow.physics.offshell import OBSERVABLES, Offshell
from nsbiflow.stepcli.main import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_variation_file_loads_with_its_weights(tmp_path: Path) -> None:
    root = tmp_path / "up.root"
    code, out = run(
        "generate-offshell",
        "--param",
        "process=qqZZ_m4l_scale_up",
        "--param",
        "n_events=4000",
        "--out",
        f"events={root}",
    )
    assert code == 0, out
    with uproot.open(root) as handle:
        assert sorted(handle["events"].keys()) == sorted([*OBSERVABLES, "weight"])
        w = handle["events"]["weight"].array(library="np")
    assert w.sum() == pytest.approx(500.0)
    code, out = run(
        "load-events",
        "--param",
        "process=qqZZ_m4l_scale_up",
        "--param",
        'observables=["m4l","angle","pt4l"]',
        "--param",
        "weight_column=weight",
        "--in",
        f"source={root}",
        "--out",
        f"events={tmp_path / 'e.parquet'}",
        "--out",
        f"holdout={tmp_path / 'h.parquet'}",
    )
    assert code == 0, out
    held = read_events(tmp_path / "h.parquet")
    assert held.process == "qqZZ_m4l_scale_up" and len(held) == 2000
    assert held.weights.sum() == pytest.approx(250.0, rel=0.01)


def test_interference_has_negative_weights_and_data_the_yields(tmp_path: Path) -> None:
    assert (
        run(
            "generate-offshell",
            "--param",
            "process=interference",
            "--param",
            "n_events=3000",
            "--out",
            f"events={tmp_path / 'i.root'}",
        )[0]
        == 0
    )
    with uproot.open(tmp_path / "i.root") as handle:
        assert (handle["events"]["weight"].array(library="np") < 0).mean() > 0.5
    code, out = run(
        "generate-offshell",
        "--param",
        "process=observed",
        "--param",
        "mu=2.0",
        "--param",
        "poisson=false",
        "--param",
        'truth={"nu_qqZZ": 300}',
        "--out",
        f"events={tmp_path / 'o.root'}",
    )
    assert code == 0, out
    with uproot.open(tmp_path / "o.root") as handle:
        n = handle["events"].num_entries
    assert n == round(Offshell().gg_yield(2.0)) + 300


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("process=ttZ", "unknown process 'ttZ'"),
        ('truth={"nu_ggH": -2}', "parameter 'truth.nu_ggH': Input should be greater than 0"),
        ('nuisances={"jes": 1}', "unknown nuisance 'jes'"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path: Path, param: str, message: str) -> None:
    args = ["generate-offshell", "--param", "process=ggH", "--param", param, "--out", f"events={tmp_path / 'x.root'}"]
    code, out = run(*args)
    assert code == 1 and message in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "x.root").exists()
