"""The binned baselines: the histogram of the learned discriminant, and code-4 (multiplicative) histosys.

With exact ratios the discriminant ``ln p(x|mu=1) / p(x|mu=0)`` is the optimal one-dimensional summary when no
nuisance parameter moves the shapes, so its binned fit must come close to the unbinned exact width and beat
the best single raw observable; its shape systematic is the nominal sample reweighted by the +-1 sigma ratios,
interpolated like NSBI's (code 4, per bin). The code-4 histosys must equal pyhf's own code-4 interpolator.
"""

from __future__ import annotations

import numpy as np
import pyhf
import pytest
import torch
from pyhf.interpolators import code4

from nsbiflow.physics.model.analysis import analyse
from nsbiflow.physics.model.histogram import DISCRIMINANT, binned_model, discriminant_tables, reweighted_name
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.modifiers.histosys import HistoSysTerm
from nsbiflow.physics.model.spec import BinnedRegion, HistoSys


def test_code4_histosys_equals_pyhf_code4() -> None:
    nominal, up, down = np.array([10.0, 20.0, 5.0, 0.0]), np.array([12.0, 19.0, 7.0, 1.0]), np.array([9.0, 22, 4, 0])
    alphas = [-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 3.0]
    # pyhf: histogramssets (systematics, samples, [down, nominal, up], bins); factors (sys, samples, alphas, bins)
    ok = slice(0, 3)  # pyhf divides by the nominal: the empty bin (ours: factor 1) is compared separately
    factors = np.asarray(
        code4([[[list(down[ok]), list(nominal[ok]), list(up[ok])]]])(pyhf.tensorlib.astensor([alphas]))
    )
    term = HistoSysTerm(0, *(torch.tensor(v) for v in (nominal, up, down)), interpolation="code4")
    for k, a in enumerate(alphas):
        ours = (torch.tensor(nominal) + term.shift(torch.tensor([a], dtype=torch.float64))).numpy()
        assert np.allclose(ours[ok], nominal[ok] * factors[0, 0, k]), a
        assert ours[3] == 0.0
    additive = HistoSysTerm(0, *(torch.tensor(v) for v in (nominal, up, down)))
    two = torch.tensor([2.0], dtype=torch.float64)
    assert np.allclose((torch.tensor(nominal) + additive.shift(two)).numpy(), nominal + 2 * (up - nominal))
    assert not np.allclose(additive.shift(two).numpy(), term.shift(two).numpy())  # the two conventions differ


def test_discriminant_model_and_templates(toy_model, toy_tables) -> None:
    tables = discriminant_tables(toy_model, toy_tables, {"mu": 0.0}, {"mu": 1.0})
    t = toy_tables["signal"]  # both ratios on the signal sample
    d = tables["signal"].col(DISCRIMINANT)
    expected = np.log1p(100.0 * np.exp(t.col("logr_signal")) / (1000.0 * np.exp(t.col("logr_background"))))
    assert np.allclose(d, expected)
    assert DISCRIMINANT in tables["observed"].columns and DISCRIMINANT in tables["background"].columns
    varied = tables[reweighted_name("background", "background_up")]
    assert np.allclose(varied.weights, np.exp(toy_tables["background"].col("logr_background_up")))
    binned = binned_model(toy_model, DISCRIMINANT, 20, "code4", variations="reweighted")
    region = binned.regions["SR"]
    assert isinstance(region, BinnedRegion) and region.observable == DISCRIMINANT
    (histosys,) = [m for m in region.processes["background"].modifiers if isinstance(m, HistoSys)]
    assert histosys.interpolation == "code4" and histosys.up == reweighted_name("background", "background_up")


@pytest.mark.slow
def test_discriminant_histogram_is_nearly_exact_and_beats_the_raw_observable(toy_model, toy_tables) -> None:
    options = {"n_scan": 15, "with_cls": False, "with_impacts": False}
    width = {}
    exact = Likelihood(toy_model, toy_tables, "nsbi")  # exact ratios: the unbinned optimum
    width["unbinned"] = analyse(exact, **options)["pois"]["mu"]["width_68"]
    with_d = discriminant_tables(toy_model, toy_tables, {"mu": 0.0}, {"mu": 1.0})
    disc = binned_model(toy_model, DISCRIMINANT, 20, "code4", variations="reweighted")
    width["discriminant"] = analyse(Likelihood(disc, with_d, "nsbi"), **options)["pois"]["mu"]["width_68"]
    raw = binned_model(toy_model, "x0", 20, "code4")
    width["x0"] = analyse(Likelihood(raw, toy_tables, "nsbi"), **options)["pois"]["mu"]["width_68"]
    assert width["unbinned"] <= width["discriminant"] * 1.02, width
    assert width["discriminant"] < 1.15 * width["unbinned"], width
    assert width["x0"] > 1.3 * width["discriminant"], width
