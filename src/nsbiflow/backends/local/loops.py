"""Run a ``loop:`` step locally: iterations one after another, each body template's instances in parallel.

The loop is one task of the outer schedule (``task_function`` hands the executor ``run_loop`` for it). Every body
instance goes through the store's cache by its ordinary step key before it is run with ``run_task``, so a
runner killed mid-iteration resumes, on the next run, at the first instance without a cache entry; and the
loop's own outputs are cached under the placeholder's key (which covers the body definitions and code) once
the loop has stopped.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nsbiflow.backends.local.task import TaskResult, run_task, utc_now
from nsbiflow.engine.keys import code_identity, step_key
from nsbiflow.engine.loops import ITERATIONS_OUTPUT, Iteration, LoopPlan
from nsbiflow.engine.plan import PlannedStep
from nsbiflow.errors import NsbiflowError
from nsbiflow.store import ArtifactRef, ArtifactStore, CacheEntry

MAX_JSON_BYTES = 16 * 2**20
"""Largest output an expression may read (``loop.current.STEP.OUTPUT``)."""

TaskFunction = Callable[..., TaskResult]


def task_function(step: PlannedStep, jobs: int) -> TaskFunction:
    """What runs ``step``: ``run_task`` for an ordinary step, the loop runner for a ``loop:`` placeholder."""
    if step.loop is None:
        return run_task
    return functools.partial(run_loop, jobs=jobs)


class _LoopState:
    def __init__(self, store: ArtifactStore, loop: LoopPlan, outer: dict[str, list[ArtifactRef]]) -> None:
        self.store = store
        self.loop = loop
        self.artifacts: dict[tuple[str, str], ArtifactRef] = {}
        for name, sources in loop.outer.items():
            for source, ref in zip(sources, outer.get(name, []), strict=False):
                if source.step_id is not None:
                    self.artifacts[(source.step_id, str(source.output))] = ref
        self.by_path = {
            s.path: r
            for n, ss in loop.outer.items()
            for s, r in zip(ss, outer.get(n, []), strict=False)
            if s.path is not None
        }
        self.json_cache: dict[str, Any] = {}
        self.identities: dict[str, dict[str, str]] = {}

    def read(self, step_id: str, output: str) -> Any:
        ref = self.artifacts.get((step_id, output))
        if ref is None:
            raise NsbiflowError(f"loop {self.loop.name}: {step_id}.{output} has not been produced")
        if ref.digest not in self.json_cache:
            if ref.kind != "file" or ref.size > MAX_JSON_BYTES:
                raise NsbiflowError(
                    f"loop {self.loop.name}: {step_id}.{output} is not a JSON file an expression can read"
                )
            try:
                self.json_cache[ref.digest] = json.loads(self.store.read_blob(ref.digest))
            except (ValueError, UnicodeDecodeError):
                raise NsbiflowError(
                    f"loop {self.loop.name}: {step_id}.{output} is not JSON; expressions read JSON outputs only"
                ) from None
        return self.json_cache[ref.digest]

    def refs(self, step: PlannedStep) -> dict[str, list[ArtifactRef]]:
        result: dict[str, list[ArtifactRef]] = {}
        for name, sources in step.inputs.items():
            refs = []
            for source in sources:
                if source.path is not None:
                    refs.append(self.by_path.get(source.path) or self.store.put(source.path))
                else:
                    refs.append(self.artifacts[(str(source.step_id), str(source.output))])
            result[name] = refs
        return result


def run_loop(
    store: ArtifactStore,
    step: PlannedStep,
    refs: dict[str, list[ArtifactRef]],
    workdir: Path,
    run_id: str,
    *,
    key: str | None = None,
    keep_workdir: bool = False,
    jobs: int = 1,
) -> TaskResult:
    """Run the loop ``step`` (a placeholder with ``step.loop``) to its stop; never raises for a failing body."""
    loop: LoopPlan = step.loop
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "loop.log"
    state = _LoopState(store, loop, refs)
    record: list[dict[str, Any]] = []
    lines: list[str] = []
    previous: Iteration | None = None
    reason = "max_iterations"
    attempts = 0
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for index in range(loop.spec.max_iterations):
                iteration = Iteration(index)
                steps_record: dict[str, dict[str, Any]] = {}
                for generation in loop.generations:
                    planned = [p for t in generation for p in loop.plan_template(t, iteration, previous, state.read)]
                    futures = {}
                    for body in planned:
                        inputs = state.refs(body)
                        if body.template not in state.identities:
                            state.identities[body.template] = code_identity(body.definition, body.definition_path)
                        digests = {n: [r.digest for r in rs] for n, rs in inputs.items()}
                        body_key = step_key(body, digests, state.identities[body.template])
                        hit = store.cache_lookup(body_key)
                        steps_record[body.id] = {"key": body_key, "parameters": body.parameters}
                        if hit is not None:
                            lines.append(f"{body.id}: cached")
                            _keep(state, body, hit.outputs)
                            continue
                        futures[body.id] = (
                            body,
                            pool.submit(
                                run_task,
                                store,
                                body,
                                inputs,
                                workdir / _dirname(body.id),
                                run_id,
                                key=body_key,
                                keep_workdir=keep_workdir,
                            ),
                        )
                    for body_id, (body, future) in futures.items():
                        result = future.result()
                        attempts += result.attempts
                        if not result.ok:
                            lines.append(f"{body_id}: failed: {result.error}")
                            return _failed(
                                store,
                                log_path,
                                lines,
                                started,
                                attempts,
                                f"loop iteration {index}: step {body_id} failed: {result.error}",
                            )
                        lines.append(f"{body_id}: ran in {result.seconds:.2f}s")
                        _keep(state, body, result.outputs)
                for body_id, entry in steps_record.items():
                    template = body_id.removeprefix(loop.step_prefix(index)).split("[")[0]
                    entry["outputs"] = {
                        o: state.artifacts[(body_id, o)].digest for o in loop.definitions[template][0].outputs
                    }
                record.append({"iteration": index, "steps": steps_record})
                previous = iteration
                if loop.should_stop(iteration, state.read):
                    reason = "until"
                    lines.append(f"iteration {index}: until holds: stop")
                    break
                lines.append(f"iteration {index}: until does not hold")
    except NsbiflowError as exc:
        lines.append(str(exc))
        return _failed(store, log_path, lines, started, attempts, str(exc))
    assert previous is not None
    outputs: dict[str, ArtifactRef] = {}
    for name in loop.spec.outputs:
        source = loop.output_source(name, previous)
        outputs[name] = state.artifacts[(source, loop.spec.outputs[name].partition(".")[2])]
    summary = {"loop": loop.name, "stopped_by": reason, "iterations": record}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "iterations.json"
        path.write_text(json.dumps(summary, indent=1, sort_keys=True))
        outputs[ITERATIONS_OUTPUT] = store.put(path)
    lines.append(f"stopped by {reason} after {len(record)} iteration(s)")
    log_path.write_text("\n".join(lines) + "\n")
    log = store.put_file(log_path).digest
    seconds = time.monotonic() - started
    if key is not None:  # recorded last: only a loop that stopped is ever a cache hit
        entry = {"key": key, "step": step.id, "outputs": outputs, "log": log, "run_id": run_id}
        store.cache_record(CacheEntry.model_validate({**entry, "created": utc_now(), "seconds": round(seconds, 3)}))
    return TaskResult(True, outputs, 1, seconds, log_path, log_digest=log)


def _keep(state: _LoopState, body: PlannedStep, outputs: dict[str, ArtifactRef]) -> None:
    for name, ref in outputs.items():
        state.artifacts[(body.id, name)] = ref


def _dirname(step_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step_id)


def _failed(
    store: ArtifactStore, log_path: Path, lines: list[str], started: float, attempts: int, error: str
) -> TaskResult:
    log_path.write_text("\n".join(lines) + "\n")
    return TaskResult(False, {}, max(1, attempts), time.monotonic() - started, log_path, error=error)
