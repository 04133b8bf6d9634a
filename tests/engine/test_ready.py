"""The executor's ready queue: a step is handed out once, in plan order, only after all its dependencies."""

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
