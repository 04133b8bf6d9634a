"""Which steps of a plan may be looked at next: those whose dependencies have all finished.

The executor used to scan every pending step after every completion (O(steps) each, O(steps^2) a run: at
10^4 fanned-out steps the scan dominated). This queue counts each step's unfinished dependencies and hands
out only the steps whose count is zero, so a scan costs what is ready, and the executor can stop scanning as
soon as its slots are full.

Ready steps come longest chain of dependents first (then in plan order): the classic critical-path list
schedule, with step counts standing in for the unknown step times. In plan order a fan-out of side branches
(one calibration per ratio) took the slots while the chain to the fit (inference, bias gate, fit) waited.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from nsbiflow.engine.plan import Plan


class ReadyQueue:
    """Unstarted steps of a plan; ``scan`` gives those whose dependencies have all finished, longest chain of
    dependents first."""

    def __init__(self, plan: Plan) -> None:
        self._waiting: dict[str, int] = {}
        self._dependents: dict[str, list[str]] = defaultdict(list)
        for step_id in plan.order:
            deps = set(plan.steps[step_id].depends_on)
            self._waiting[step_id] = len(deps)
            for dep in deps:
                self._dependents[dep].append(step_id)
        chain: dict[str, int] = {}  # steps on the longest path from a step to the end of the plan, itself included
        for step_id in reversed(plan.order):
            chain[step_id] = 1 + max((chain[d] for d in self._dependents.get(step_id, ())), default=0)
        position = {step_id: i for i, step_id in enumerate(plan.order)}
        self._order = sorted(plan.order, key=lambda s: (-chain[s], position[s]))
        self._index = {step_id: i for i, step_id in enumerate(self._order)}
        self._ready: list[int] = [self._index[s] for s in self._order if self._waiting[s] == 0]
        self._unstarted = len(self._order)
        self._fresh = bool(self._ready)

    def __bool__(self) -> bool:
        """Whether some step has not been started (or skipped) yet."""
        return self._unstarted > 0

    def scan(self) -> list[str]:
        """The ready, unstarted steps, longest chain first (a snapshot: ``take`` and ``finished`` may follow)."""
        self._fresh = False
        return [self._order[i] for i in self._ready]

    def fresh(self) -> bool:
        """Whether a step became ready since the last ``scan``."""
        return self._fresh

    def take(self, step_id: str) -> None:
        """``step_id`` leaves the queue: it was started, found in the cache, or skipped."""
        i = self._index[step_id]
        position = bisect.bisect_left(self._ready, i)
        if position < len(self._ready) and self._ready[position] == i:
            del self._ready[position]
            self._unstarted -= 1

    def finished(self, step_id: str) -> None:
        """``step_id`` finished (any status): its dependents whose dependencies are now all done become ready."""
        for dependent in self._dependents.get(step_id, ()):
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0:
                bisect.insort(self._ready, self._index[dependent])
                self._fresh = True
