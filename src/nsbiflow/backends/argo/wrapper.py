"""The step wrapper that runs inside an Argo pod: ``nsbiflow pod-step -- <step contract command>``.

Step keys on the cluster: the wrapper hashes the staged inputs (storing them in the S3 store, which
is a no-op for artifacts an upstream wrapper already stored), computes the step key exactly as the
local executor does, and looks it up in the store's cache. On a hit it materializes the cached outputs
at the output paths (Argo then uploads them as usual) and does not run the step; on a miss it runs the
command, stores the outputs and records the cache entry. Without a reachable store it just runs the step.

Inputs come from the environment the compiler sets: ``NSBIFLOW_STEP_DEFINITION`` (the step definition
as JSON), ``NSBIFLOW_CODE_FILES`` (digests of declared code files), ``NSBIFLOW_STORE`` and the standard
S3 variables (credentials from the pod's Secret references), ``NSBIFLOW_STEP`` and ``NSBIFLOW_RUN_ID``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from nsbiflow.engine.contract import (
    SECRET_NAME,
    Arguments,
    ContractError,
    parse_arguments,
    unescape_argv,
    unescape_templating,
)
from nsbiflow.engine.contract import decode_parameters as contract_decode
from nsbiflow.engine.keys import code_identity, definition_key
from nsbiflow.engine.progress import PROGRESS_ENV, log_line
from nsbiflow.errors import NsbiflowError, StoreError
from nsbiflow.spec.models import StepDefinition
from nsbiflow.store import ArtifactRef, ArtifactStore, CacheEntry, open_store

STATE_DIR = ".nsbiflow"


class WrapperError(NsbiflowError):
    """The wrapper was started wrongly (missing definition, malformed command line)."""


def _log(message: str) -> None:
    print(f"nsbiflow pod-step: {message}", file=sys.stderr, flush=True)


def parse_contract(definition: StepDefinition, argv: Sequence[str]) -> Arguments:
    """Split ``definition.command + --param/--in/--out pairs`` into the contract's ``Arguments``."""
    prefix = list(definition.command)
    if list(argv[: len(prefix)]) != prefix:
        raise WrapperError(f"the command {' '.join(argv[:len(prefix)])!r} does not start with the step's command "
                           f"{' '.join(prefix)!r}")  # fmt: skip
    try:
        return parse_arguments(argv[len(prefix) :])
    except ContractError as exc:
        raise WrapperError(str(exc)) from None


def decode_parameters(definition: StepDefinition, raw: Mapping[str, str]) -> dict[str, Any]:
    """Command-line parameter strings back to typed values (the contract's typed decoder)."""
    try:
        return contract_decode(definition.parameters, raw, where=f"step {definition.name!r}")
    except ContractError as exc:
        raise WrapperError(str(exc)) from None


