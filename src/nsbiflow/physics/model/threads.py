"""Run fits on one thread: on a small machine more threads make every small array op slower.

Measured on the 2-core CI machine: the toy fit takes 3.5 s on 1 torch thread and 25 s on the default 2
(thread hand-off dominates tensors of a few thousand events, and numpy's BLAS, used by the truth densities,
behaves the same). Both pools are limited inside the block: torch's by ``torch.set_num_threads`` and the
BLAS/OpenMP ones by ``threadpoolctl`` (the library made for exactly this), then restored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch and BLAS on one thread inside the block (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
