"""The stage programs' side of the step contract (``nsbiflow.engine.contract``), with one-line errors.

Every subcommand is a function of a ``StageIO``; ``stage`` wraps it into a click command that parses the
``--param/--in/--out`` arguments, decodes parameters with the contract's typed decoder and checks them
against the stage's pydantic config (unknown or mistyped ones are an error), checks that every declared
output was written, and turns any failure into exactly one line on stderr and a non-zero exit status
(``NSBIFLOW_DEBUG=1`` prints the traceback as well). ``stage(..., config=Model)`` registers the config:
it is the one declaration of the stage's parameters (``steps/<name>/step.yaml`` is generated from it,
see ``nsbiflow.stepcli.parameters``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import click
from pydantic import BaseModel, ValidationError

from nsbiflow.engine.contract import ContractError, decode_parameters, split_assignment
from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.parameters import parameter_specs

ModelT = TypeVar("ModelT", bound=BaseModel)

STAGE_CONFIGS: dict[str, type[BaseModel] | None] = {}
"""Stage name -> its registered parameter config (``None``: the stage takes no parameters)."""


def _split(option: str, item: str) -> tuple[str, str]:
    try:
        return split_assignment(option, item)
    except ContractError as exc:
        raise StageError(str(exc)) from None


@dataclass
class StageIO:
    """Parsed arguments of one stage invocation."""

    stage: str
    params: dict[str, str] = field(default_factory=dict)
    """Raw ``--param`` strings; ``config`` decodes them by the config's declared types."""
    inputs: dict[str, list[Path]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def config(self, model: type[ModelT]) -> ModelT:
        """Validate the parameters against ``model`` (one line per error, naming the parameter)."""
        known = set(model.model_fields)
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise StageError(f"{self.stage}: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
        try:
            values = decode_parameters(parameter_specs(model), self.params, where=self.stage)
        except ContractError as exc:
            raise StageError(str(exc)) from None
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise StageError(f"{self.stage}: parameter {where!r}: {err['msg']} (got {err.get('input')!r})") from None

    def input(self, name: str) -> Path:
        """The single path bound to input ``name``."""
        paths = self.inputs.get(name)
        if not paths:
            raise StageError(f"{self.stage}: input '{name}' is required; pass --in {name}=PATH")
        if len(paths) > 1:
            raise StageError(f"{self.stage}: input '{name}' takes one path, got {len(paths)}")
        return paths[0]

    def optional_input(self, name: str) -> Path | None:
        """The path bound to ``name``, or None."""
        return self.input(name) if self.inputs.get(name) else None

    def input_list(self, name: str, required: bool = True) -> list[Path]:
        """All paths bound to a ``multiple: true`` input, in the given order."""
        paths = self.inputs.get(name, [])
        if required and not paths:
            raise StageError(f"{self.stage}: input '{name}' is required; pass --in {name}=PATH (repeatable)")
        return paths

    def output(self, name: str) -> Path:
        """The path of output ``name``."""
        if name not in self.outputs:
            raise StageError(f"{self.stage}: output '{name}' is required; pass --out {name}=PATH")
        return self.outputs[name]


def configure_threads() -> None:
    """Honour ``OMP_NUM_THREADS`` (set by the engine from the step's cpu request) in torch, if it is loaded.

    Stages that evaluate with numpy never import torch for this (numpy's BLAS reads the variable itself).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
        with contextlib.suppress(RuntimeError):  # already set once in this process
            torch.set_num_interop_threads(1)


def stage(
    name: str, outputs: tuple[str, ...] = (), config: type[BaseModel] | None = None
) -> Callable[[Callable[[StageIO], None]], click.Command]:
    """Make a click command of a stage function; ``outputs`` are the declared outputs it must write, ``config``
    the pydantic model of its parameters (registered: the step.yaml's ``parameters:`` are generated from it)."""
    STAGE_CONFIGS[name] = config

    def decorate(fn: Callable[[StageIO], None]) -> click.Command:
        @click.command(name=name, help=fn.__doc__, context_settings={"show_default": True})
        @click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="parameter (JSON value)")
        @click.option("--in", "inputs", multiple=True, metavar="NAME=PATH", help="input path (repeatable)")
        @click.option("--out", "outs", multiple=True, metavar="NAME=PATH", help="output path")
        @functools.wraps(fn)
        def command(params: tuple[str, ...], inputs: tuple[str, ...], outs: tuple[str, ...]) -> None:
            try:
                io = StageIO(stage=name)
                for item in params:
                    key, value = _split("--param", item)
                    io.params[key] = value
                for item in inputs:
                    key, value = _split("--in", item)
                    io.inputs.setdefault(key, []).append(Path(value))
                for item in outs:
                    key, value = _split("--out", item)
                    io.outputs[key] = Path(value)
                for key, paths in io.inputs.items():
                    for path in paths:
                        if not path.exists():
                            raise StageError(f"{name}: input '{key}' path {path} does not exist")
                fn(io)
                for out in outputs:
                    path = io.output(out)
                    if not path.exists():
                        raise StageError(f"{name}: output '{out}' was not written to {path}")
            except StageError as exc:
                _fail(str(exc))
            except KeyboardInterrupt:
                _fail(f"{name}: interrupted")
            except MemoryError:
                _fail(f"{name}: out of memory; lower batch_size or raise the step's memory request")
            except Exception as exc:  # one line, never a traceback (NSBIFLOW_DEBUG=1 shows it)
                if os.environ.get("NSBIFLOW_DEBUG"):
                    traceback.print_exc()
                _fail(f"{name}: unexpected {type(exc).__name__}: {exc}; rerun with NSBIFLOW_DEBUG=1 for details")

        return command

    return decorate


def _fail(message: str) -> None:
    message = " ".join(message.split())
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
