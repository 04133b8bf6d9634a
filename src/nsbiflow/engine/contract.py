"""The step contract: the one owner of how a step is invoked, on every backend and in the stage programs.

A step is a command that gets ``--param NAME=VALUE``, ``--in NAME=PATH`` (repeated for a ``multiple``
input) and ``--out NAME=PATH`` arguments, writes each output at its path, and runs in a declared
environment. This module owns every part of that:

- **parameters**: ``encode_parameter`` (plain strings as they are, everything else as JSON) and its
  typed inverse ``decode_parameter`` / ``decode_parameters`` (the declared type decides how the text
  is read, so ``"3"`` stays a string for a ``str`` parameter and becomes ``3`` for an ``int``);
- **the command line**: ``arguments`` (the ordered ``(flag, name, value)`` triples, which a backend that
  must quote for a shell renders itself) and ``command_line``; ``parse_arguments`` splits one back;
- **paths**: ``input_path`` and ``output_path`` (``in/NAME[/INDEX]/FILE``, ``out/NAME[/FILE]`` under the
  work directory), identical locally, in an Argo pod and in a yadage stage;
- **the environment**: ``THREAD_VARIABLES``, ``contract_environment`` (what every backend sets),
  ``inherited_environment`` (the small allowlist a local step gets from the runner) and secret
  redaction (``secret_values``/``redact``) for stored logs;
- **templating escapes**: ``escape_templating``/``unescape_templating`` keep values that contain ``{{``
  away from Argo's own template engine.

Backends and ``nsbiflow.stepcli`` import from here; this module imports only ``spec`` and ``errors``.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, TypeVar

from nsbiflow.errors import NsbiflowError
from nsbiflow.spec.models import IOSpec, ParameterSpec, ParamType, coerce_value

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NSBIFLOW_NUM_THREADS")
"""Thread caps every step gets, set from its cpu request."""

FLAGS = ("--param", "--in", "--out")

INHERITED_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "TERM",
    "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "NSBIFLOW_DEVICE", "NSBIFLOW_DEBUG", "NSBIFLOW_PROGRESS",
    "NSBIFLOW_FIT_SERVER", "NSBIFLOW_FIT_TOKEN", "NSBIFLOW_FIT_TOKEN_FILE",
)  # fmt: skip
"""What a local step inherits from the runner's environment (plus ``LC_*``); nothing else reaches it. The fit
service's variables reach the ``fit`` step (docs/service.md); the token's value is redacted from stored logs
(``SECRET_NAME``) and is never part of a step key or a manifest."""

SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY|AUTH)", re.I)
"""Environment variable names whose values are redacted from stored logs (``AWS_SECRET_ACCESS_KEY``,
``ARGO_TOKEN``, ``MINIO_ROOT_PASSWORD``, ...)."""

REDACTED = "***"

ESCAPE_PREFIX = "nsbiflow-b64:"
"""Marks a value that was base64-encoded so that a template engine (Argo's ``{{...}}``) never sees it."""

T = TypeVar("T")


class ContractError(NsbiflowError):
    """A step command line or parameter value that does not follow the contract."""


# -- parameters ---------------------------------------------------------------------------------------
def encode_parameter(value: Any) -> str:
    """A parameter value on the command line: plain strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def decode_parameter(type_: ParamType, text: str) -> Any:
    """The inverse of ``encode_parameter`` for a parameter of declared type ``type_`` (``ValueError``)."""
    return coerce_value(type_, text)


def decode_parameters(specs: Mapping[str, ParameterSpec], raw: Mapping[str, str], *, where: str) -> dict[str, Any]:
    """Command-line parameter strings back to typed values; ``ContractError`` names ``where`` and the value."""
    values: dict[str, Any] = {}
    for name, text in raw.items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            raise ContractError(f"{where}: unknown parameter {name!r} (known: {known})")
        try:
            values[name] = decode_parameter(spec.type, text)
        except ValueError as exc:
            raise ContractError(f"{where}: --param {name}={text}: {exc}") from None
    return values


# -- the command line ---------------------------------------------------------------------------------
def arguments(
    parameters: Mapping[str, T], inputs: Mapping[str, Sequence[T]], outputs: Mapping[str, T]
) -> list[tuple[str, str, T]]:
    """The contract arguments in order, as ``(flag, name, value)``: parameters, inputs, outputs.

    Values are whatever the backend needs (encoded strings, paths, template placeholders).
    """
    result: list[tuple[str, str, T]] = [("--param", name, value) for name, value in parameters.items()]
    result += [("--in", name, value) for name, values in inputs.items() for value in values]
    result += [("--out", name, value) for name, value in outputs.items()]
    return result


def command_line(
    command: Sequence[str],
    parameters: Mapping[str, Any],
    inputs: Mapping[str, Sequence[str | PurePath]],
    outputs: Mapping[str, str | PurePath],
    *,
    encoded: bool = False,
) -> list[str]:
    """``command`` followed by the contract arguments (``encoded``: parameter values are strings already)."""
    values = dict(parameters) if encoded else {k: encode_parameter(v) for k, v in parameters.items()}
    line = list(command)
    for flag, name, value in arguments(values, inputs, outputs):
        line += [flag, f"{name}={value}"]
    return line


@dataclass
class Arguments:
    """A parsed contract command line: raw parameter strings, input paths, output paths."""

    parameters: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list[Path]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


def split_assignment(flag: str, item: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> (name, value); ``ContractError`` when there is no name or no ``=``."""
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ContractError(f"{flag} {item!r}: expected NAME=VALUE")
    return name, value


def parse_arguments(argv: Sequence[str]) -> Arguments:
    """Parse ``--param/--in/--out NAME=VALUE`` pairs (the part after the step's command)."""
    rest = list(argv)
    if len(rest) % 2:
        raise ContractError(f"malformed step arguments: {' '.join(rest)!r}")
    parsed = Arguments()
    for flag, item in zip(rest[::2], rest[1::2], strict=True):
        if flag not in FLAGS:
            raise ContractError(f"unknown step argument {flag!r} (expected --param, --in or --out)")
        name, value = split_assignment(flag, item)
        if flag == "--param":
            parsed.parameters[name] = value
        elif flag == "--in":
            parsed.inputs.setdefault(name, []).append(Path(value))
        else:
            parsed.outputs[name] = Path(value)
    return parsed


# -- paths ----------------------------------------------------------------------------------------------
P = TypeVar("P", bound=PurePath)


def output_path(workdir: P, name: str, spec: IOSpec) -> P:
    """Where a step writes an output: ``out/NAME/`` for a directory, ``out/NAME/FILENAME`` for a file."""
    folder = workdir / "out" / name
    return folder if spec.kind == "dir" else folder / (spec.filename or name)


def output_location(name: str, spec: IOSpec) -> str:
    """``output_path`` relative to the work directory, as a POSIX string (for yadage and Argo)."""
    return output_path(PurePosixPath(), name, spec).as_posix()


def input_path(workdir: P, name: str, spec: IOSpec, index: int, filename: str) -> P:
    """Where input ``name`` (its ``index``-th path if ``multiple``) is staged: ``in/NAME[/INDEX][/FILE]``."""
    folder = workdir / "in" / name / (str(index) if spec.multiple else "")
    return folder if spec.kind == "dir" else folder / filename


# -- the environment ------------------------------------------------------------------------------------
def contract_environment(
    *, cpu_cores: float, gpu: int, step_id: str, run_id: str, declared: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What every backend sets for a step: thread caps, identity, unbuffered output, no GPU unless asked,
    then the literal variables the step definition declares (``env:``)."""
    threads = str(max(1, int(cpu_cores)))
    env = {var: threads for var in THREAD_VARIABLES}
    env.update({"PYTHONUNBUFFERED": "1", "NSBIFLOW_RUN_ID": run_id, "NSBIFLOW_STEP": step_id})
    if gpu == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(declared or {})
    return env


def inherited_environment(environ: Mapping[str, str], passthrough: Iterable[str] = ()) -> dict[str, str]:
    """The part of the runner's environment a local step may see: the allowlist, ``LC_*``, and the names a
    step definition asks to pass through (``env: {NAME: null}``)."""
    wanted = set(INHERITED_VARIABLES) | set(passthrough)
    return {k: v for k, v in environ.items() if k in wanted or k.startswith("LC_")}


def step_variables(env: Mapping[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """A step definition's ``env:`` split into literal values and names passed through from the runner."""
    literal = {k: v for k, v in env.items() if v is not None}
    return literal, [k for k, v in env.items() if v is None]


def secret_values(environ: Mapping[str, str], *, minimum: int = 4) -> list[str]:
    """Values of secret-looking variables (longest first, so a secret that contains another is hidden whole)."""
    values = {v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= minimum}
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def redact_file(path: Path, secrets: Sequence[str]) -> None:
    """Redact secret values in a log file in place (before it is stored)."""
    if not secrets:
        return
    data = path.read_bytes()
    cleaned = data
    for secret in secrets:
        cleaned = cleaned.replace(secret.encode(), REDACTED.encode())
    if cleaned != data:
        tmp = path.with_name(path.name + ".redacted")
        tmp.write_bytes(cleaned)
        os.replace(tmp, path)


# -- templating escapes ---------------------------------------------------------------------------------
def needs_escape(text: str) -> bool:
    """Whether a template engine that expands ``{{...}}`` would touch ``text`` (or it looks escaped)."""
    return "{{" in text or text.startswith(ESCAPE_PREFIX)


def escape_templating(text: str) -> str:
    """``text`` as-is, or base64 behind ``ESCAPE_PREFIX`` when it holds ``{{`` (Argo has no escape)."""
    if not needs_escape(text):
        return text
    return ESCAPE_PREFIX + base64.urlsafe_b64encode(text.encode()).decode()


def unescape_templating(text: str) -> str:
    """The inverse of ``escape_templating`` (``ContractError`` on a malformed escaped value)."""
    if not text.startswith(ESCAPE_PREFIX):
        return text
    try:  # the URL-safe alphabet, or the standard one (Helm's b64enc)
        encoded = text.removeprefix(ESCAPE_PREFIX).translate(str.maketrans("+/", "-_"))
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise ContractError(f"malformed escaped value {text[:40]!r}") from None


def unescape_argv(argv: Sequence[str]) -> list[str]:
    """A command line with every escaped argument (or ``NAME=`` value of a contract argument) decoded."""
    result = []
    for item in argv:
        name, sep, value = item.partition("=")
        if sep and value.startswith(ESCAPE_PREFIX) and not item.startswith(ESCAPE_PREFIX):
            result.append(f"{name}={unescape_templating(value)}")
        else:
            result.append(unescape_templating(item))
    return result
