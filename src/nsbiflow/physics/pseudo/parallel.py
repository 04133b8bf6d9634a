"""Toy fits spread over worker processes, with the same results as one process.

Each worker builds the likelihoods once (``build`` is a picklable callable returning method -> ``Likelihood``;
a likelihood itself holds compiled closures and cannot be sent) and fits contiguous chunks of toys. A chunk
starting at toy ``k`` gets the random generator of ``seed`` advanced past the ``k`` earlier toys' auxiliary
measurements, so every toy sees the auxiliary values a single ``run_toys`` over all toys would draw and the
merged ``ToyResults`` are identical to the serial ones, whatever the number of workers or chunks.
Workers are spawned (not forked: the parent has run torch's thread pools) and fit on one thread each.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nsbiflow.physics.model.data import Table
    from nsbiflow.physics.model.likelihood import Likelihood
    from nsbiflow.physics.model.toys import ToyResults

Builder = Callable[[], "Mapping[str, Likelihood]"]
ProgressFn = Callable[[int, int, str], None]

_LIKES: dict[str, Likelihood] = {}


def _init(build: Builder) -> None:
    # one thread per worker (the workers are the parallelism): the build here, and every fit (run_toys)
    from nsbiflow.physics.model.threads import single_thread

    with single_thread():
        _LIKES.update(build())


def advanced_rng(like: Likelihood, truth: Mapping[str, float], seed: int, skip: int) -> np.random.Generator:
    """The generator ``run_toys(..., seed=seed)`` holds after ``skip`` toys (one auxiliary draw per toy)."""
    rng = np.random.default_rng(seed)
    ps = like.parameters
    if len(ps.constrained):
        true_x = like.point(truth).numpy()
        for _ in range(skip):
            rng.normal(true_x[ps.constrained], ps.sigma)
    return rng


def fit_chunk(
    like: Likelihood, toys: Sequence[Mapping[str, Table]], truth: Mapping[str, float], seed: int, skip: int
) -> ToyResults:
    """Fit toys ``skip`` .. ``skip + len(toys)`` of a ``fit_toys(like, all_toys, truth, seed)`` call."""
    from nsbiflow.physics.model.toys import run_toys
    from nsbiflow.physics.pseudo.experiments import replay

    rng = advanced_rng(like, truth, seed, skip)
    return run_toys(like, replay(toys, None, ""), truth, len(toys), seed=rng)


def _work(method: str, toys: Sequence[Mapping[str, Table]], truth: Mapping[str, float], seed: int,
          skip: int) -> ToyResults:
    return fit_chunk(_LIKES[method], toys, truth, seed, skip)


def merge(parts: Sequence[ToyResults]) -> ToyResults:
    """The chunks' results in order, as one ``ToyResults``."""
    from nsbiflow.physics.model.toys import ToyResults

    out = ToyResults(parts[0].poi, parts[0].truth)
    for part in parts:
        out.mu_hat += part.mu_hat
        out.sigma += part.sigma
        out.t_true += part.t_true
        out.failed += part.failed
    return out


class FitPool:
    """``workers`` processes fitting toys (``workers <= 1``: in this process, with the caller's likelihoods)."""

    def __init__(self, build: Builder, workers: int, local: Mapping[str, Likelihood] | None = None) -> None:
        self.workers = max(1, workers)
        self._build, self._local = build, dict(local or {})
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:  # started now: the workers import and build while the caller draws the toys
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init,
                                             initargs=(build,))

    def __enter__(self) -> FitPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _like(self, method: str) -> Likelihood:
        if method not in self._local:
            self._local.update(self._build())
        return self._local[method]

    def fit_all(
        self,
        methods: Sequence[str],
        toys: Sequence[Mapping[str, Table]],
        truth: Mapping[str, float],
        seed: int,
        progress: ProgressFn | None = None,
        label: str = "",
    ) -> dict[str, ToyResults]:
        """Every method's fits of the same ``toys`` (auxiliary measurements from ``seed``), method -> results."""
        n = len(toys)
        if self._pool is None or n < 2:
            from nsbiflow.physics.pseudo.experiments import fit_toys

            out = {}
            for method in methods:
                out[method] = fit_toys(self._like(method), toys, truth, seed, progress, f"{method} at {label}")
            return out
        size = max(1, math.ceil(n / (2 * self.workers)))  # two chunks per worker and method: balanced ends
        futures: dict[str, list[tuple[int, Future[Any]]]] = {}
        for method in methods:
            futures[method] = [
                (min(size, n - k), self._pool.submit(_work, method, list(toys[k : k + size]), dict(truth), seed, k))
                for k in range(0, n, size)
            ]
        total, done = n * len(methods), 0
        out = {}
        for method, parts in futures.items():
            results = []
            for count, future in parts:
                results.append(future.result())
                done += count
                if progress:
                    progress(done, total, f"{method} at {label}")
            out[method] = merge(results)
        return out
