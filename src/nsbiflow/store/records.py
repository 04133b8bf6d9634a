"""Records kept in the store beside the blobs: artifact references, cache entries, run manifests."""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StepStatus = Literal["pending", "running", "succeeded", "cached", "failed", "skipped"]
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactRef(_Record):
    """A stored artifact: one blob (``file``) or a tree manifest blob (``dir``)."""

    kind: Literal["file", "dir"]
    digest: str
    size: int = 0
    filename: str | None = None


class CacheEntry(_Record):
    """``cache/<step-key>.json``: the outputs a step key produced (same key -> same outputs)."""

    key: str
    step: str
    outputs: dict[str, ArtifactRef]
    log: str | None = None
    run_id: str | None = None
    created: str
    seconds: float = 0.0


class StepRecord(_Record):
    """Provenance of one step instance in a run."""

    template: str
    key: str | None = None
    image: str = ""
    command: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, list[str]] = Field(default_factory=dict)
    outputs: dict[str, ArtifactRef] = Field(default_factory=dict)
    status: StepStatus = "pending"
    cached: bool = False
    attempts: int = 0
    started: str | None = None
    finished: str | None = None
    seconds: float = 0.0
    log: str | None = None
    error: str | None = None


class RunManifest(_Record):
    """``runs/<run-id>/manifest.json``: everything needed to know what ran, how and with what."""

    run_id: str
    workflow: dict[str, Any]
    parameters: dict[str, Any]
    status: RunStatus = "running"
    started: str
    finished: str | None = None
    host: str = ""
    pid: int | None = None
    """Process id of the runner on ``host`` (tells a run still in progress from one that was killed)."""
    versions: dict[str, str] = Field(default_factory=dict)
    store: str = ""
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    outputs: dict[str, ArtifactRef | list[ArtifactRef]] = Field(default_factory=dict)
    error: str | None = None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def shown_status(manifest: RunManifest) -> str:
    """The run's status, or ``interrupted`` for one still marked running whose runner on this host is gone
    (killed before it could record an end; running it again resumes from the cache)."""
    if manifest.status != "running" or manifest.pid is None or manifest.host != socket.gethostname():
        return manifest.status
    return manifest.status if pid_alive(manifest.pid) else "interrupted"
