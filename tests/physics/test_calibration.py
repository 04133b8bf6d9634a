"""Calibration of a learned log-ratio (physics/calibration.py) against exact densities.

Two 5-D Gaussians (numerator mean shifted by 0.6 in every coordinate against a unit-normal denominator) have the
exact ``log r = 0.6 * sum(x) - 5 * 0.18``. A ratio tempered to ``r^1.1`` fails the ratio-binned closure gate on
an independent sample and passes it once calibrated; the exact ratio is (nearly) unchanged by calibration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics.calibration import RatioCalibration, fit_calibration, load_calibration, save_calibration
from nsbiflow.physics.diagnostics import ratio_closure
from nsbiflow.physics.errors import StageError

SHIFT, DIM, N = 0.6, 5, 40000
TOLERANCE = 3.09  # calibrate's default max_ratio_closure_z


def log_r(x: np.ndarray) -> np.ndarray:
    """Exact log p_num / p_den."""
    return SHIFT * x.sum(axis=1) - DIM * SHIFT**2 / 2


def samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, DIM)) + SHIFT, rng.standard_normal((N, DIM))


def closure_z(s_num: np.ndarray, s_den: np.ndarray) -> float:
    """calibrate's ratio-binned closure of a ratio given by its log r on both samples (normalised over den)."""
    r_den = np.exp(s_den)
    norm = r_den.mean()
    return float(ratio_closure(s_num, np.ones(len(s_num)), s_den, np.ones(len(s_den)), r_den / norm)["z"])


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    cal_num, cal_den = samples(1)
    test_num, test_den = samples(2)
    return {"cal_num": cal_num, "cal_den": cal_den, "test_num": test_num, "test_den": test_den}


def fit(data: dict[str, np.ndarray], transform: object) -> RatioCalibration:
    s_num, s_den = transform(log_r(data["cal_num"])), transform(log_r(data["cal_den"]))  # type: ignore[operator]
    return fit_calibration("test", s_num, np.ones(N), s_den, np.ones(N))


def test_tempered_ratio_is_restored(data: dict[str, np.ndarray]) -> None:
    temper = lambda s: 1.1 * s  # noqa: E731
    t_num, t_den = temper(log_r(data["test_num"])), temper(log_r(data["test_den"]))
    before = closure_z(t_num, t_den)
    assert before > 2 * TOLERANCE, before  # the gate sees the tempered ratio
    cal = fit(data, temper)
    after = closure_z(cal.apply(t_num), cal.apply(t_den))
    assert after < TOLERANCE, after
    # and the map is the inverse tempering where the events are (up to the normalisation constant)
    s = log_r(data["test_den"])
    inside = (s > np.quantile(s, 0.02)) & (s < np.quantile(log_r(data["test_num"]), 0.98))
    diff = cal.apply(temper(s[inside])) - s[inside]
    assert np.std(diff) < 0.05 and abs(np.mean(diff)) < 0.05, (np.std(diff), np.mean(diff))


def test_exact_ratio_nearly_unchanged(data: dict[str, np.ndarray]) -> None:
    cal = fit(data, lambda s: s)
    s_num, s_den = log_r(data["test_num"]), log_r(data["test_den"])
    assert abs(closure_z(cal.apply(s_num), cal.apply(s_den))) < TOLERANCE
    central = s_den[(s_den > np.quantile(s_den, 0.01)) & (s_den < np.quantile(s_num, 0.99))]
    assert np.max(np.abs(cal.apply(central) - central)) < 0.1
    # unit mean over the calibration denominator: on an independent one, the exact ratio normalised there
    cal_den = log_r(data["cal_den"])
    assert np.mean(np.exp(cal.apply(cal_den))) == pytest.approx(1.0, abs=1e-9)
    expected = np.mean(np.exp(s_den)) / np.mean(np.exp(cal_den))
    assert abs(np.mean(np.exp(cal.apply(s_den))) - expected) < 0.01


