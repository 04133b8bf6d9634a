"""The embedded default: run a plan on this machine, steps in parallel, every artifact in the store.

Scheduling respects each step's declared CPUs (``--jobs`` slots) and memory (the machine's RAM). A step
whose key is in the store's cache is not re-run. A failing step stops its dependents and keeps everything
already finished; running again resumes from the cache. Records are written only when complete, so a
runner killed at any moment leaves no half-written artifact recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import FrameType
from typing import Any

from nsbiflow import __version__
from nsbiflow.backends.local.janitor import JANITOR
from nsbiflow.backends.local.loops import task_function
from nsbiflow.backends.local.progress import PlainProgress, Progress, progress_file
from nsbiflow.backends.local.ready import ReadyQueue
from nsbiflow.backends.local.task import TaskResult, kill_running, utc_now
from nsbiflow.engine.keys import step_code_identity, step_key
from nsbiflow.engine.plan import Plan, PlannedStep
from nsbiflow.errors import ExecutionError, NsbiflowError, StoreError, StoreUnavailableError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest, StepRecord
from nsbiflow.store.digest import canonical_json
from nsbiflow.store.records import pid_alive

MANIFEST_INTERVAL = 1.0
"""Least seconds between progress writes of the run manifest (it is always written at the start and the end)."""

MANIFEST_SHARE = 0.05
"""Most of the scheduler's time the progress writes may take: the interval grows with the time one write
took (a 10^4-step manifest is ~9 MB), so writing it never becomes the per-step cost of a wide run."""


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp to the microsecond plus a random suffix.

    The microseconds keep ``latest`` right for runs started within the same second (with whole seconds the random
    suffix decided their order); ids of older stores (no fraction) still sort before later ones.
    """
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%f") + "-" + secrets.token_hex(3)


def machine_memory() -> float:
    """Physical memory in bytes (what the scheduler may hand out)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _safe_dirname(step_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step_id)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop a run cleanly: steps are killed, the manifest is finalised as ``interrupted``."""

OWNER_FILE = ".owner"
"""In a run's work-directory root: ``HOST PID`` of the runner (tells a killed run's leftovers apart)."""


class RunInterrupted(KeyboardInterrupt):
    """The runner got SIGINT, SIGTERM or SIGHUP (a KeyboardInterrupt, so it unwinds like Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP (what batch systems, systemd and ``timeout`` send) into ``RunInterrupted``.

    Only the first signal interrupts; later ones are ignored while the run finalises its manifest. In a
    thread other than the main one (where handlers cannot be installed) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def _handler(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise RunInterrupted(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _owner_gone(folder: Path) -> bool:
    """Whether ``folder`` is a run's work root whose runner on this host is no longer alive."""
    try:
        host, pid = (folder / OWNER_FILE).read_text().split()
        return host == socket.gethostname() and not pid_alive(int(pid))
    except (OSError, ValueError):
        return False


def stale_workdirs(parent: Path) -> list[Path]:
    """The work directories of killed runs (their runner on this host is gone) under ``parent``."""
    if not parent.is_dir():
        return []
    return sorted(f for f in parent.iterdir() if f.is_dir() and not f.is_symlink() and _owner_gone(f))


def clean_stale_workdirs(parent: Path) -> list[Path]:
    """Remove the work directories of killed runs under ``parent``; returns them."""
    removed = stale_workdirs(parent)
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


