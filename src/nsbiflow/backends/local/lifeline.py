"""Tie step processes to the runner: they die when it dies, even by SIGKILL (which cannot be caught).

On Linux each step process asks the kernel, between ``fork`` and ``exec``, for a death signal: SIGKILL as
soon as the thread that started it is gone (``prctl(PR_SET_PDEATHSIG)``). The runner waits on each step
from the worker thread that started it, so that thread outlives the step unless the runner itself dies.
The ``prctl`` function is looked up once here, in the parent: the hook that runs in the child only calls
it (no imports, no allocation worth mentioning, as ``preexec_fn`` requires in a threaded program).
Elsewhere (macOS) there is no such call; the SIGTERM/SIGHUP/SIGINT handlers of the executor still stop
steps, and only a SIGKILL of the runner can leave one running.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()
_KILL = int(signal.SIGKILL)


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with the calling thread's process; ``None`` if unsupported."""
    if _PRCTL is None:
        return None
    prctl = _PRCTL
    parent = os.getpid()

    def _hook() -> None:
        prctl(PR_SET_PDEATHSIG, _KILL, 0, 0, 0)
        if os.getppid() != parent:  # the runner died between fork and prctl: do not start the step
            os._exit(1)

    return _hook