def step_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The step process's environment: the pod's (escaped values decoded), without the store credentials the
    wrapper holds."""
    hidden = {"NSBIFLOW_STEP_DEFINITION", "NSBIFLOW_CODE_FILES"}
    return {k: unescape_templating(v) for k, v in env.items() if not SECRET_NAME.search(k) and k not in hidden}


def pod_code_identity(definition: StepDefinition, code_files: Mapping[str, str]) -> dict[str, str]:
    """The code identity in the pod: installed ``python:`` packages hashed here, code files from compile time."""
    packages = [entry for entry in definition.code if entry.startswith("python:")]
    identity = code_identity(definition.model_copy(update={"code": packages}), None)
    identity.update(code_files)
    return identity


def _materialize(store: ArtifactStore, ref: ArtifactRef, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    store.fetch(ref, target, quarantine=True)


class ProgressRelay:
    """Copies the step's progress lines (``$NSBIFLOW_PROGRESS``, a file) to the pod log as ``NSBIFLOW-PROGRESS``
    lines, where ``nsbiflow watch`` reads them; the pod's log is the one channel the CLI sees."""

    def __init__(self, path: Path, stream: Any = None, interval: float = 0.5) -> None:
        self.path = path
        self.stream = stream
        self.interval = interval
        self.offset = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressRelay:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._thread = threading.Thread(target=self._loop, name="nsbiflow-progress-relay", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.relay()  # the last lines, always

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.relay()

    def relay(self) -> int:
        """Print the complete lines written since the last call; returns how many records were relayed."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return 0
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        self.offset += end + 1
        relayed = 0
        for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
            line = log_line(raw)
            if line is not None:  # anything else in the file is not a record: dropped, as locally
                print(line, file=self.stream or sys.stdout, flush=True)
                relayed += 1
        return relayed


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    try:
        process = subprocess.Popen(list(argv), env=None if env is None else dict(env))
    except FileNotFoundError:
        _log(f"command not found: {argv[0]!r} (is the step's program installed in the image?)")
        return 127
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class PodStep:
    """One wrapped step execution (built from the environment by ``from_environment``)."""

    definition: StepDefinition
    argv: list[str]
    step_id: str
    run_id: str | None = None
    store_uri: str | None = None
    code_files: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path(STATE_DIR)
    environment: dict[str, str] | None = None

    @classmethod
    def from_environment(cls, argv: Sequence[str], env: Mapping[str, str] | None = None) -> PodStep:
        """The wrapped step described by ``NSBIFLOW_*`` environment variables."""
        env = os.environ if env is None else env
        text = env.get("NSBIFLOW_STEP_DEFINITION")
        if not text:
            raise WrapperError("NSBIFLOW_STEP_DEFINITION is not set: pod-step runs inside pods compiled by "
                               "`nsbiflow compile --target argo`")  # fmt: skip
        try:
            definition = StepDefinition.model_validate_json(unescape_templating(text))
            files = json.loads(unescape_templating(env.get("NSBIFLOW_CODE_FILES") or "{}"))
        except (ValidationError, json.JSONDecodeError, ContractError) as exc:
            raise WrapperError(f"NSBIFLOW_STEP_DEFINITION/NSBIFLOW_CODE_FILES is not valid: "
                               f"{str(exc).splitlines()[0]}") from None  # fmt: skip
        if not argv:
            raise WrapperError("no step command given: use `nsbiflow pod-step -- COMMAND ...`")
        try:
            argv = unescape_argv(argv)
            step_id = unescape_templating(env.get("NSBIFLOW_STEP") or definition.name)
        except ContractError as exc:
            raise WrapperError(str(exc)) from None
        environment = step_environment({**os.environ, **env})
        return cls(definition=definition, argv=list(argv), step_id=step_id, environment=environment,
                   run_id=env.get("NSBIFLOW_RUN_ID"), store_uri=env.get("NSBIFLOW_STORE") or None,
                   code_files=dict(files), state_dir=Path(env.get("NSBIFLOW_STATE_DIR") or STATE_DIR))  # fmt: skip

    def _state(self, key: str, cached: bool) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "step-key").write_text(key)
        (self.state_dir / "cached").write_text("true" if cached else "false")

    def key(self, store: ArtifactStore, contract: Arguments) -> str:
        """The step key: definition, parameters, digests of the staged inputs, code identity."""
        parameters = decode_parameters(self.definition, contract.parameters)
        digests = {name: [store.put(path).digest for path in paths] for name, paths in contract.inputs.items()}
        return definition_key(self.definition, parameters, digests, pod_code_identity(self.definition, self.code_files))

    def run(self) -> int:
        """Skip on a cache hit, else run and record; returns the exit code for the pod."""
        contract = parse_contract(self.definition, self.argv)
        for name, path in contract.outputs.items():
            spec = self.definition.outputs.get(name)
            if spec is None:
                raise WrapperError(f"--out {name}: the step {self.definition.name!r} has no such output")
            (path if spec.kind == "dir" else path.parent).mkdir(parents=True, exist_ok=True)
        store: ArtifactStore | None = None
        key = ""
        if self.store_uri:
            try:
                store = open_store(self.store_uri)
                key = self.key(store, contract)
                hit = store.cache_lookup(key)
                if hit is not None and set(hit.outputs) >= set(contract.outputs):
                    for name, target in contract.outputs.items():
                        _materialize(store, hit.outputs[name], target)
                    self._state(key, cached=True)
                    _log(f"step {self.step_id}: outputs of step key {key[:16]} are in {store.uri}; not re-run")
                    return 0
            except StoreError as exc:
                _log(f"store {self.store_uri} not usable ({exc}); running without the step-key cache")
                store = None
        else:
            _log("NSBIFLOW_STORE is not set; running without the step-key cache")
        started = time.monotonic()
        channel = (self.state_dir / "progress.jsonl").resolve()
        environment = dict(os.environ if self.environment is None else self.environment, **{PROGRESS_ENV: str(channel)})
        with ProgressRelay(channel):
            code = _run(self.argv, environment)
        if code != 0:
            return code
        missing = [n for n, p in contract.outputs.items()
                   if not p.exists() or p.is_dir() != (self.definition.outputs[n].kind == "dir")]  # fmt: skip
        if missing:
            _log(f"step {self.step_id} exited 0 but did not write output(s) {', '.join(missing)}")
            return 1
        if store is not None:
            try:
                refs = {name: store.put(path) for name, path in contract.outputs.items()}
                created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                seconds = round(time.monotonic() - started, 3)
                store.cache_record(CacheEntry(key=key, step=self.step_id, outputs=refs, run_id=self.run_id,
                                              created=created, seconds=seconds))
                self._state(key, cached=False)
            except StoreError as exc:
                _log(f"outputs not recorded in {self.store_uri} ({exc}); the step succeeded anyway")
        return 0


def pod_step_main(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``nsbiflow pod-step``: run one wrapped step, return its exit code."""
    return PodStep.from_environment(argv, env).run()
