"""Progress of a submitted workflow's steps, read from their pod logs (``nsbiflow watch``).

On Argo a step cannot write a file the CLI sees; the pod wrapper relays the step's progress records to the
container log as ``NSBIFLOW-PROGRESS {...}`` lines (``nsbiflow.engine.progress``). :class:`PodProgress` keeps the
latest record per pod from log lines, :class:`LogFollower` feeds it from the Argo server's log API in a thread
(reconnecting when the stream ends, without replaying lines already seen), and the two displays show it: a live
table with a bar per running step on a terminal (:class:`RichWatch`), a line per change otherwise
(:class:`PlainWatch`), both ending with the workflow's wall time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Protocol, TextIO

import requests
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from nsbiflow.backends.argo.submit import ArgoError, NodeState, WorkflowState
from nsbiflow.engine.progress import StepProgress, format_seconds, parse_log_line

_FINISHED_NODE = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


class PodProgress:
    """The latest progress record of each pod, from ``(pod, log line)`` pairs; thread-safe."""

    def __init__(self) -> None:
        self.pods: dict[str, StepProgress] = {}
        self.lines: dict[str, int] = {}  # pod -> log lines seen (to skip them when a stream is re-read)
        self.lock = threading.Lock()

    def feed(self, pod: str, line: str, number: int | None = None) -> bool:
        """Take the pod's log line ``number`` (1-based; the next one when None), unless that line was already
        seen; True when it carried a new progress record."""
        record = parse_log_line(line)
        with self.lock:
            seen = self.lines.get(pod, 0)
            number = seen + 1 if number is None else number
            if number <= seen:
                return False
            self.lines[pod] = number
            if record is None:
                return False
            self.pods.setdefault(pod, StepProgress()).apply(record)
        return True

    def feed_all(self, lines: Iterable[tuple[str, str]]) -> int:
        """Feed one read of the logs from their start (``(pod, line)`` pairs; lines seen before are skipped);
        returns how many new records it carried."""
        count: dict[str, int] = {}
        fresh = 0
        for pod, line in lines:
            count[pod] = count.get(pod, 0) + 1
            fresh += self.feed(pod, line, count[pod])
        return fresh

    def get(self, pod: str) -> StepProgress | None:
        """The pod's progress, if it reported any."""
        with self.lock:
            return self.pods.get(pod)


class LogSource(Protocol):
    """What the follower reads: ``ArgoClient.logs``."""

    def logs(self, name: str, step: str | None = None, *, follow: bool = False) -> Iterator[tuple[str, str]]:
        """``(pod, line)`` pairs of the workflow's step containers."""


