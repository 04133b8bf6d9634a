"""Fit backends, one module per model kind, found through one registry."""

from __future__ import annotations

from typing import Any

from nsbiflow.service.backends.base import FitBackend, LoadedModel
from nsbiflow.service.errors import BackendUnavailableError, BadModelError

__all__ = ["BACKENDS", "FitBackend", "LoadedModel", "backend", "detect_kind"]


def _registry() -> dict[str, FitBackend]:
    from nsbiflow.service.backends.nsbi_model import NsbiBackend
    from nsbiflow.service.backends.pyhf_workspace import PyhfBackend

    return {"pyhf": PyhfBackend(), "nsbi": NsbiBackend()}


BACKENDS: dict[str, FitBackend] = _registry()


def backend(kind: str) -> FitBackend:
    """The backend of a model kind, or a one-line error saying why it cannot be used."""
    found = BACKENDS.get(kind)
    if found is None:
        raise BadModelError(f"unknown model kind {kind!r} (kinds: {', '.join(BACKENDS)})")
    reason = found.available()
    if reason:
        raise BackendUnavailableError(f"{kind} models are not available in this server: {reason}")
    return found


def detect_kind(document: Any) -> str | None:
    """The kind of a parsed model document, or None."""
    for kind, candidate in BACKENDS.items():
        if candidate.detect(document):
            return kind
    return None
