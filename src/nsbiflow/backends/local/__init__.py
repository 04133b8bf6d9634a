"""The local backend: run a plan as subprocesses on this machine, with caching, retries and a run manifest."""

from __future__ import annotations

from nsbiflow.backends.local.executor import LocalExecutor, check_store_reachable
from nsbiflow.backends.local.progress import PlainProgress, Progress, QuietProgress, RichProgress
from nsbiflow.backends.local.task import TaskResult, run_task, step_environment

__all__ = [
    "LocalExecutor",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "RichProgress",
    "TaskResult",
    "check_store_reachable",
    "run_task",
    "step_environment",
]
