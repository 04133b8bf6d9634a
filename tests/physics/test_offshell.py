"""The off-shell toy against its own closed forms: integrals, amplitudes, samples, systematics, weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.offshell import (
    NUISANCES,
    OBSERVABLES,
    AmplitudeTerm,
    Component,
    Offshell,
    OffshellConfig,
    gauss_pdf,
    mixture_pdf,
    write_root,
)
from nsbiflow.physics.truth import Truth, truth_from_spec

TOY = Offshell()


def amplitude(terms: list[AmplitudeTerm], z: np.ndarray) -> np.ndarray:
    """Evaluate ``sum_k c_k sqrt(N(z; m_k, C_k))`` directly (no product formula)."""
    return sum(t.coef * np.sqrt(gauss_pdf(z, t.mean, t.cov)) for t in terms)


def grid() -> tuple[np.ndarray, float]:
    """A 3-D quadrature grid covering every process at every tested nuisance value (±8 reference sd)."""
    cfg = TOY.config
    axes = [np.linspace(m - 8 * s, m + 8 * s, 101) for m, s in zip(cfg.reference_mean, cfg.reference_sd, strict=True)]
    cell = float(np.prod([a[1] - a[0] for a in axes]))
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return mesh, cell


GRID, CELL = grid()


@pytest.mark.parametrize(
    ("process", "nuisances"),
    [
        *[(p, {}) for p in ("ggH", "ggZZ", "interference", "SBI", "qqZZ", "qqZZ_cr", "reference")],
        ("qqZZ_m4l_scale_up", {}),
        ("qqZZ_m4l_resolution_down", {}),
        ("SBI_angle_tilt_up", {}),
        ("interference", {"angle_tilt": -2.5}),
        ("qqZZ_cr", {"m4l_scale": 3.0, "m4l_resolution": 2.0}),
    ],
)
def test_density_integrates_to_one(process: str, nuisances: dict[str, float]) -> None:
    # grid quadrature (spectrally accurate for smooth Gaussians): independent of the product formula's constants
    integral = float(TOY.density(process, GRID, nuisances).sum() * CELL)
    assert integral == pytest.approx(1.0, abs=2e-5)


def test_gg_mixture_integrates_to_one_at_every_mu() -> None:
    for mu in (0.0, 0.3, 1.0, 4.0, 10.0):
        assert mixture_pdf(TOY.gg_mixture(mu), GRID).sum() * CELL == pytest.approx(1.0, abs=2e-5)


def test_product_formula_matches_the_amplitudes_pointwise() -> None:
    rng = np.random.default_rng(1)
    z = TOY._draw(TOY._latent["reference"], 5000, rng)
    a_s, a_b = amplitude(TOY.signal_amplitude, z), amplitude(TOY.continuum_amplitude, z)
    latent = TOY._latent
    np.testing.assert_allclose(mixture_pdf(latent["ggH"], z), a_s**2, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(mixture_pdf(latent["ggZZ"], z), a_b**2, rtol=1e-8, atol=1e-14 * (a_b**2).max())
    np.testing.assert_allclose(mixture_pdf(latent["interference"], z), 2 * a_s * a_b, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(mixture_pdf(latent["SBI"], z), (a_s + a_b) ** 2, rtol=1e-8, atol=1e-14)


def test_interference_changes_sign_and_the_total_stays_positive() -> None:
    yields = TOY.yields()
    assert yields["interference"] < 0  # destructive overall
    rng = np.random.default_rng(2)
    x = rng.normal(TOY.config.reference_mean, TOY.config.reference_sd, size=(20000, 3))
    interference = TOY.density("interference", x) * yields["interference"]
    assert (interference < 0).mean() > 0.2 and (interference > 0).mean() > 0.05
    s, b, sbi = (TOY.density(p, x) * yields[p] for p in ("ggH", "ggZZ", "SBI"))
    for mu in np.linspace(0.0, 10.0, 21):
        r = np.sqrt(mu)
        # the model's decomposition ...
        total = (mu - r) * s + r * sbi + (1 - r) * b
        # ... equals mu S + sqrt(mu) I + B and the normalised gg mixture times its yield
        np.testing.assert_allclose(total, mu * s + r * interference + b, rtol=1e-9, atol=1e-18)
        np.testing.assert_allclose(total, TOY.gg_yield(mu) * mixture_pdf(TOY.gg_mixture(mu), x), rtol=1e-8, atol=1e-18)
        assert total.min() >= -1e-15 * total.max()
        assert TOY.gg_yield(mu) > 0


def marginal_expected(mixture: list[Component], j: int, edges: np.ndarray) -> np.ndarray:
    """``int_bin`` of a signed mixture's marginal in observable ``j`` (normal CDFs)."""
    out = np.zeros(len(edges) - 1)
    for c in mixture:
        out += c.weight * np.diff(norm.cdf(edges, c.mean[j], np.sqrt(c.cov[j, j])))
    return out


def chi2_ndf(x: np.ndarray, w: np.ndarray, mixture: list[Component], total: float, j: int) -> float:
    lo, hi = np.quantile(x[:, j], [0.002, 0.998])
    edges = np.linspace(lo, hi, 31)
    h, _ = np.histogram(x[:, j], edges, weights=w)
    var, _ = np.histogram(x[:, j], edges, weights=w**2)
    expected = total * marginal_expected(mixture, j, edges)
    return float(np.sum((h - expected) ** 2 / np.maximum(var, 1e-300)) / len(h))


