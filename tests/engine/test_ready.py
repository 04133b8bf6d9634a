"""The executor's ready queue: a step is handed out once, only after all its dependencies, longest chain first."""

from __future__ import annotations

from pathlib import Path

from nsbiflow.backends.local.ready import ReadyQueue
from nsbiflow.engine.plan import load_plan

REPO = Path(__file__).resolve().parents[2]


def test_ready_queue_follows_dependencies_in_plan_order() -> None:
    plan = load_plan(REPO / "workflows" / "examples" / "demo-fanout.yaml")
    queue = ReadyQueue(plan)
    assert queue.scan() == ["numbers"] and queue
    queue.take("numbers")
    assert queue.scan() == [] and not queue.fresh()
    queue.finished("numbers")
    squares = [s for s in plan.order if s.startswith("square")]
    assert queue.fresh() and queue.scan() == squares
    seen = ["numbers"]
    for step_id in squares:
        queue.take(step_id)
        queue.take(step_id)  # taking twice is harmless
        seen.append(step_id)
        assert "total" not in queue.scan()
        queue.finished(step_id)
    assert queue.scan() == ["total"]
    queue.take("total")
    queue.finished("total")
    assert not queue and [*seen, "total"] == list(plan.order)


def test_the_longest_chain_of_dependents_goes_first() -> None:
    """Inference (then bias gate, fit, summary) is handed out before the calibrations (then fit, summary), though
    they come first in plan order: side fan-outs must not hold the slots while the chain to the fit waits."""
    plan = load_plan(REPO / "workflows" / "offshell-toy.yaml")
    queue = ReadyQueue(plan)
    while True:
        ready = queue.scan()
        if "infer" in ready:
            break
        step_id = next(s for s in ready if not s.startswith("calibrate["))
        queue.take(step_id)
        queue.finished(step_id)
    calibrations = [i for i, s in enumerate(ready) if s.startswith("calibrate[")]
    assert calibrations and ready.index("infer") < min(calibrations)
    assert plan.order.index("calibrate[0]") < plan.order.index("infer")
