"""Z0 with the parameter of interest bounded just above 0 (``mu >= 1e-4``, as the off-shell ``sqrt(mu)`` needs)."""

from __future__ import annotations

import math

import yaml

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data
from tests.physics.model.conftest import TOY_MODEL


def test_z0_is_computed_at_mu_zero_below_a_tiny_lower_bound(toy_tables) -> None:
    doc = yaml.safe_load(TOY_MODEL.read_text())
    doc["parameters"]["mu"]["bounds"] = [1e-4, 4.0]
    doc["regions"]["SR"]["processes"]["signal"]["coefficient"] = "sqrt(mu) * sqrt(mu)"  # = mu, through sqrt at 0
    doc["regions"]["SR"]["data"] = {"asimov": {"mu": 1.0}}
    like = Likelihood(model_from_data(doc), toy_tables)
    best = fit.minimise(like)
    profile = fit.Profile(like, best)
    z = fit.z0(profile, "mu")
    # q0 is the profile at mu = 0 itself: above the profile at the bound, and equal to the same model's Z0
    # with the bound at 0 (where nothing was hidden before)
    assert z > 3.0
    assert z**2 > profile.t({"mu": 1e-4})
    doc["parameters"]["mu"]["bounds"] = [0.0, 4.0]
    doc["regions"]["SR"]["processes"]["signal"]["coefficient"] = "mu"
    open_like = Likelihood(model_from_data(doc), toy_tables)
    reference = fit.z0(fit.Profile(open_like, fit.minimise(open_like)), "mu")
    assert math.isclose(z, reference, rel_tol=1e-4), (z, reference)
