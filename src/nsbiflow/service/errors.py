"""The service's errors: each one becomes an HTTP status and one line of ``detail``."""

from __future__ import annotations

from nsbiflow.errors import NsbiflowError


class ServiceError(NsbiflowError):
    """A request cannot be served; ``status`` is the HTTP status it maps to."""

    status = 400


class ModelNotFoundError(ServiceError):
    """No model by that reference in the store."""

    status = 404


class BadModelError(ServiceError):
    """A model document is not a model any backend can load (or is too large)."""

    status = 422


class BackendUnavailableError(ServiceError):
    """The backend a model needs is not available in this installation."""

    status = 501


class JobNotFoundError(ServiceError):
    """No job by that id (finished jobs are kept for a while, then forgotten)."""

    status = 404


class WorkerDiedError(ServiceError):
    """A fit worker process died (e.g. out of memory); the pool was replaced: send the request again."""

    status = 503


class TooLargeError(ServiceError):
    """A request body or a model is over the configured limit."""

    status = 413


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def http_status(error: NsbiflowError) -> int:
    """The HTTP status of any nsbiflow error (a store that cannot be reached is 503)."""
    from nsbiflow.errors import ArtifactNotFoundError, StoreUnavailableError

    if isinstance(error, ServiceError):
        return error.status
    if isinstance(error, ArtifactNotFoundError) or type(error).__name__.endswith("NotFoundError"):
        return 404
    if isinstance(error, StoreUnavailableError):
        return 503
    return 400
