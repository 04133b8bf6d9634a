"""Tie step processes to the runner: they die when it dies, even by SIGKILL (which cannot be caught).

On Linux each step process asks the kernel for a death signal: SIGKILL as soon as the thread that started it
is gone (``prctl(PR_SET_PDEATHSIG)``). The runner waits on each step from the worker thread that started it,
so that thread outlives the step unless the runner itself dies.

Two ways to ask, the first preferred:

- :func:`lifeline_prefix`: the step's command is started through util-linux's ``setpriv --pdeathsig KILL``
  and a one-line ``sh`` check that the runner is still its parent (it may have died before the signal was
  set), which then ``exec``s the command. No Python runs in the child, so ``subprocess`` can start it with
  ``vfork``: about 3 ms more than a bare process, where a ``fork`` of a runner that has imported torch
  costs 20-40 ms (the page tables of a large process are copied).
- :func:`die_with_parent_hook`, where ``setpriv`` is missing or too old: a ``preexec_fn`` that calls
  ``prctl`` between ``fork`` and ``exec`` (looked up once here, in the parent: the hook only calls it, as
  ``preexec_fn`` requires in a threaded program). It forces a full ``fork``.

Elsewhere (macOS) there is no such call; the SIGTERM/SIGHUP/SIGINT handlers of the executor still stop
steps, and only a SIGKILL of the runner can leave one running.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import shutil
import signal
import subprocess
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


ORPHANED_EXIT = 125
"""Exit code of a step whose runner died before its death signal was set (it never started)."""


@functools.cache
def _setpriv() -> tuple[str, str] | None:
    """``(setpriv, sh)`` when ``setpriv --pdeathsig`` works here (util-linux >= 2.33), else None."""
    if not sys.platform.startswith("linux"):
        return None
    setpriv, sh = shutil.which("setpriv"), shutil.which("sh") or "/bin/sh"
    if setpriv is None or not os.path.exists(sh):
        return None
    try:
        probe = subprocess.run([setpriv, "--pdeathsig", "KILL", "--", sh, "-c", "exit 0"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return (setpriv, sh) if probe.returncode == 0 else None


def lifeline_prefix() -> list[str] | None:
    """Arguments to put before a step's command (an absolute path) so it dies with this process; None if
    ``setpriv`` cannot do it here (then use :func:`die_with_parent_hook`).

    ``setpriv`` sets the death signal and ``exec``s ``sh``, which checks that its parent is still this
    process (else the runner died before the signal was set: exit ``ORPHANED_EXIT``) and ``exec``s the
    command, so the step keeps the process id, the session and the process group it was started with.
    """
    tools = _setpriv()
    if tools is None:
        return None
    setpriv, sh = tools
    check = f'[ "$PPID" = "{os.getpid()}" ] || exit {ORPHANED_EXIT}; exec "$@"'
    return [setpriv, "--pdeathsig", "KILL", "--", sh, "-c", check, "nsbiflow-step"]
