"""The toy's densities are normalised, exact, and describe its own samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nsbiflow.physics.toy_model import PROCESSES, ToyModel

MODEL = ToyModel()


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("alpha", [-1.5, 0.0, 0.7])
def test_density_integrates_to_one(process: str, alpha: float) -> None:
    # importance sampling from a wide Gaussian q: integral of p = E_q[p / q]
    rng = np.random.default_rng(11)
    width = 2.5
    x = rng.normal(0.0, width, size=(400_000, 5))
    log_q = stats.norm.logpdf(x, scale=width).sum(axis=1)
    ratio = np.exp(MODEL.log_prob(process, x, alpha) - log_q)
    error = ratio.std() / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) < max(5 * error, 0.005), (ratio.mean(), error)


def _mixture_moments(model: ToyModel, process: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    comps = model.components(process, alpha)
    mean = np.sum([c.weight * c.mean for c in comps], axis=0)
    second = np.sum([c.weight * (c.cov + np.outer(c.mean, c.mean)) for c in comps], axis=0)
    return mean, second - np.outer(mean, mean)


@pytest.mark.parametrize("process", PROCESSES)
def test_samples_follow_the_density(process: str) -> None:
    rng = np.random.default_rng(5)
    n = 100_000
    x = MODEL.sample(process, n, rng)
    mean, cov = _mixture_moments(MODEL, process, 0.0)
    assert np.allclose(x.mean(axis=0), mean, atol=5 * np.sqrt(np.diag(cov) / n))
    assert np.allclose(np.cov(x.T), cov, atol=0.03 * np.max(np.diag(cov)))
    # every 1-D marginal of a Gaussian mixture is a 1-D Gaussian mixture: Kolmogorov-Smirnov against it
    comps = MODEL.components(process)
    for j in range(5):

        def cdf(v: np.ndarray, j: int = j) -> np.ndarray:
            return sum(c.weight * stats.norm.cdf(v, c.mean[j], np.sqrt(c.cov[j, j])) for c in comps)

        assert stats.kstest(x[:20_000, j], cdf).pvalue > 1e-3


def test_systematic_variations_are_the_scaled_background() -> None:
    rng = np.random.default_rng(8)
    up = MODEL.sample("background_up", 100_000, rng)
    nominal = MODEL.sample("background", 100_000, rng)
    # x = s z + noise: the variance grows by s^2 on the latent part
    assert up.std() > nominal.std() * 1.05
    x = rng.normal(size=(10, 5))
    assert np.allclose(MODEL.log_prob("background_up", x), MODEL.log_prob("background", x, alpha=1.0))


def test_reference_ratio_has_unit_mean() -> None:
    rng = np.random.default_rng(2)
    x = MODEL.sample("reference", 400_000, rng)
    for process in ("signal", "background"):
        r = np.exp(MODEL.log_ratio(process, "reference", x))
        assert abs(r.mean() - 1) < 5 * r.std() / np.sqrt(len(r))


def test_signal_family_follows_the_signal_density_at_each_events_mean() -> None:
    """Events of the parametrized sample, given their drawn signal_mean, follow the signal at that mean."""
    rng = np.random.default_rng(21)
    x, means = MODEL.sample_signal_family(200_000, rng, 0.5, 2.0)
    assert means.min() >= 0.5 and means.max() <= 2.0
    assert stats.kstest(means, stats.uniform(0.5, 1.5).cdf).pvalue > 1e-3
    for low, high in ((0.6, 0.7), (1.8, 1.9)):
        sel = (means >= low) & (means < high)
        model = ToyModel(signal_mean=(low + high) / 2)
        mean, cov = _mixture_moments(model, "signal", 0.0)
        n = int(sel.sum())
        # the bin's spread of means (width 0.1) adds at most 0.1^2/12 along the signal direction
        assert np.allclose(x[sel].mean(axis=0), mean, atol=5 * np.sqrt(np.diag(cov) / n) + 0.01)
        assert np.allclose(np.cov(x[sel].T), cov, atol=0.05 * np.max(np.diag(cov)))
    with pytest.raises(ValueError, match="range"):
        MODEL.sample_signal_family(10, rng, 2.0, 1.0)
