"""Progress output of a local run: a live rich display on a terminal, plain lines otherwise (to stderr).

Besides step status changes, a running step may report its own progress: the runner gives each step process a
file in ``$NSBIFLOW_PROGRESS`` (:func:`progress_file`) and the step appends JSON lines ``{"done", "total",
"unit", "message"}`` to it (``nsbiflow.stepcli.progress`` does this for the stage programs). The displays read
those files: the rich one draws a bar per running step with an ETA, the plain one prints a line per update
(at most one every few seconds per step, and always the last one).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import ClassVar, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from nsbiflow.engine.plan import Plan
from nsbiflow.engine.progress import PROGRESS_ENV, StepProgress, format_seconds
from nsbiflow.store import RunManifest, StepRecord

__all__ = ["PROGRESS_ENV", "PlainProgress", "Progress", "QuietProgress", "RichProgress", "StepProgress",
           "format_seconds", "progress_file"]

_DONE = ("succeeded", "cached", "failed", "skipped")


def progress_file(workdir: Path) -> Path:
    """Where the step working in ``workdir`` writes its progress lines (beside it: it outlives the workdir)."""
    return workdir.parent / ".progress" / f"{workdir.name}.jsonl"


class Progress(Protocol):
    """Receives run events (a display may also define ``watch(step_id, path)`` to read step progress)."""

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


def _outcome(manifest: RunManifest, seconds: float) -> str:
    counts: dict[str, int] = {}
    for record in manifest.steps.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"in {format_seconds(seconds) if seconds >= 60 else f'{seconds:.1f}s'} ({detail})"


class _Watching:
    """Shared bookkeeping of the step progress files being watched."""

    def __init__(self) -> None:
        self.watched: dict[str, StepProgress] = {}
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def watch(self, step_id: str, path: Path) -> None:
        """Follow the progress file of a running step."""
        with self.lock:
            self.watched[step_id] = StepProgress(path)


class PlainProgress(_Watching):
    """One line per event: fit for logs and CI. Step progress: a line per update, at most every ``every`` s."""

    def __init__(self, stream: TextIO | None = None, every: float = 5.0, poll: float = 0.5) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.every = every
        self.poll_interval = poll
        self._printed: dict[str, tuple[float, int]] = {}  # step -> (time printed, updates printed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._print_lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.stream, flush=True)

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """Announce the run and start following step progress."""
        self.t0 = time.monotonic()
        self.total = len(plan.steps)
        self._print(f"run {manifest.run_id}: {plan.workflow.metadata.name}, {self.total} steps, store {manifest.store}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nsbiflow-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            with self.lock:
                items = list(self.watched.items())
            for step_id, state in items:
                self._report(step_id, state, final=False)

    def _report(self, step_id: str, state: StepProgress, *, final: bool) -> None:
        state.poll()
        printed_at, printed_updates = self._printed.get(step_id, (0.0, 0))
        if state.updates == printed_updates:
            return
        now = time.monotonic()
        if not final and now - printed_at < self.every and state.fraction() != 1.0:
            return
        self._printed[step_id] = (now, state.updates)
        self._print(f"  {step_id}: {state.describe()}")

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """Print a step's new status (after its last progress line)."""
        if status in _DONE:
            with self.lock:
                state = self.watched.pop(step_id, None)
            if state is not None:
                self._report(step_id, state, final=True)
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
        """Stop following progress; print the run's outcome and wall time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._print(f"run {manifest.run_id} {manifest.status} {_outcome(manifest, time.monotonic() - self.t0)}")


class RichProgress(_Watching):
    """A live table of step templates with counts, a bar per running step with its ETA, and the run's ETA."""

    _STYLE: ClassVar[dict[str, str]] = {
        "succeeded": "green",
        "cached": "cyan",
        "failed": "red",
        "skipped": "yellow",
        "running": "blue",
    }

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.plan: Plan | None = None
        self.status: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.ran: dict[str, float] = {}  # seconds of each step that ran (for the run's ETA)
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

    def _running(self) -> Table:
        table = Table.grid(padding=(0, 1))
        for column in ("step", "bar", "progress"):
            table.add_column(column)
        with self.lock:
            items = [(sid, s) for sid, s in self.watched.items() if self.status.get(sid) == "running"]
        for step_id, state in items:
            state.poll()
            fraction = state.fraction()
            elapsed = format_seconds(time.monotonic() - self.started.get(step_id, self.t0))
            bar = ProgressBar(total=1.0, completed=fraction or 0.0, width=30, pulse=fraction is None)
            text = state.describe() if state.updates else "started"
            table.add_row(step_id, bar, f"{text} [{elapsed}]")
        return table

    def _overall(self) -> str:
        assert self.plan is not None
        total = len(self.plan.steps)
        finished = sum(s in _DONE for s in self.status.values())
        running = sum(s == "running" for s in self.status.values())
        elapsed = time.monotonic() - self.t0
        line = f"{finished}/{total} steps done, {running} running, elapsed {format_seconds(elapsed)}"
        if self.ran and finished < total:  # remaining steps at the mean time of those that ran, spread over those
            mean = sum(self.ran.values()) / len(self.ran)  # running at once: a rough guide, labelled as such
            left = (total - finished) * mean / max(1, running)
            line += f", ETA ~{format_seconds(left)}"
        return line

    def __rich__(self) -> RenderableType:
        """Rendered on every refresh, so running times and bars tick."""
        return Group(self._table(), self._running(), self._overall())

    def start(self, plan: Plan, manifest: RunManifest) -> None:
        """Start the live display."""
        self.t0 = time.monotonic()
        self.plan, self.run_id = plan, manifest.run_id
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, step_id: str, status: str, record: StepRecord) -> None:
        """Refresh the display."""
        self.status[step_id] = status
        if status == "running":
            self.started[step_id] = time.monotonic()
        if status == "succeeded":
            self.ran[step_id] = record.seconds
        if status in _DONE:
            with self.lock:
                self.watched.pop(step_id, None)
        if status == "failed" and record.error:
            self.errors.append(f"{step_id}: {record.error}")
        if self.live is not None:
            self.live.refresh()

    def finish(self, manifest: RunManifest) -> None:
        """Stop the display; print failures, the outcome and the wall time."""
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
        for line in self.errors:
            self.console.print(f"[red]failed[/red] {line}", markup=True, highlight=False)
        style = "green" if manifest.status == "succeeded" else "red"
        outcome = _outcome(manifest, time.monotonic() - self.t0)
        self.console.print(f"run {manifest.run_id} [{style}]{manifest.status}[/{style}] {outcome}", highlight=False)

