"""Known (analytic) densities of a bundled simulator: the truth that the "exact" method of a fit evaluates.

A statistical model (``kind: Model``) may name a simulator in its ``truth`` section. The fit then evaluates
the *exact* likelihood directly, at every parameter point, from the simulator's own densities (never by
interpolating exact +-1 sigma ratios), next to the NSBI likelihood built from the trained ratio ensembles.
That is what lets every bundled analysis table exact vs NSBI vs histogram.

One registry owns the simulators (like pyhf's modifier registry): a simulator module registers a factory
under its name; ``truth_from_spec`` builds one from the name and a configuration mapping (the parameters
written into the samples' metadata, or the model file's ``truth.config``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError

FloatArray = NDArray[np.float64]


@runtime_checkable
class Truth(Protocol):
    """The exact densities of one simulator.

    ``density`` returns the normalised density ``p(x | process, nuisances)`` of a process at detector-level
    points ``x`` (shape ``(n, len(observables))``, columns in ``observables`` order). A signed process (an
    interference term) returns signed values whose integral is that term's declared share of the yield; every
    other process integrates to 1. ``nuisances`` maps the simulator's own nuisance names to values in units
    of their +-1 sigma variations; a name that is absent is at 0 (nominal).
    """

    name: str

    def observables(self) -> Sequence[str]:
        """The observables, in the column order ``density`` expects."""
        ...

    def processes(self) -> Sequence[str]:
        """The processes whose densities are known."""
        ...

    def nuisances(self) -> Sequence[str]:
        """The simulator's shape nuisance parameters (each in units of its +-1 sigma variation)."""
        ...

    def density(self, process: str, x: FloatArray, nuisances: Mapping[str, float] | None = None) -> FloatArray:
        """``p(x | process, nuisances)`` (signed for an interference term)."""
        ...


TruthFactory = Callable[[Mapping[str, Any]], Truth]

_REGISTRY: dict[str, TruthFactory] = {}
# simulators bundled with nsbiflow, imported on first use (their modules call ``register``)
_BUNDLED: dict[str, str] = {}


def register(name: str, factory: TruthFactory, *, replace: bool = False) -> None:
    """Register the factory of a simulator's truth under ``name``."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"a truth named {name!r} is registered already")
    _REGISTRY[name] = factory


def register_bundled(name: str, module: str) -> None:
    """Declare that importing ``module`` registers the truth ``name`` (lazy, so heavy imports wait)."""
    _BUNDLED[name] = module


def known() -> list[str]:
    """Names of every registered or bundled simulator."""
    return sorted({*_REGISTRY, *_BUNDLED})


def truth_from_spec(name: str, config: Mapping[str, Any] | None = None) -> Truth:
    """The truth of simulator ``name`` with ``config``; a one-line error for an unknown name or bad config."""
    if name not in _REGISTRY and name in _BUNDLED:
        import_module(_BUNDLED[name])
    if name not in _REGISTRY:
        raise StageError(f"truth: unknown simulator {name!r} (known: {', '.join(known()) or 'none'})")
    try:
        return _REGISTRY[name](dict(config or {}))
    except (TypeError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        first = str(error).splitlines()[0]
        raise StageError(f"truth: simulator {name!r}: invalid configuration: {first}") from None


register_bundled("toy", "nsbiflow.physics.toy_truth")
