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
import socket
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from nsbiflow import __version__
from nsbiflow.backends.local.loops import task_function
from nsbiflow.backends.local.progress import PlainProgress, Progress, progress_file
from nsbiflow.backends.local.task import TaskResult, kill_running, utc_now
from nsbiflow.engine.keys import code_identity, step_key
from nsbiflow.engine.plan import Plan, PlannedStep
from nsbiflow.errors import ExecutionError, StoreError, StoreUnavailableError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest, StepRecord
from nsbiflow.store.digest import canonical_json

MANIFEST_INTERVAL = 1.0
"""Seconds between progress writes of the run manifest (it is always written at the start and the end)."""


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def machine_memory() -> float:
    """Physical memory in bytes (what the scheduler may hand out)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def _safe_dirname(step_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step_id)


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
        run_id = run_id or new_run_id()
        manifest = self._new_manifest(plan, run_id)
        self.store.write_manifest(manifest)
        root = self.workdir_root or Path(tempfile.gettempdir()) / "nsbiflow" / run_id
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
        except KeyboardInterrupt:
            manifest.status = "interrupted"
            manifest.error = "interrupted by the user"
            manifest.finished = utc_now()
            self.store.write_manifest(manifest)
            self.progress.finish(manifest)
            raise
        failed = [r for r in manifest.steps.values() if r.status in ("failed", "skipped")]
        manifest.status = "failed" if failed else "succeeded"
        manifest.outputs = self._workflow_outputs(plan, manifest)
        manifest.finished = utc_now()
        self.store.write_manifest(manifest)
        self.progress.finish(manifest)
        if not failed and not self.keep_workdirs and self.workdir_root is None:
            shutil.rmtree(root, ignore_errors=True)
        return manifest

    def _store_external_inputs(self, plan: Plan) -> dict[Path, ArtifactRef]:
        refs: dict[Path, ArtifactRef] = {}
        for step in plan.steps.values():
            for sources in step.inputs.values():
                for source in sources:
                    if source.path is not None and source.path not in refs:
                        refs[source.path] = self.store.put(source.path)
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
        pending = list(plan.order)
        running: dict[Future[TaskResult], tuple[PlannedStep, str, float, float]] = {}
        used_cpu, used_mem = 0.0, 0.0
        identities: dict[str, dict[str, str]] = {}
        resolved: dict[str, tuple[str, dict[str, list[ArtifactRef]]]] = {}  # key computed, not cached
        last_write = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while pending or running:
                    progressed = False
                    for step_id in list(pending):
                        step = plan.steps[step_id]
                        states = [manifest.steps[d].status for d in step.depends_on]
                        if any(s in ("failed", "skipped") for s in states):
                            pending.remove(step_id)
                            self._finish(manifest, step_id, status="skipped", error="an upstream step failed")
                            progressed = True
                            continue
                        if not all(s in ("succeeded", "cached") for s in states):
                            continue
                        if step_id not in resolved:
                            refs = self._input_refs(step, manifest, external)
                            if step.template not in identities:
                                identities[step.template] = code_identity(step.definition, step.definition_path)
                            digests = {n: [r.digest for r in rs] for n, rs in refs.items()}
                            key = step_key(step, digests, identities[step.template])
                            record = manifest.steps[step_id]
                            record.key, record.inputs = key, digests
                            record.command = list(step.definition.command)
                            hit = self.store.cache_lookup(key)
                            if hit is not None:
                                pending.remove(step_id)
                                record.outputs, record.log = hit.outputs, hit.log
                                self._finish(manifest, step_id, status="cached", cached=True)
                                progressed = True
                                continue
                            resolved[step_id] = (key, refs)
                        key, refs = resolved[step_id]
                        record = manifest.steps[step_id]
                        cpu = float(min(self.jobs, max(1, math.ceil(step.resources.cpu_cores))))
                        mem = min(step.resources.memory_bytes, self.memory)
                        if running and (used_cpu + cpu > self.jobs or used_mem + mem > self.memory):
                            continue
                        pending.remove(step_id)
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
                    if progressed and not running:
                        continue
                    if not running:
                        break
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        step, key, cpu, mem = running.pop(future)
                        used_cpu -= cpu
                        used_mem -= mem
                        self._complete(manifest, step, future.result())
                    if time.monotonic() - last_write > MANIFEST_INTERVAL:  # the final write is in run()
                        self.store.write_manifest(manifest)
                        last_write = time.monotonic()
            except BaseException:
                for future in running:
                    future.cancel()
                kill_running()
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


def check_store_reachable(store: ArtifactStore) -> None:
    """Fail fast with a clear message when the store cannot be used (before any step starts)."""
    try:
        store.backend.list("runs/")
    except StoreUnavailableError:
        raise
    except StoreError as exc:
        raise StoreError(f"cannot use the store {store.uri}: {exc}") from None
