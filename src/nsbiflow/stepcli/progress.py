"""Progress of a stage program: a rich bar or plain lines on stderr, and JSON lines for the runner.

When the runner sets ``NSBIFLOW_PROGRESS`` (a file path), every update is also appended to that file as one JSON
object per line, ``{"done": 3, "total": 8, "unit": "members", "message": "...", "label": "..."}``, at most a few
per second (the last one always). The local runner reads the file to draw a bar per running step; on Argo the pod
wrapper relays the lines to the pod log, where ``nsbiflow watch`` reads them (``nsbiflow.engine.progress``). Any
other program may write the same lines (the format is the contract, see docs/workflows.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from types import TracebackType
from typing import IO, Any

from nsbiflow.engine.progress import PROGRESS_ENV

__all__ = ["PROGRESS_ENV", "Progress", "progress_line"]


def progress_line(done: float, total: float | None, unit: str = "", message: str = "", label: str = "") -> str:
    """One progress record as a JSON line (without the newline)."""
    record: dict[str, Any] = {"done": done, "total": total, "unit": unit, "message": message}
    if label:
        record["label"] = label
    return json.dumps(record, sort_keys=True)


class Progress:
    """``update(done, total, message)`` callbacks to a bar (TTY) or to a line every ``every`` seconds."""

    def __init__(self, description: str, every: float = 5.0, unit: str = "", channel_every: float = 0.5) -> None:
        self.description = description
        self.every = every
        self.unit = unit
        self.channel_every = channel_every
        self._last = 0.0
        self._last_channel = 0.0
        self._bar: Any = None
        self._task: Any = None
        self._tty = sys.stderr.isatty()
        self._channel: IO[str] | None = None

    def __enter__(self) -> Progress:
        path = os.environ.get(PROGRESS_ENV)
        if path:
            with contextlib.suppress(OSError):  # progress is a courtesy: never fail a step over it
                self._channel = open(path, "a", encoding="utf-8")
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
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _send(self, done: int, total: int, message: str) -> None:
        if self._channel is None:
            return
        now = time.monotonic()
        if now - self._last_channel < self.channel_every and done < total:
            return
        self._last_channel = now
        with contextlib.suppress(OSError):
            self._channel.write(progress_line(done, total, self.unit, message, self.description) + "\n")
            self._channel.flush()

    def update(self, done: int, total: int, message: str = "") -> None:
        """Report ``done`` of ``total`` units."""
        self._send(done, total, message)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, note=message)
            return
        now = time.monotonic()
        if now - self._last >= self.every or done >= total:
            self._last = now
            unit = f" {self.unit}" if self.unit else ""
            print(f"{self.description}: {done}/{total}{unit} {message}".rstrip(), file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        """A line of information."""
        if self._bar is not None:
            self._bar.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)