def test_monotone_and_positive_with_sane_tails(data: dict[str, np.ndarray]) -> None:
    cal = fit(data, lambda s: 1.1 * s)
    grid = np.linspace(-1e3, 1e3, 200001)
    out = cal.apply(grid)
    assert np.all(np.isfinite(out)) and np.all(np.diff(out) >= 0)
    assert np.all(np.exp(cal.apply(np.linspace(-50, 50, 1001))) > 0)
    # beyond the knots: slope 1 in log r (neither clamped flat nor steepened)
    assert cal.slope(np.array([cal.knots[-1] + 5.0]))[0] == 1.0
    assert cal.apply(np.array([cal.knots[-1] + 5.0]))[0] == pytest.approx(cal.values[-1] + 5.0)
    assert np.all(cal.slope(np.linspace(cal.knots[0], cal.knots[-1], 101)) >= 0)


def test_artifact_round_trips_and_hostile_input_is_named(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    cal = fit(data, lambda s: 1.1 * s)
    path = tmp_path / "calibration.json"
    save_calibration(cal, path)
    back = load_calibration(path)
    assert back == cal
    x = np.linspace(-8, 8, 97)
    np.testing.assert_array_equal(back.apply(x), cal.apply(x))
    bad = cal.model_dump()
    bad["values"] = list(reversed(bad["values"]))
    path.write_text(json.dumps(bad))
    with pytest.raises(StageError, match=r"calibration\.json: .*non-decreasing") as info:
        load_calibration(path)
    assert "\n" not in str(info.value)
    path.write_text("{")
    with pytest.raises(StageError, match="cannot read the calibration"):
        load_calibration(path)


def test_too_small_a_sample_is_refused() -> None:
    with pytest.raises(StageError, match="denominator calibration sample has 3 events"):
        fit_calibration("x", np.zeros(100), np.ones(100), np.zeros(3), np.ones(3))


def _signed_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Events of f = 1.5 N(0.5, 1.2^2) - 0.5 N(0.5, 1) (positive everywhere) as +/- weighted parts, like an
    interference term: the negative part's events carry weight -0.5 / (n / 2)."""
    wide = rng.normal(0.5, 1.2, n // 2)
    narrow = rng.normal(0.5, 1.0, n // 2)
    return np.concatenate([wide, narrow]), np.concatenate([np.full(n // 2, 1.5), np.full(n // 2, -0.5)]) / (n // 2)


def _signed_log_r(x: np.ndarray) -> np.ndarray:
    """Exact log f / N(0, 1) of the signed sample."""
    from scipy.stats import norm

    return np.log(1.5 * norm.pdf(x, 0.5, 1.2) - 0.5 * norm.pdf(x, 0.5, 1.0)) - norm.logpdf(x)


def test_negative_weights_in_the_numerator_are_calibrated() -> None:
    """A signed-weight numerator (signal plus interference): a tempered ratio fails the closure on an
    independent sample and passes it once calibrated; the exact one is left unchanged."""
    rng = np.random.default_rng(7)
    (x_cal, w_cal), (x_test, w_test) = _signed_sample(rng, 400000), _signed_sample(rng, 400000)
    d_cal, d_test = rng.standard_normal(200000), rng.standard_normal(200000)
    temper = lambda s: 1.3 * s  # noqa: E731

    def z(cal: RatioCalibration | None, transform: object) -> float:
        s_num, s_den = transform(_signed_log_r(x_test)), transform(_signed_log_r(d_test))  # type: ignore[operator]
        if cal is not None:
            s_num, s_den = cal.apply(s_num), cal.apply(s_den)
        r = np.exp(s_den)
        return float(ratio_closure(s_num, w_test, s_den, np.ones(len(s_den)), r / r.mean())["z"])

    assert z(None, temper) > 2 * TOLERANCE
    cal = fit_calibration("sbi", temper(_signed_log_r(x_cal)), w_cal, temper(_signed_log_r(d_cal)), np.ones(len(d_cal)))
    assert z(cal, temper) < TOLERANCE
    exact = fit_calibration("sbi", _signed_log_r(x_cal), w_cal, _signed_log_r(d_cal), np.ones(len(d_cal)))
    central = np.linspace(np.quantile(_signed_log_r(d_test), 0.02), np.quantile(_signed_log_r(x_test), 0.98), 50)
    assert np.max(np.abs(exact.apply(central) - central)) < 0.1
    assert abs(z(exact, lambda s: s)) < TOLERANCE


def test_a_sample_with_no_positive_total_weight_is_refused() -> None:
    with pytest.raises(StageError, match="numerator calibration sample's weights sum to -100") as info:
        fit_calibration("x", np.zeros(100), -np.ones(100), np.zeros(100), np.ones(100))
    assert "\n" not in str(info.value)
