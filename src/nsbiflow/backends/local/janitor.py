"""Remove finished steps' work directories in the background, so a worker slot never waits on the disk.

Removing a step's small work directory (``in/``, ``out/``, the log) is a few ``rmdir`` calls, which on a busy
ext4 disk mounted with ``discard`` take 3-10 ms each: as long as a trivial step itself. A worker moves the
directory aside (one ``rename``, so its name is free again at once: a retry or the next run may reuse it)
and the janitor thread deletes it while the next step runs. ``drain`` waits until everything handed over is
gone (the executor calls it at the end of a run). A runner killed before that leaves the moved directories
inside the run's work root, which the next run removes with the rest of a killed run's leftovers.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import threading
from pathlib import Path

TRASH_PREFIX = ".trash-"
"""Name prefix of a work directory moved aside for deletion (beside it, in the run's work root)."""


class Janitor:
    """One background thread deleting directories handed to it with ``discard``."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while True:
            path = self._queue.get()
            try:
                if path is not None:
                    shutil.rmtree(path, ignore_errors=True)
            finally:
                self._queue.task_done()

    def discard(self, folder: Path) -> None:
        """Move ``folder`` aside at once and delete it in the background (synchronously if it cannot move)."""
        trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{secrets.token_hex(4)}")
        try:
            os.rename(folder, trash)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="nsbiflow-janitor", daemon=True)
                self._thread.start()
        self._queue.put(trash)

    def drain(self) -> None:
        """Wait until every directory handed over so far is deleted."""
        self._queue.join()


JANITOR = Janitor()
"""The process's janitor (steps of every run in this process share it)."""
