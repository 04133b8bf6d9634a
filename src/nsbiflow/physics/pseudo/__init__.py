"""Pseudo-experiments as a capability: pseudo-datasets at declared parameter points, fitted with every method.

``generators`` draws pseudo-data from a simulator's own generator (the bundled ``toy`` and ``offshell``), or by
Poisson resampling of held-out simulated events when the model names no simulator; ``pools`` evaluates the
trained ratios once on all events of a point (the same per-event columns ``infer`` writes) and hands each toy its
rows; ``experiments`` fits them (``nsbiflow.physics.model.toys.run_toys``) and summarises coverage, pulls, bias,
widths and CLs upper limits under the background-only hypothesis; ``plots`` draws them; ``run`` is the ``toys``
stage's work.
"""

from nsbiflow.physics.pseudo.experiments import coverage, limit_bands
from nsbiflow.physics.pseudo.run import run_pseudo

__all__ = ["coverage", "limit_bands", "run_pseudo"]
