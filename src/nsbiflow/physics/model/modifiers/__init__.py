"""Modifiers of a process's expected yield or shape, one kind per module, found through a registry (pyhf style).

A modifier is built into a *term* once per process (``build(spec, context)``); the likelihood then calls it at
every parameter point. Three kinds of term exist:

- ``YieldTerm.factor(theta)``: a factor of the process's yield (normfactor, normsys, lumi), any region;
- ``EventTerm.prepare(table)`` then ``log_factor(prepared, theta)``: a per-event factor ``g(x, theta)`` of an
  unbinned process's density (shapesys, mcstat); the likelihood normalises it over the process's sample.
  A term that also has ``log_factor_jet`` (an ``EventJet``: value and exact first/second derivatives on a slice
  of the events) lets the fits use the likelihood's exact Hessian (``jets``); the bundled ones all do;
- ``BinTerm.shift(theta)``: an additive per-bin shift of a binned process's template (histosys).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.model.data import Table


@dataclass
class Context:
    """What a modifier needs to build its term."""

    region: str
    process: str
    index: Mapping[str, int]
    ratio: str | None = None  # unbinned: the process's ratio label
    nominal: NDArray[np.float64] | None = None  # binned: the nominal template
    template: Callable[[str], NDArray[np.float64]] | None = None  # binned: a sample's template, like the nominal's


@runtime_checkable
class YieldTerm(Protocol):
    """A factor of the yield."""

    def factor(self, theta: torch.Tensor) -> torch.Tensor:
        """The factor at the parameter vector ``theta``."""
        ...


@runtime_checkable
class EventTerm(Protocol):
    """A per-event factor of an unbinned process's density."""

    parameter: str

    def prepare(self, table: Table) -> Any:
        """Per-event inputs read from ``table`` (once per table)."""
        ...

    def log_factor(self, prepared: Any, theta: torch.Tensor) -> torch.Tensor:
        """``log g(x_i, theta)`` per event."""
        ...


@dataclass
class EventJet:
    """``log g(x_i, theta)`` on some events with its derivatives in the parameters ``indices`` (rows).

    ``g`` is a product of factors each depending on one parameter, so the second derivatives are diagonal:
    ``second[s, i] = d^2 log g / d theta_s^2`` (``None``: zero).
    """

    value: torch.Tensor  # (m,)
    indices: list[int]  # positions in theta of the rows
    first: torch.Tensor  # (S, m)
    second: torch.Tensor | None  # (S, m)


@runtime_checkable
class BinTerm(Protocol):
    """An additive shift of a binned template."""

    def shift(self, theta: torch.Tensor) -> torch.Tensor:
        """The per-bin shift at ``theta``."""
        ...


Builder = Callable[[Any, Context], YieldTerm | EventTerm | BinTerm]
_REGISTRY: dict[str, Builder] = {}
_BUNDLED = ("normfactor", "normsys", "lumi", "shapesys", "histosys", "mcstat")


def register(kind: str, builder: Builder) -> None:
    """Register the builder of modifier ``kind``."""
    _REGISTRY[kind] = builder


def _load() -> None:
    if not _REGISTRY:
        for name in _BUNDLED:
            import_module(f"nsbiflow.physics.model.modifiers.{name}")


def build(spec: Any, context: Context) -> YieldTerm | EventTerm | BinTerm:
    """The term of one modifier spec."""
    _load()
    return _REGISTRY[spec.type](spec, context)


def group(terms: list[Any]) -> list[Any]:
    """Merge the terms of one process that a modifier module can evaluate together (its ``group`` function).

    Same result as evaluating them one by one; fewer, larger tensor operations.
    """
    _load()
    for name in _BUNDLED:
        merge = getattr(import_module(f"nsbiflow.physics.model.modifiers.{name}"), "group", None)
        if merge is not None:
            terms = merge(terms)
    return terms
