"""Pseudo-experiments with the *trained* ensembles of the CI chain (smaller count): the NSBI likelihood of the
toy model still covers roughly, with the nuisance parameters at nominal and at +1 sigma."""

from __future__ import annotations

import numpy as np
import pytest

from nsbiflow.physics.ensemble import Ensemble
from nsbiflow.physics.model.data import Table, read_samples
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import load_model
from nsbiflow.physics.model.toys import run_toys
from nsbiflow.physics.support import SupportModel
from nsbiflow.physics.toy_model import ToyModel
from tests.physics.conftest import LABELS, TOY_MODEL, Chain


@pytest.mark.slow
@pytest.mark.parametrize("theta", [0.0, 1.0])
def test_trained_ratios_cover(chain: Chain, theta: float) -> None:
    tables, info = read_samples([chain.ratios])
    like = Likelihood(load_model(TOY_MODEL), tables, "nsbi")
    ensembles = {label: Ensemble.load(chain.ensemble(label), label) for label in LABELS}
    log_norm = {label: float(np.log(info["normalisation"][label])) for label in LABELS}
    support = SupportModel.load(chain.root / "support")
    toy = ToyModel()

    def generate(rng: np.random.Generator) -> dict[str, Table]:
        factor = 1.05**theta if theta >= 0 else 0.95 ** (-theta)
        x = np.concatenate(
            [
                toy.sample("signal", rng.poisson(100.0), rng),
                toy.sample("background", rng.poisson(1000.0 * factor), rng, alpha=theta),
            ]
        )
        cols = {f"x{j}": x[:, j] for j in range(5)}
        for label, ens in ensembles.items():
            cols[f"logr_{label}"] = ens.log_ratio(x, "mean")[0].astype(np.float64) - log_norm[label]
        cols["in_support"] = support.contains(x)
        return {"SR": Table("toy", cols)}

    result = run_toys(like, generate, {"mu": 1.0, "alpha": theta, "bkg_norm": theta}, 60, seed=11 + int(theta))
    summary = result.summary()
    assert summary["failed"] == 0, summary
    assert 0.5 <= summary["coverage_68"] <= 0.85, summary  # 60 toys: +-0.06 statistical
    assert abs(summary["mean_pull"]) < 0.4, summary
