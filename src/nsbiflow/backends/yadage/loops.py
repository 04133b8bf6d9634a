"""Loops are not exported to yadage/REANA: a clear one-line refusal.

yadage's stages are a static DAG grown by predicates (``singlestep-stage``, ``multistep-stage`` scattering over
a list known when the stage is scheduled); it has no construct that repeats a sub-workflow until a condition on
its outputs holds, nor a recursive stage reference. A loop unrolled to ``max_iterations`` would run every
iteration, so the honest answer is a refusal that says where the loop can run.
"""

from __future__ import annotations

from nsbiflow.engine.plan import Plan
from nsbiflow.errors import UsageError


def refuse_loops(plan: Plan, target: str) -> None:
    """Raise a one-line ``UsageError`` when ``plan`` has a ``loop:`` step (``target`` names yadage or reana)."""
    loops = [s.id for s in plan.steps.values() if s.loop is not None]
    if loops:
        raise UsageError(
            f"loop step {loops[0]!r} is not supported by this target ({target}): yadage has no iterative stages; "
            "run it locally (nsbiflow run) or on Argo (nsbiflow compile --target argo)"
        )
