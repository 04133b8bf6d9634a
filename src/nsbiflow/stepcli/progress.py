"""Progress on stderr: a rich progress bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class Progress:
    """``update(done, total, message)`` callbacks to a bar (TTY) or to a line every ``every`` seconds."""

    def __init__(self, description: str, every: float = 5.0) -> None:
        self.description = description
        self.every = every
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._tty = sys.stderr.isatty()

    def __enter__(self) -> Progress:
        if self._tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=None, note="")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def update(self, done: int, total: int, message: str = "") -> None:
        """Report ``done`` of ``total`` units."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, note=message)
            return
        now = time.monotonic()
        if now - self._last >= self.every or done >= total:
            self._last = now
            print(f"{self.description}: {done}/{total} {message}".rstrip(), file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        """A line of information."""
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)