class LocalExecutor:
    """Runs plans locally; one instance can run several plans one after another."""

    def __init__(
        self,
        store: ArtifactStore,
        *,
        jobs: int | None = None,
        workdir: Path | None = None,
        progress: Progress | None = None,
        keep_workdirs: bool = False,
    ) -> None:
        self.store = store
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.workdir_root = workdir
        self.progress = progress or PlainProgress()
        self.keep_workdirs = keep_workdirs
        self.memory = machine_memory()

    # -- provenance --------------------------------------------------------------------------------
    def _store_sources(self, plan: Plan) -> dict[str, Any]:
        """Keep the workflow file and step definitions as blobs (what ``preserve`` archives)."""
        workflow_blob = self.store.put_file(plan.path).digest
        definitions: dict[str, str] = {}
        for step in plan.steps.values():
            if step.template in definitions:
                continue
            if step.definition_path is not None:
                definitions[step.template] = self.store.put_file(step.definition_path).digest
            else:
                definitions[step.template] = self.store.put_bytes(
                    canonical_json(step.definition.model_dump(mode="json", by_alias=True))
                )
        return {
            "name": plan.workflow.metadata.name,
            "path": str(plan.path.resolve()),
            "digest": plan.digest,
            "file": workflow_blob,
            "definitions": definitions,
        }

    def _new_manifest(self, plan: Plan, run_id: str) -> RunManifest:
        steps = {
            sid: StepRecord(template=s.template, image=s.definition.image, parameters=s.parameters)
            for sid, s in plan.steps.items()
        }
        versions = {"nsbiflow": __version__, "python": platform.python_version(), "platform": platform.platform()}
        return RunManifest(
            run_id=run_id,
            workflow=self._store_sources(plan),
            parameters=plan.parameters,
            started=utc_now(),
            host=socket.gethostname(),
            pid=os.getpid(),
            versions=versions,
            store=self.store.uri,
            steps=steps,
        )

    # -- running -----------------------------------------------------------------------------------
    def run(self, plan: Plan, run_id: str | None = None) -> RunManifest:
        """Run the plan; returns the final manifest (status ``succeeded`` or ``failed``).

        Raises ``ExecutionError`` only when the run cannot go on at all (e.g. the store went away).
        """
        with stop_on_signals():
            return self._run(plan, run_id or new_run_id())

    def _run(self, plan: Plan, run_id: str) -> RunManifest:
        manifest = self._new_manifest(plan, run_id)
        self.store.write_manifest(manifest)
        runs_root = Path(tempfile.gettempdir()) / "nsbiflow"
        root = self.workdir_root or runs_root / run_id
        if self.workdir_root is None:
            clean_stale_workdirs(runs_root)
        with contextlib.suppress(OSError):
            root.mkdir(parents=True, exist_ok=True)
            (root / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        cleaner = getattr(self.store.backend, "clean_temporaries", None)
        if callable(cleaner):
            with contextlib.suppress(StoreError, OSError):
                cleaner()
        self.progress.start(plan, manifest)
        try:
            external = self._store_external_inputs(plan)
            self._schedule(plan, manifest, external, root)
        except StoreError as exc:
            manifest.status = "interrupted"
            manifest.error = str(exc)
            manifest.finished = utc_now()
            self.progress.finish(manifest)
            with contextlib.suppress(StoreError):
                self.store.write_manifest(manifest)
            raise ExecutionError(f"run {run_id} stopped: {exc}") from None
        except KeyboardInterrupt as exc:
            for sig in STOP_SIGNALS:  # a second signal must not cut the finalisation short
                with contextlib.suppress(ValueError):
                    signal.signal(sig, signal.SIG_IGN)
            cause = exc.signal_name if isinstance(exc, RunInterrupted) else "SIGINT"
            manifest.status = "interrupted"
            manifest.error = f"interrupted ({cause}); run again to resume: finished steps are kept"
            manifest.finished = utc_now()
            for record in manifest.steps.values():
                if record.status == "running":
                    record.status, record.error = "pending", f"stopped: the run was interrupted ({cause})"
            with contextlib.suppress(StoreError):
                self.store.write_manifest(manifest)
            self.progress.finish(manifest)
            if not self.keep_workdirs and self.workdir_root is None:
                shutil.rmtree(root, ignore_errors=True)
            raise
        JANITOR.drain()  # the finished steps' work directories are gone before the run reports its end
        failed = [r for r in manifest.steps.values() if r.status in ("failed", "skipped")]
        manifest.status = "failed" if failed else "succeeded"
        manifest.outputs = self._workflow_outputs(plan, manifest)
        manifest.finished = utc_now()
        self.store.write_manifest(manifest)
        self.progress.finish(manifest)
        if not failed and not self.keep_workdirs and self.workdir_root is None:
            shutil.rmtree(root, ignore_errors=True)
        else:  # kept for the failed steps' logs; no longer a killed run's leftovers
            (root / OWNER_FILE).unlink(missing_ok=True)
        return manifest

    def _store_external_inputs(self, plan: Plan) -> dict[Path, ArtifactRef]:
        refs: dict[Path, ArtifactRef] = {}
        for step in plan.steps.values():
            for sources in step.inputs.values():
                for source in sources:
                    if source.path is not None and source.path not in refs:
                        refs[source.path] = self.store.put(source.path, follow_links=True)  # the user's own file
        return refs

    def _input_refs(
        self, step: PlannedStep, manifest: RunManifest, external: dict[Path, ArtifactRef]
    ) -> dict[str, list[ArtifactRef]]:
        refs: dict[str, list[ArtifactRef]] = {}
        for name, sources in step.inputs.items():
            refs[name] = [
                external[s.path] if s.path is not None else manifest.steps[str(s.step_id)].outputs[str(s.output)]
                for s in sources
            ]
        return refs

    def _schedule(self, plan: Plan, manifest: RunManifest, external: dict[Path, ArtifactRef], root: Path) -> None:
        pending = ReadyQueue(plan)  # steps whose dependencies are all finished (no O(steps) scan per completion)
        running: dict[Future[TaskResult], tuple[PlannedStep, str, float, float]] = {}
        used_cpu, used_mem = 0.0, 0.0
        identities: dict[str, dict[str, str]] = {}
        resolved: dict[str, tuple[str, dict[str, list[ArtifactRef]]]] = {}  # key computed, not cached
        last_write, interval = time.monotonic(), MANIFEST_INTERVAL
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while pending or running:
                    progressed = False
                    for step_id in pending.scan():
                        if running and used_cpu + 1 > self.jobs:
                            break  # every slot is taken: nothing more can start until a step completes
                        step = plan.steps[step_id]
                        states = [manifest.steps[d].status for d in step.depends_on]
                        if any(s in ("failed", "skipped") for s in states):
                            pending.take(step_id)
                            self._finish(manifest, step_id, status="skipped", error="an upstream step failed")
                            pending.finished(step_id)
                            progressed = True
                            continue
                        if not all(s in ("succeeded", "cached") for s in states):
                            continue
                        if step_id not in resolved:
                            refs = self._input_refs(step, manifest, external)
                            if step.template not in identities:
                                identities[step.template] = step_code_identity(step)
                            digests = {n: [r.digest for r in rs] for n, rs in refs.items()}
                            key = step_key(step, digests, identities[step.template])
                            record = manifest.steps[step_id]
                            record.key, record.inputs = key, digests
                            record.command = list(step.definition.command)
                            hit = self.store.cache_lookup(key)
                            if hit is not None:
                                pending.take(step_id)
                                record.outputs, record.log = hit.outputs, hit.log
                                self._finish(manifest, step_id, status="cached", cached=True)
                                pending.finished(step_id)
                                progressed = True
                                continue
                            resolved[step_id] = (key, refs)
                        key, refs = resolved[step_id]
                        record = manifest.steps[step_id]
                        cpu = float(min(self.jobs, max(1, math.ceil(step.resources.cpu_cores))))
                        mem = min(step.resources.memory_bytes, self.memory)
                        if running and (used_cpu + cpu > self.jobs or used_mem + mem > self.memory):
                            continue
                        pending.take(step_id)
                        used_cpu += cpu
                        used_mem += mem
                        record.status, record.started = "running", utc_now()
                        workdir = root / _safe_dirname(step_id)
                        watch = getattr(self.progress, "watch", None)  # optional: displays of step progress
                        if watch is not None:
                            watch(step_id, progress_file(workdir))
                        self.progress.update(step_id, "running", record)
                        future = pool.submit(
                            task_function(step, self.jobs),  # run_task, or the loop runner for a loop: step
                            self.store,
                            step,
                            refs,
                            workdir,
                            manifest.run_id,
                            key=key,
                            keep_workdir=self.keep_workdirs,
                        )
                        running[future] = (step, key, cpu, mem)
                        progressed = True
                    if progressed and (not running or pending.fresh()):
                        continue
                    if not running:
                        break
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        step, key, cpu, mem = running.pop(future)
                        used_cpu -= cpu
                        used_mem -= mem
                        self._complete(manifest, step, _result_of(future))
                        pending.finished(step.id)
                    if time.monotonic() - last_write > interval:  # the final write is in run()
                        began = time.monotonic()
                        self.store.write_manifest(manifest)
                        last_write = time.monotonic()
                        interval = max(MANIFEST_INTERVAL, (last_write - began) / MANIFEST_SHARE)
            except BaseException:
                for future in running:
                    future.cancel()
                # a worker may still be staging inputs and start its step after this: keep killing until
                # every started task has returned, so no step outlives the run
                unfinished = [f for f in running if not f.cancelled()]
                while unfinished:
                    kill_running()
                    _, still = wait(unfinished, timeout=0.1)
                    unfinished = list(still)
                raise

    def _complete(self, manifest: RunManifest, step: PlannedStep, result: TaskResult) -> None:
        record = manifest.steps[step.id]
        record.attempts = result.attempts
        record.seconds = round(result.seconds, 3)
        record.log = result.log_digest
        if not result.ok:
            if result.log_path is not None and result.log_path.exists():
                record.log = self.store.put_file(result.log_path).digest
            where = f" (log: {result.log_path})" if result.log_path else ""
            self._finish(manifest, step.id, status="failed", error=f"{result.error}{where}")
            return
        record.outputs = result.outputs
        self._finish(manifest, step.id, status="succeeded")

    def _finish(
        self, manifest: RunManifest, step_id: str, *, status: str, cached: bool = False, error: str | None = None
    ) -> None:
        record = manifest.steps[step_id]
        record.status = status  # type: ignore[assignment]
        record.cached = cached
        record.error = error
        record.finished = utc_now()
        self.progress.update(step_id, status, record)

    def _workflow_outputs(self, plan: Plan, manifest: RunManifest) -> dict[str, ArtifactRef | list[ArtifactRef]]:
        outputs: dict[str, ArtifactRef | list[ArtifactRef]] = {}
        for name, sources in plan.outputs.items():
            refs = [manifest.steps[str(s.step_id)].outputs.get(str(s.output)) for s in sources]
            present = [r for r in refs if r is not None]
            if len(present) == len(refs):
                outputs[name] = present[0] if len(present) == 1 else present
        return outputs


def _result_of(future: Future[TaskResult]) -> TaskResult:
    """A task's result; an error a user can act on (an unsafe output, a corrupt input) fails only that step.

    Store errors still stop the run (``run`` records it as interrupted): the store itself is unusable.
    """
    try:
        return future.result()
    except StoreError:
        raise
    except NsbiflowError as exc:
        return TaskResult(False, error=str(exc))


def check_store_reachable(store: ArtifactStore) -> None:
    """Fail fast with a clear message when the store cannot be used (before any step starts)."""
    try:
        store.backend.list("runs/")
    except StoreUnavailableError:
        raise
    except StoreError as exc:
        raise StoreError(f"cannot use the store {store.uri}: {exc}") from None
