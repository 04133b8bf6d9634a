"""The fit workers: a process pool (sized by ``workers``) or, with 0, one thread in the server process."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from nsbiflow.service import worker
from nsbiflow.service.errors import WorkerDiedError
from nsbiflow.service.schemas import Result

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class FitPool:
    """Runs worker tasks; a pool whose worker died (e.g. out of memory) is replaced, the task reported."""

    def __init__(self, workers: int, warm_models: int) -> None:
        self.workers = workers
        self.warm_models = warm_models
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self.ready = False

    def _new(self) -> Executor:
        # One BLAS thread per worker process (the workers are the parallelism; more threads only contend).
        # Children read these at their first numpy import; an explicit setting of the operator wins.
        for variable in THREAD_VARIABLES:
            os.environ.setdefault(variable, "1")
        if self.workers == 0:
            return ThreadPoolExecutor(1, initializer=worker.initialize, initargs=(self.warm_models,))
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded server
            initializer=worker.initialize,
            initargs=(self.warm_models,),
        )

    def executor(self) -> Executor:
        """The executor (started on first use)."""
        with self._lock:
            if self._executor is None:
                self._executor = self._new()
            return self._executor

    async def start(self) -> None:
        """Start every worker and import the fitting stack in each, before the server says it is ready."""
        executor = self.executor()
        count = max(self.workers, 1)
        await asyncio.gather(*(asyncio.wrap_future(executor.submit(worker.ready, 0.2)) for _ in range(count)))
        self.ready = True

    async def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` on a worker."""
        executor = self.executor()
        try:
            return await asyncio.wrap_future(executor.submit(function, *args))
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor:
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = None
            raise WorkerDiedError(
                "a fit worker died (out of memory?); the pool was restarted: send the request again"
            ) from None

    async def run(self, task: worker.Task) -> Result:
        """Compute one task."""
        result: Result = await self.call(worker.run, task)
        return result

    def close(self) -> None:
        """Stop the workers."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None
        self.ready = False
