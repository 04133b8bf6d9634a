"""Progress output of a local run: a live rich table on a terminal, plain lines otherwise (to stderr)."""

from __future__ import annotations

import sys
import time
from typing import ClassVar, Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from nsbiflow.engine.plan import Plan
from nsbiflow.store import RunManifest, StepRecord

_DONE = ("succeeded", "cached", "failed", "skipped")


class Progress(Protocol):
    """Receives run events."""

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """A run starts."""

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """A step changed status."""

    def finish(self, manifest: RunManifest) -> None:
        """The run ended."""


class QuietProgress:
    """Prints nothing."""

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """Nothing."""

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """Nothing."""

    def finish(self, manifest: RunManifest) -> None:
        """Nothing."""


class PlainProgress:
    """One line per event: fit for logs and CI."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """Announce the run."""
        self.total = len(plan.steps)
        self._print(f"run {manifest.run_id}: {plan.workflow.metadata.name}, {self.total} steps, store {manifest.store}")

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """Print a step's new status."""
        if status in _DONE:
            self.done += 1
        width = len(str(self.total))
        counter = f"[{self.done:>{width}}/{self.total}]"
        detail = ""
        if status == "succeeded":
            detail = f" in {record.seconds:.1f}s" + (f" ({record.attempts} attempts)" if record.attempts > 1 else "")
        elif status in ("failed", "skipped") and record.error:
            detail = f": {record.error}"
        self._print(f"{counter} {step_id} {status}{detail}")

    def finish(self, manifest: RunManifest) -> None:
        """Print the run's outcome."""
        self._print(f"run {manifest.run_id} {manifest.status}")


class RichProgress:
    """A live table of step templates with counts and the currently running steps."""

    _STYLE: ClassVar[dict[str, str]] = {
        "succeeded": "green",
        "cached": "cyan",
        "failed": "red",
        "skipped": "yellow",
        "running": "blue",
    }

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.plan: Plan | None = None
        self.status: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.errors: list[str] = []
        self.run_id = ""

    def _table(self) -> Table:
        assert self.plan is not None
        table = Table(title=f"nsbiflow run {self.run_id}", expand=False)
        for column in ("step", "done", "running", "cached", "failed", "time"):
            table.add_column(column)
        for template, ids in self.plan.templates.items():
            states = [self.status.get(i, "pending") for i in ids]
            done = sum(s in ("succeeded", "cached") for s in states)
            running = [i for i in ids if self.status.get(i) == "running"]
            elapsed = max((time.monotonic() - self.started[i] for i in running), default=0.0)
            failed = sum(s in ("failed", "skipped") for s in states)
            table.add_row(
                template,
                f"{done}/{len(ids)}",
                str(len(running) or ""),
                str(states.count("cached") or ""),
                f"[red]{failed}[/red]" if failed else "",
                f"{elapsed:.0f}s" if running else "",
            )
        return table

    def __rich__(self) -> Table:
        """Rendered on every refresh, so running times tick."""
        return self._table()

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """Start the live display."""
        self.plan, self.run_id = plan, manifest.run_id
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """Refresh the table."""
        self.status[step_id] = status
        if status == "running":
            self.started[step_id] = time.monotonic()
        if status == "failed" and record.error:
            self.errors.append(f"{step_id}: {record.error}")
        if self.live is not None:
            self.live.refresh()

    def finish(self, manifest: RunManifest) -> None:
        """Stop the display and print failures."""
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
        for line in self.errors:
            self.console.print(f"[red]failed[/red] {line}", markup=True, highlight=False)
        style = "green" if manifest.status == "succeeded" else "red"
        self.console.print(f"run {manifest.run_id} [{style}]{manifest.status}[/{style}]", highlight=False)