class LogFollower:
    """Follows a workflow's pod logs in a daemon thread and feeds :class:`PodProgress`.

    Each (re)connection reads the log from the start; the lines a pod already delivered are skipped, so a record
    is applied once. Errors (a stream cut, a server restart) are retried every ``interval`` seconds until stopped.
    """

    def __init__(self, client: LogSource, name: str, progress: PodProgress, *, interval: float = 2.0) -> None:
        self.client, self.name, self.progress, self.interval = client, name, progress, interval
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nsbiflow-watch-logs", daemon=True)

    def start(self) -> LogFollower:
        """Start following."""
        self._thread.start()
        return self

    def stop(self, drain: bool = True) -> None:
        """Stop following; with ``drain``, read the logs once more so that the last records are in."""
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
        if drain:
            self.read_once(follow=False)

    def read_once(self, *, follow: bool) -> None:
        """One pass over the logs (skipping lines seen); errors are kept in ``error``, never raised."""

        def lines() -> Iterator[tuple[str, str]]:
            for pair in self.client.logs(self.name, follow=follow):
                yield pair
                if self._stop.is_set() and follow:
                    return

        try:
            self.progress.feed_all(lines())
            self.error = None
        except (ArgoError, requests.exceptions.RequestException) as exc:
            self.error = str(exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.read_once(follow=True)
            self._stop.wait(self.interval)


class WatchDisplay(Protocol):
    """Receives the workflow's state at every poll."""

    def show(self, state: WorkflowState, changed: list[NodeState]) -> None:
        """A new poll (``changed``: nodes whose phase changed)."""

    def finish(self, state: WorkflowState) -> None:
        """The workflow finished."""


def _overall(state: WorkflowState) -> str:
    nodes = state.nodes or []
    done = sum(n.phase in _FINISHED_NODE for n in nodes)
    running = sum(n.phase == "Running" for n in nodes)
    return f"{done}/{len(nodes)} pods done, {running} running"


class PlainWatch:
    """A line per node phase change, and per step-progress update (at most one every ``every`` s per pod)."""

    def __init__(self, progress: PodProgress, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.progress = progress
        self.stream = stream or sys.stdout
        self.every = every
        self.t0 = time.monotonic()
        self._printed: dict[str, tuple[float, int]] = {}  # pod -> (time printed, updates printed)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _report(self, node: NodeState, *, final: bool) -> None:
        state = self.progress.get(node.pod)
        if state is None:
            return
        printed_at, printed_updates = self._printed.get(node.pod, (0.0, 0))
        now = time.monotonic()
        if state.updates == printed_updates:
            return
        if not final and now - printed_at < self.every and state.fraction() != 1.0:
            return
        self._printed[node.pod] = (now, state.updates)
        self._print(f"  {node.name}: {state.describe()}")

    def show(self, state: WorkflowState, changed: list[NodeState]) -> None:
        """Print progress of running pods, then the phase changes (a finished pod's last progress first)."""
        changed_pods = {n.pod for n in changed}
        for node in state.nodes or []:
            if node.phase == "Running" and node.pod not in changed_pods:
                self._report(node, final=False)
        for node in changed:
            if node.phase in _FINISHED_NODE:
                self._report(node, final=True)
            cached = " (cached)" if node.cached else ""
            self._print(f"{node.name}: {node.phase}{cached}")

    def finish(self, state: WorkflowState) -> None:
        """Every pod's last unprinted progress, the workflow's outcome and the time watched."""
        for node in state.nodes or []:
            self._report(node, final=True)
        message = f": {state.message}" if state.message else ""
        self._print(f"{state.name}: {state.phase}{message} ({_overall(state)}, "
                    f"watched {format_seconds(time.monotonic() - self.t0)})")  # fmt: skip


class RichWatch:
    """A live table: every step pod with its phase, a bar and ETA for running ones, the overall count."""

    _STYLE: ClassVar[dict[str, str]] = {"Succeeded": "green", "Failed": "red", "Error": "red", "Running": "blue"}

    def __init__(self, progress: PodProgress, console: Console | None = None) -> None:
        self.progress = progress
        self.console = console or Console(stderr=True)
        self.state: WorkflowState | None = None
        self.started: dict[str, float] = {}
        self.t0 = time.monotonic()
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)
        self._live = False

    def __rich__(self) -> RenderableType:
        """Rendered on every refresh."""
        if self.state is None:
            return "waiting for the workflow..."
        table = Table(title=f"{self.state.name} ({self.state.phase})", expand=False)
        for column in ("step", "phase", "bar", "progress"):
            table.add_column(column)
        for node in self.state.nodes or []:
            step = self.progress.get(node.pod)
            style = self._STYLE.get(node.phase, "")
            phase = f"[{style}]{node.phase}[/{style}]" if style else node.phase
            phase += " (cached)" if node.cached else ""
            bar: RenderableType = ""
            text = ""
            if step is not None and node.phase in ("Running", "Succeeded"):
                fraction = step.fraction()
                bar = ProgressBar(total=1.0, completed=fraction or 0.0, width=30, pulse=fraction is None)
                text = step.describe()
            elif node.phase == "Running":
                bar = ProgressBar(total=1.0, completed=0.0, width=30, pulse=True)
                text = "started"
            if node.phase == "Running":
                text += f" [{format_seconds(time.monotonic() - self.started.get(node.pod, self.t0))}]"
            table.add_row(node.name, phase, bar, text)
        elapsed = format_seconds(time.monotonic() - self.t0)
        return Group(table, f"{_overall(self.state)}, watched {elapsed}")

    def show(self, state: WorkflowState, changed: list[NodeState]) -> None:
        """Take the new state (the live display redraws itself)."""
        for node in changed:
            if node.phase == "Running":
                self.started.setdefault(node.pod, time.monotonic())
        self.state = state
        if not self._live:
            self.live.start()
            self._live = True
        self.live.refresh()

    def finish(self, state: WorkflowState) -> None:
        """Stop the display; print the outcome."""
        self.state = state
        if self._live:
            self.live.refresh()
            self.live.stop()
        style = "green" if state.finished_ok else "red"
        message = f": {state.message}" if state.message else ""
        self.console.print(f"{state.name}: [{style}]{state.phase}[/{style}]{message} ({_overall(state)}, "
                           f"watched {format_seconds(time.monotonic() - self.t0)})", highlight=False)  # fmt: skip


def watch_with_progress(client: Any, name: str, *, interval: float, timeout: float | None,
                        display: WatchDisplay, progress: PodProgress) -> WorkflowState:  # fmt: skip
    """Poll the workflow until it finishes while following its pod logs for progress; returns the final state."""
    follower = LogFollower(client, name, progress, interval=max(interval, 1.0)).start()
    try:
        state: WorkflowState = client.watch(name, interval=interval, timeout=timeout, on_change=display.show)
    finally:
        follower.stop(drain=False)
    follower.read_once(follow=False)  # the last records of pods that ended between two polls
    display.show(state, [])
    display.finish(state)
    return state
