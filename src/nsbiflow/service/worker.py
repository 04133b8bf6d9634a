"""What runs inside a fit worker process: load a model once (kept warm), apply a patch, compute.

Each worker keeps its own least-recently-used cache of loaded models, keyed by (kind, digest). Tasks name
the store by URI and the model by digest, so nothing large travels between processes but the answers.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nsbiflow.errors import NsbiflowError, SpecError
from nsbiflow.service.backends import LoadedModel, backend
from nsbiflow.service.errors import BadModelError, ServiceError, first_line
from nsbiflow.service.registry import read_document
from nsbiflow.service.schemas import (
    AnalyseOptions,
    FitOptions,
    HypotestOptions,
    InfoOptions,
    ProfileOptions,
    Result,
    UpperLimitOptions,
)
from nsbiflow.store import ArtifactStore, open_store

_MODELS: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
_STORES: dict[str, ArtifactStore] = {}
_SETTINGS = {"warm_models": 16}
_STATS = {"loads": 0, "hits": 0}


@dataclass(frozen=True)
class Task:
    """One operation on one (optionally patched) model."""

    store: str
    kind: str
    digest: str
    operation: FitOptions | HypotestOptions | UpperLimitOptions | ProfileOptions | InfoOptions | AnalyseOptions
    patch: tuple[Any, ...] | None = None
    max_model_bytes: int = 64 << 20


def initialize(warm_models: int = 16) -> None:
    """Worker start-up: import the fitting stack once (the pool sets one BLAS thread per worker).

    One tiny workspace is built and tested, so that the lazily imported parts (scipy's optimizers and
    statistics, pyhf's JSON-schema validators) are loaded before the server reports ready, not during the
    first real request this worker gets.
    """
    _SETTINGS["warm_models"] = warm_models
    from nsbiflow.service.backends.pyhf_workspace import WARM_UP_WORKSPACE, PyhfModel
    from nsbiflow.service.schemas import HypotestOptions

    PyhfModel(WARM_UP_WORKSPACE).hypotest(HypotestOptions(poi=1.0))


def ready(pause: float = 0.0) -> int:
    """A no-op that proves the worker is up (``pause`` keeps it busy so a batch of these reaches every worker)."""
    time.sleep(pause)
    return os.getpid()


def stats() -> dict[str, int]:
    """Model loads and cache hits of this worker."""
    return dict(_STATS, pid=os.getpid(), warm=len(_MODELS))


def _store(uri: str) -> ArtifactStore:
    if uri not in _STORES:
        _STORES[uri] = open_store(uri)
    return _STORES[uri]


def model(task: Task) -> LoadedModel:
    """The warm model of a task (loaded from the store on first use)."""
    key = (task.kind, task.digest)
    found = _MODELS.get(key)
    if found is not None:
        _MODELS.move_to_end(key)
        _STATS["hits"] += 1
        return found
    store = _store(task.store)
    loaded = backend(task.kind).load(store, read_document(store, task.digest, task.max_model_bytes), task.digest)
    _STATS["loads"] += 1
    _MODELS[key] = loaded
    while len(_MODELS) > _SETTINGS["warm_models"]:
        _MODELS.popitem(last=False)
    return loaded


# which ``LoadedModel`` method computes each operation (one table, not a chain of isinstance checks)
OPERATIONS: dict[type[Any], str] = {
    FitOptions: "fit", HypotestOptions: "hypotest", UpperLimitOptions: "upper_limit",
    ProfileOptions: "profile", AnalyseOptions: "analyse",
}


def run(task: Task) -> Result:
    """Compute one task; every failure is a one-line ``NsbiflowError`` (pickled back to the server)."""
    try:
        loaded = model(task)
        if task.patch is not None:
            loaded = loaded.patched(list(task.patch))
        operation = task.operation
        if isinstance(operation, InfoOptions):
            return loaded.details()
        method: Callable[[Any], Result] = getattr(loaded, OPERATIONS[type(operation)])
        return method(operation)
    except SpecError as exc:  # its problems do not pickle: one line instead
        raise BadModelError(f"model: {first_line(exc)}") from None
    except NsbiflowError:
        raise
    except Exception as exc:  # a numerical library's own error: still one line, named
        raise ServiceError(f"{task.kind} backend failed: {type(exc).__name__}: {first_line(exc)}") from None
