"""Reweighting between Monte Carlo configurations: learn w(x) = p_b(x) / p_a(x) per event and apply it.

* ``deepsets``: a permutation-invariant network on the full, variable-length set of objects
  (f({x_i}) = F(sum_i Phi(x_i)), optionally with event-level features concatenated to the sum);
* ``bdt``: the gradient-boosted-classifier baseline on event-level (high-level) observables;
* ``model``: the on-disk reweighter (either kind), its calibration and its evaluation;
* ``closure``: reweighted MC_a against MC_b in every projection, a classifier two-sample test, the weight
  distribution, and the gates;
* ``observables``: observables derived from the objects (multiplicity, HT, leading-pair mass and dR, ...);
* ``toy``: a generator of object sets whose two configurations have an analytically known weight.

Both reweighters are classifiers s(x) of MC_b (label 1) against MC_a (label 0) with the classes balanced, so
w = s / (1 - s) = p_b / p_a at the optimum.
"""
