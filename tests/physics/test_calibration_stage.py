"""The calibrate-ratio stage on the CI chain's signal ensemble: the artifact is stored, loaded and applied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics.calibration import CALIBRATION, load_calibration
from nsbiflow.physics.ensemble import Ensemble
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.events import read_events
from tests.physics.conftest import Chain, must, run_step


def calibration_samples(root: Path, seed: int) -> list[Path]:
    """Calibration events of the signal and the reference (the generate stage's third stream)."""
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for process in ("signal", "reference"):
        paths = {split: root / f"{process}.{split}.parquet" for split in ("events", "holdout", "calibration")}
        params = {"process": process, "seed": seed, "n_events": 100, "n_holdout": 100, "n_calibration": 8000}
        must(run_step("generate", params, outputs=paths))
        out.append(paths["calibration"])
    return out


@pytest.fixture(scope="module")
def calibrated(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calibrate-ratio")
    samples = calibration_samples(root / "samples", chain.seed)
    out = {}
    for enabled in (True, False):
        target = root / f"ensemble-{enabled}"
        target.mkdir()
        must(
            run_step(
                "calibrate-ratio",
                {"enabled": enabled},
                [("ensemble", chain.ensemble("signal")), *[("samples", p) for p in samples]],
                {"ensemble": target},
            )
        )
        out[str(enabled)] = target
    return out


def test_the_stored_calibration_is_what_the_ensemble_applies(chain: Chain, calibrated: dict[str, Path]) -> None:
    stored = load_calibration(calibrated["True"] / "signal" / CALIBRATION)
    assert stored.label == "signal" and stored.n_numerator == stored.n_denominator == 8000
    raw, cal = Ensemble.load(chain.ensemble("signal"), "signal"), Ensemble.load(calibrated["True"], "signal")
    assert raw.calibration is None and cal.calibration == stored
    x = read_events(chain.events("reference", "holdout")).x[:2000]
    (r_raw, spread_raw), (r_cal, spread_cal) = raw.log_ratio(x), cal.log_ratio(x)
    np.testing.assert_allclose(r_cal, stored.apply(r_raw), rtol=0, atol=1e-12)
    np.testing.assert_allclose(spread_cal, spread_raw * stored.slope(r_raw), rtol=0, atol=1e-12)
    assert not np.allclose(r_cal, r_raw)  # a 2x32x32 CI ensemble is visibly recalibrated
    order = np.argsort(r_raw)
    assert np.all(np.diff(r_cal[order]) >= -1e-12)  # monotone in the raw ratio
    # the members themselves are the gathered ones, untouched
    assert json.loads((calibrated["True"] / "signal" / "ensemble.json").read_text()) == raw.manifest


def test_switched_off_passes_the_raw_ensemble(chain: Chain, calibrated: dict[str, Path]) -> None:
    assert not (calibrated["False"] / "signal" / CALIBRATION).exists()
    off = Ensemble.load(calibrated["False"], "signal")
    x = read_events(chain.events("signal", "holdout")).x[:500]
    raw = Ensemble.load(chain.ensemble("signal"), "signal")
    np.testing.assert_array_equal(off.log_ratio(x)[0], raw.log_ratio(x)[0])


def test_a_calibration_of_another_ensemble_is_refused(calibrated: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(calibrated["True"], tmp_path / "copy")
    path = tmp_path / "copy" / "signal" / CALIBRATION
    path.write_text(path.read_text().replace('"label": "signal"', '"label": "background"'))
    with pytest.raises(StageError, match="calibrates 'background', not ensemble 'signal'"):
        Ensemble.load(tmp_path / "copy", "signal")


def test_a_missing_calibration_sample_is_named(chain: Chain, tmp_path: Path) -> None:
    samples = calibration_samples(tmp_path / "samples", chain.seed)
    (tmp_path / "out").mkdir()
    run = run_step(
        "calibrate-ratio",
        inputs=[("ensemble", chain.ensemble("signal")), ("samples", samples[0])],
        outputs={"ensemble": tmp_path / "out"},
    )
    assert run.exit_code != 0
    assert "needs a calibration sample of its denominator 'reference'" in run.stderr


def test_gather_keeps_the_calibration_of_a_single_chunk(
    chain: Chain, calibrated: dict[str, Path], tmp_path: Path
) -> None:
    """A label calibrated as one chunk (the off-shell workflow calibrates per ratio, then gathers) keeps its
    calibration through gather-ensemble; a calibrated chunk of a label with several chunks is refused."""
    from nsbiflow.physics.collection import gather

    gather([calibrated["True"]], tmp_path / "one")
    assert Ensemble.load(tmp_path / "one", "signal").calibration == load_calibration(
        calibrated["True"] / "signal" / CALIBRATION
    )
    second = tmp_path / "second"
    shutil.copytree(calibrated["False"], second)
    manifest = json.loads((second / "signal" / "ensemble.json").read_text())
    for member in manifest["members"]:  # another chunk: other member names
        member["name"] = member["name"] + "-b"
    (second / "signal" / "ensemble.json").write_text(json.dumps(manifest))
    with pytest.raises(StageError, match="a calibrated chunk of an ensemble of 2 chunks"):
        gather([calibrated["True"], second], tmp_path / "two")
