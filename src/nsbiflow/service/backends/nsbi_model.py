"""The NSBI backend: the project's statistical Model (``kind: Model``) with its per-event ratio tables.

Not available until the physics package provides the Model fit API (``nsbiflow.physics.model``).
"""

from __future__ import annotations

from typing import Any

from nsbiflow.service.backends.base import LoadedModel
from nsbiflow.service.errors import BackendUnavailableError
from nsbiflow.store import ArtifactStore

BUNDLE_FORMAT = "nsbiflow/service-nsbi/v1"


class NsbiBackend:
    """Loads NSBI model bundles (the Model document plus the digests of its ratio tables and events)."""

    kind = "nsbi"

    def available(self) -> str | None:
        """Why the backend cannot be used here, or None."""
        try:
            import nsbiflow.physics.model  # noqa: F401
        except ModuleNotFoundError:
            return "this installation has no NSBI Model fit API (nsbiflow.physics.model)"
        return None

    def detect(self, document: Any) -> bool:
        """An NSBI bundle names its format."""
        return isinstance(document, dict) and document.get("format") == BUNDLE_FORMAT

    def load(self, store: ArtifactStore, document: Any, digest: str) -> LoadedModel:
        """Not implemented yet."""
        raise BackendUnavailableError("NSBI models are not available in this server yet")

    def expand_patchset(self, document: Any, patchset: Any, names: list[str] | None) -> list[tuple[str, list[Any]]]:
        """NSBI models take RFC 6902 ``patches``, not pyhf patchsets."""
        raise BackendUnavailableError("a pyhf patchset applies to pyhf workspaces; send NSBI model patches as patches")
