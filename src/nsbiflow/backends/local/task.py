"""Run one step instance as a subprocess in its own work directory (the step contract, locally).

Inputs are staged from the store into ``in/``, the command gets ``--param``/``--in``/``--out`` arguments,
outputs are checked, then stored by content. Retries with exponential backoff; a timeout kills the whole
process group.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nsbiflow.backends.local.janitor import JANITOR
from nsbiflow.backends.local.lifeline import die_with_parent_hook, lifeline_prefix
from nsbiflow.backends.local.progress import PROGRESS_ENV, progress_file
from nsbiflow.engine.contract import (
    command_line,
    contract_environment,
    inherited_environment,
    input_path,
    output_path,
    redact,
    redact_file,
    secret_values,
    step_variables,
)
from nsbiflow.engine.plan import PlannedStep
from nsbiflow.store import ArtifactRef, ArtifactStore, CacheEntry

_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()


def kill_running() -> None:
    """Kill every step process still running (on Ctrl-C or when the run must stop)."""
    with _RUNNING_LOCK:
        for process in list(_RUNNING):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@dataclass
class TaskResult:
    """What running a step produced."""

    ok: bool
    outputs: dict[str, ArtifactRef] = field(default_factory=dict)
    attempts: int = 0
    seconds: float = 0.0
    log_path: Path | None = None
    error: str | None = None
    log_digest: str | None = None


def utc_now() -> str:
    """Current UTC time, ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def step_environment(step: PlannedStep, run_id: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a step process: the contract's variables over a small allowlist of the runner's.

    Nothing else of the runner's environment (S3 keys, ``ARGO_TOKEN``, ...) reaches a step unless its
    definition passes the name through (``env: {NAME: null}``).
    """
    literal, passthrough = step_variables(step.definition.env)
    env = inherited_environment(os.environ if environ is None else environ, passthrough)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", os.defpath)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    env.update(contract_environment(cpu_cores=step.resources.cpu_cores, gpu=step.resources.gpu, step_id=step.id,
                                    run_id=run_id, declared=literal))  # fmt: skip
    if visible is not None and "CUDA_VISIBLE_DEVICES" not in literal:
        env["CUDA_VISIBLE_DEVICES"] = visible  # the runner's device choice wins over "no GPU", as before
    return env


def stage_inputs(
    store: ArtifactStore, step: PlannedStep, refs: dict[str, list[ArtifactRef]], workdir: Path
) -> dict[str, list[Path]]:
    """Materialize input artifacts under ``workdir/in`` (digests verified on the way)."""
    staged: dict[str, list[Path]] = {}
    for name, artifacts in refs.items():
        spec = step.definition.inputs[name]
        paths = []
        for index, ref in enumerate(artifacts):
            target = input_path(workdir, name, spec, index, ref.filename or name)
            store.fetch(ref, target, quarantine=True)
            if ref.kind == "file":
                target.chmod(0o444)
            paths.append(target)
        staged[name] = paths
    return staged


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    meaningful = [line for line in lines if line.strip()]
    return meaningful[-1].strip() if meaningful else ""


def _resolve(program: str, workdir: Path, env: Mapping[str, str]) -> str:
    """``program`` as ``subprocess`` would run it (a path relative to ``workdir``, else looked up on the step's
    ``PATH``), as an absolute path; ``FileNotFoundError``/``PermissionError`` as ``Popen`` raises them.

    Done here because the lifeline wrapper (``setpriv``, then ``sh``'s ``exec``) would otherwise be the one to
    find it missing, and report it as an exit code instead of the runner's one-line error.
    """
    if os.sep in program:
        path = Path(program) if os.path.isabs(program) else workdir / program
        if not path.is_file():
            raise FileNotFoundError(program)
        if not os.access(path, os.X_OK):
            raise PermissionError(program)
        return str(path)
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        if shutil.which(program, mode=os.F_OK, path=env.get("PATH", os.defpath)) is not None:
            raise PermissionError(program)
        raise FileNotFoundError(program)
    return os.path.abspath(found)


def _run_once(
    command: list[str], workdir: Path, env: dict[str, str], log_path: Path, timeout: float | None, attempt: int
) -> tuple[int | None, str | None]:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# attempt {attempt}: {' '.join(command)}\n")
        log.flush()
        prefix = lifeline_prefix()  # dies with the runner, even by SIGKILL (lifeline.py)
        try:
            argv = command if prefix is None else [*prefix, _resolve(command[0], workdir, env), *command[1:]]
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent_hook() if prefix is None else None,  # the fallback forces a fork
            )
        except FileNotFoundError:
            return None, f"command not found: {command[0]!r} (is the step's program installed and on PATH?)"
        except PermissionError:
            return None, f"command not executable: {command[0]!r}"
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        try:
            return process.wait(timeout=timeout), None
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, f"timed out after {timeout:g}s (raise 'timeout' in the step definition)"
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)


def run_task(
    store: ArtifactStore,
    step: PlannedStep,
    refs: dict[str, list[ArtifactRef]],
    workdir: Path,
    run_id: str,
    *,
    key: str | None = None,
    keep_workdir: bool = False,
) -> TaskResult:
    """Stage, run (with retries), check and store one step; never raises for a failing command."""
    started = time.monotonic()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    log_path = workdir / "step.log"
    inputs = stage_inputs(store, step, refs, workdir)
    env = step_environment(step, run_id)
    env[PROGRESS_ENV] = str(progress_file(workdir))  # the step's progress channel (read by the display)
    progress_file(workdir).parent.mkdir(parents=True, exist_ok=True)
    progress_file(workdir).write_bytes(b"")
    secrets = secret_values(os.environ)
    attempts = 0
    error: str | None = None
    delay = step.retries.backoff_seconds
    for attempt in range(1, step.retries.limit + 2):
        attempts = attempt
        outputs: dict[str, Path] = {}
        if (workdir / "out").exists():
            shutil.rmtree(workdir / "out")
        for name, spec in step.definition.outputs.items():
            path = output_path(workdir, name, spec)
            (path if spec.kind == "dir" else path.parent).mkdir(parents=True, exist_ok=True)
            outputs[name] = path
        command = command_line(step.definition.command, step.parameters, inputs, outputs)
        code, error = _run_once(command, workdir, env, log_path, step.timeout, attempt)
        if code == 0:
            missing = [
                n
                for n, p in outputs.items()
                if not p.exists() or (p.is_dir() != (step.definition.outputs[n].kind == "dir"))
            ]
            if not missing:
                stored = {name: store.put(path) for name, path in outputs.items()}
                redact_file(log_path, secrets)  # known secret values never reach a stored log
                log = store.put_file(log_path).digest
                seconds = time.monotonic() - started
                if key is not None:  # recorded last: the cache only ever names complete, stored outputs
                    store.cache_record(
                        CacheEntry(
                            key=key,
                            step=step.id,
                            outputs=stored,
                            log=log,
                            run_id=run_id,
                            created=utc_now(),
                            seconds=round(seconds, 3),
                        )
                    )
                if not keep_workdir:  # moved aside here, deleted in the background (janitor.py)
                    JANITOR.discard(workdir)
                return TaskResult(True, stored, attempts, seconds, log_path, log_digest=log)
            error = f"exited 0 but did not write output(s) {', '.join(missing)}"
        elif code is not None:
            last = _tail(log_path)
            error = f"exited with code {code}" + (f": {last}" if last else "")
        if attempt <= step.retries.limit:
            time.sleep(delay)
            delay *= step.retries.backoff_factor
    redact_file(log_path, secrets)
    return TaskResult(False, {}, attempts, time.monotonic() - started, log_path, redact(error or "", secrets) or None)
