"""The step progress channel: the one owner of its record format, on every backend.

A step appends JSON lines ``{"done": 3, "total": 8, "unit": "members", "message": "...", "label": "..."}`` to the
file named by ``$NSBIFLOW_PROGRESS``. Locally the runner reads that file. In an Argo pod the step wrapper relays
each line to the container log as ``NSBIFLOW-PROGRESS {...}`` (:func:`log_line`), where ``nsbiflow watch`` finds it
in the pod logs (:func:`parse_log_line`). :class:`StepProgress` keeps the latest record of one step, its rate and
its ETA, whichever way the records arrive.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_ENV = "NSBIFLOW_PROGRESS"
"""The environment variable naming the file a step appends its progress lines to."""

LOG_PREFIX = "NSBIFLOW-PROGRESS "
"""What marks a progress record in a pod's log (the JSON object follows it on the same line)."""


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def parse_record(text: str | bytes) -> dict[str, Any] | None:
    """A progress record (``done`` a number, ``total`` a number or null), or None for anything else."""
    try:
        record = json.loads(text)
        done = float(record["done"])
        total = record.get("total")
        total = float(total) if total is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return {"done": done, "total": total, "unit": str(record.get("unit") or ""),
            "message": str(record.get("message") or "")}  # fmt: skip


def log_line(record_text: str) -> str | None:
    """The log line that carries one channel line (None when the line is not a progress record)."""
    text = record_text.strip()
    if parse_record(text) is None:
        return None
    return LOG_PREFIX + text


def parse_log_line(line: str) -> dict[str, Any] | None:
    """The progress record carried by a log line (a timestamp before the prefix is allowed), else None."""
    at = line.find(LOG_PREFIX)
    if at < 0:
        return None
    return parse_record(line[at + len(LOG_PREFIX) :])


@dataclass
class StepProgress:
    """The latest progress record of one step: read from its progress file (``poll``) or fed (``apply``)."""

    path: Path | None = None
    offset: int = 0
    done: float = 0.0
    total: float | None = None
    unit: str = ""
    message: str = ""
    updates: int = 0
    first: tuple[float, float] | None = None  # (monotonic time, done) of the first record: the rate's origin
    changed_at: float = field(default_factory=time.monotonic)

    def apply(self, record: dict[str, Any]) -> None:
        """Take a parsed record (from :func:`parse_record` or :func:`parse_log_line`) as the latest."""
        self.done, self.total = record["done"], record["total"]
        self.unit, self.message = record["unit"], record["message"]
        now = time.monotonic()
        if self.first is None:
            self.first = (now, self.done)
        self.changed_at = now
        self.updates += 1

    def poll(self) -> bool:
        """Read new complete lines of the file; True when a new record arrived. Malformed lines are ignored."""
        if self.path is None:
            return False
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            return False
        self.offset += end + 1
        fresh = False
        for raw in data[: end + 1].splitlines():
            record = parse_record(raw)
            if record is not None:
                self.apply(record)
                fresh = True
        return fresh

    def fraction(self) -> float | None:
        """Done / total, when the total is known."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def eta(self) -> float | None:
        """Seconds left at the rate seen since the first record, when it can be estimated."""
        if self.first is None or not self.total:
            return None
        start, done0 = self.first
        elapsed, gained = time.monotonic() - start, self.done - done0
        if gained <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / gained

    def describe(self) -> str:
        """``3/8 members, ETA 12s: message``."""

        def num(value: float) -> str:
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"

        count = num(self.done) + (f"/{num(self.total)}" if self.total else "")
        unit = f" {self.unit}" if self.unit else ""
        eta = self.eta()
        tail = f", ETA {format_seconds(eta)}" if eta is not None and self.fraction() != 1.0 else ""
        return f"{count}{unit}{tail}" + (f": {self.message}" if self.message else "")