@pytest.mark.parametrize(
    ("process", "nuisances"),
    [
        ("ggH", {}),
        ("ggZZ", {}),
        ("interference", {}),
        ("SBI", {}),
        ("qqZZ", {}),
        ("qqZZ_cr", {}),
        ("reference", {}),
        ("qqZZ", {"m4l_scale": 1.0}),
        ("qqZZ", {"m4l_scale": -1.0}),
        ("qqZZ", {"m4l_resolution": 2.0}),
        ("SBI", {"angle_tilt": 1.0}),
        ("interference", {"angle_tilt": -1.5}),
    ],
)
def test_weighted_samples_follow_the_density(process: str, nuisances: dict[str, float]) -> None:
    rng = np.random.default_rng(3)
    x, w = TOY.sample(process, 60000, rng, nuisances)
    total = TOY.yields()[process]
    mixture = TOY.mixture(process, nuisances)
    for j in range(3):
        assert chi2_ndf(x, w, mixture, total, j) < 1.9, OBSERVABLES[j]
    # the weights sum to the yield (within 5 standard errors of the weighted sum)
    assert abs(w.sum() - total) < 5 * np.sqrt(np.sum(w**2)) + 1e-9 * abs(total)
    if process == "interference":
        assert (w < 0).any() and (w > 0).any()
    else:
        assert (w >= 0).all()


@pytest.mark.parametrize(
    ("nuisance", "process", "j"), [("m4l_scale", "qqZZ", 0), ("m4l_resolution", "qqZZ", 0), ("angle_tilt", "SBI", 1)]
)
def test_each_systematic_moves_its_processes_and_only_those(nuisance: str, process: str, j: int) -> None:
    rng = np.random.default_rng(4)
    x, w = TOY.sample(f"{process}_{nuisance}_up", 60000, rng)
    total = TOY.yields()[process]
    assert chi2_ndf(x, w, TOY.mixture(process, {nuisance: 1.0}), total, j) < 1.9
    assert chi2_ndf(x, w, TOY.mixture(process), total, j) > 5.0  # the variation is visible
    untouched = "reference" if process == "SBI" else "ggH"
    for side in (1.0, -1.0):
        same = TOY.mixture(untouched, {nuisance: side})
        assert all(
            np.allclose(a.cov, b.cov) and np.allclose(a.mean, b.mean)
            for a, b in zip(same, TOY.mixture(untouched), strict=True)
        )


def test_gg_data_follow_the_total_at_mu() -> None:
    rng = np.random.default_rng(5)
    for mu in (0.0, 2.0):
        x = TOY.sample_gg(mu, 40000, rng, {"angle_tilt": 0.5})
        mixture = TOY.gg_mixture(mu, {"angle_tilt": 0.5})
        for j in range(3):
            assert chi2_ndf(x, np.ones(len(x)), mixture, len(x), j) < 1.9


def test_observed_counts_follow_the_yields() -> None:
    rng = np.random.default_rng(6)
    counts = [TOY.sample_observed(rng, mu=1.5, gg_factor=1.1, poisson=True)[1] for _ in range(40)]
    gg = np.mean([c["gg"] for c in counts])
    assert abs(gg - 1.1 * TOY.gg_yield(1.5)) < 4 * np.sqrt(1.1 * TOY.gg_yield(1.5) / 40)
    x, exact = TOY.sample_observed(rng, mu=1.0, poisson=False)
    assert exact == {"gg": round(TOY.gg_yield(1.0)), "qqZZ": 500} and len(x) == sum(exact.values())
    assert len(TOY.sample_observed_cr(rng, qq_factor=1.2, poisson=False)) == 1800


def test_registered_truth_and_one_line_errors() -> None:
    truth = truth_from_spec("offshell", {"nu_ggH": 20.0})
    assert isinstance(truth, Truth) and truth.name == "offshell"
    assert list(truth.observables()) == list(OBSERVABLES) and list(truth.nuisances()) == list(NUISANCES)
    with pytest.raises(StageError, match="invalid configuration"):
        truth_from_spec("offshell", {"nu_ggH": -1.0})
    with pytest.raises(StageError, match="unknown systematic"):
        truth_from_spec("offshell", {"systematics": {"jes": ["qqZZ"]}})
    with pytest.raises(ValueError, match="unknown process 'ttZ'"):
        TOY.density("ttZ", GRID[:3])
    with pytest.raises(ValueError, match="unknown nuisance 'jes'"):
        TOY.density("qqZZ", GRID[:3], {"jes": 1.0})
    assert OffshellConfig().model_json_schema()["additionalProperties"] is False


def test_root_files_load_through_load_events(tmp_path) -> None:
    from nsbiflow.physics.events import load_external

    rng = np.random.default_rng(7)
    x, w = TOY.sample("interference", 1000, rng)
    write_root(tmp_path / "i.root", x, w)
    ev = load_external(tmp_path / "i.root", list(OBSERVABLES), weight_column="weight")
    np.testing.assert_array_equal(ev.x, x)
    np.testing.assert_array_equal(ev.weights, w)


def test_a_calibration_stream_is_an_independent_sample_of_the_same_process() -> None:
    """``stream`` 1 (the workflow's calibration events) draws other events of the same density; stream 0 is the
    training and held-out stream, unchanged by the parameter."""
    from nsbiflow.physics.offshell import Offshell, OffshellConfig, simulate

    toy = Offshell(OffshellConfig())
    x0, w0 = simulate(toy, "SBI", 20000, 1)
    x0b, _ = simulate(toy, "SBI", 20000, 1, stream=0)
    x1, w1 = simulate(toy, "SBI", 20000, 1, stream=1)
    np.testing.assert_array_equal(x0, x0b)
    assert not np.any(np.all(x0[:100, None, :] == x1[None, :100, :], axis=2))  # no event shared
    assert abs(w1.sum() / w0.sum() - 1) < 0.05  # the same yield
    assert abs(np.average(x1[:, 0], weights=w1) - np.average(x0[:, 0], weights=w0)) < 0.05 * np.std(x0[:, 0])
