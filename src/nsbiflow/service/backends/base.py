"""The fit-backend interface: how the service loads one kind of model and evaluates operations on it.

A backend turns a stored model document into a ``LoadedModel`` (the warm object a worker keeps), knows
whether a document is its kind, and expands its batch-patch format. One module per backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nsbiflow.service.errors import ServiceError, first_line
from nsbiflow.service.schemas import (
    AnalyseOptions,
    AnalyseResult,
    FitOptions,
    FitResult,
    HypotestOptions,
    HypotestResult,
    ModelDetails,
    ProfileOptions,
    ProfileResult,
    UpperLimitOptions,
    UpperLimitResult,
)
from nsbiflow.store import ArtifactStore


def apply_patch(document: Any, patch: list[dict[str, Any]], what: str) -> Any:
    """``document`` with an RFC 6902 patch applied (a copy); a one-line error naming ``what`` if it does not apply."""
    import jsonpatch

    try:
        return jsonpatch.apply_patch(document, patch)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ServiceError(f"the patch does not apply to the {what}: {first_line(exc)}") from None


def parameter_index(names: Sequence[str], name: str) -> int:
    """The position of parameter ``name``; a one-line error listing the parameters if there is none."""
    try:
        return list(names).index(name)
    except ValueError:
        raise ServiceError(f"no parameter {name!r} in the model (parameters: {', '.join(names)})") from None


class LoadedModel(Protocol):
    """A model ready to fit (kept warm by the worker that loaded it)."""

    kind: str

    def details(self) -> ModelDetails:
        """Parameters and a short structural summary."""

    def patched(self, patch: list[dict[str, Any]]) -> LoadedModel:
        """A new model with an RFC 6902 patch applied to the model document."""

    def fit(self, options: FitOptions) -> FitResult:
        """Maximum-likelihood fit."""

    def hypotest(self, options: HypotestOptions) -> HypotestResult:
        """Asymptotic CLs at one POI value."""

    def upper_limit(self, options: UpperLimitOptions) -> UpperLimitResult:
        """Observed and expected CLs upper limits."""

    def profile(self, options: ProfileOptions) -> ProfileResult:
        """Profiled ``-2 ln L`` at one parameter value."""

    def analyse(self, options: AnalyseOptions) -> AnalyseResult:
        """One method of the ``fit`` step's analysis (NSBI models)."""


class FitBackend(Protocol):
    """One kind of model."""

    kind: str

    def available(self) -> str | None:
        """None when usable; otherwise the one-line reason it is not (e.g. a missing package)."""

    def detect(self, document: Any) -> bool:
        """Whether a parsed JSON document is a model of this kind."""

    def load(self, store: ArtifactStore, document: Any, digest: str) -> LoadedModel:
        """Build the warm model from its document (further blobs, e.g. ratio tables, come from ``store``)."""

    def expand_patchset(self, document: Any, patchset: Any, names: list[str] | None) -> list[tuple[str, list[Any]]]:
        """A batch's patchset as (name, RFC 6902 operations) pairs, checked against the model document."""
