"""The service's errors: each one becomes an HTTP status and one line of ``detail``."""

from __future__ import annotations

from nsbiflow.errors import NsbiflowError


class ServiceError(NsbiflowError):
    """A request cannot be served; ``status`` is the HTTP status it maps to."""

    status = 400


def _status_error(name: str, status: int, doc: str) -> type[ServiceError]:
    """A ``ServiceError`` subclass for one HTTP status (module-level, so workers pickle it back by name)."""
    return type(name, (ServiceError,), {"status": status, "__doc__": doc, "__module__": __name__})


ModelNotFoundError = _status_error("ModelNotFoundError", 404, "No model by that reference in the store.")
JobNotFoundError = _status_error(
    "JobNotFoundError", 404, "No job by that id (finished jobs are kept for a while, then forgotten)."
)
BadModelError = _status_error(
    "BadModelError", 422, "A model document is not a model any backend can load (or is too large)."
)
TooLargeError = _status_error("TooLargeError", 413, "A request body or a model is over the configured limit.")
BackendUnavailableError = _status_error(
    "BackendUnavailableError", 501, "The backend a model needs is not available in this installation."
)
WorkerDiedError = _status_error(
    "WorkerDiedError", 503, "A fit worker process died (e.g. out of memory); the pool was replaced: send it again."
)


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
