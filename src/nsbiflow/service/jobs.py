"""Jobs: every request runs as one; a plain request waits for it, a long one answers with its id.

A job counts its finished parts (patches of a batch, points of a scan) for progress. A job that somebody
may poll (submitted to ``/v1/jobs``, or answered with 202 because it outlived the wait) is written to the
store when it finishes (``service/jobs/<id>.json``), so a poll after a server restart still finds it; a
request answered in full needs no record (nobody holds its id), so it costs no store write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from nsbiflow.errors import NsbiflowError, StoreError
from nsbiflow.service.errors import JobNotFoundError, http_status
from nsbiflow.service.schemas import JobStatus
from nsbiflow.store import ArtifactStore

JOBS_PREFIX = "service/jobs/"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Job:
    """One running or finished request."""

    def __init__(self, kind: str, total: int) -> None:
        self.id = secrets.token_hex(16)
        self.kind = kind
        self.total = total
        self.done = 0
        self.status = "queued"
        self.created = _now()
        self.finished: str | None = None
        self.result: BaseModel | None = None
        self.error: NsbiflowError | None = None
        self.finished_at = 0.0
        self.event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.detached = False
        """Whether its id was handed out (then its finished status is written to the store)."""

    def advance(self, parts: int = 1) -> None:
        """Count finished parts."""
        self.done += parts

    def status_model(self) -> JobStatus:
        """The pollable view."""
        return JobStatus(
            id=self.id, kind=self.kind, status=self.status, done=self.done, total=self.total,
            created=self.created, finished=self.finished,
            result=self.result.model_dump(mode="json") if self.result is not None else None,
            error=str(self.error) if self.error is not None else None,
            error_status=None if self.error is None else http_status(self.error),
        )


class JobManager:
    """Starts, tracks and forgets jobs."""

    def __init__(self, store: ArtifactStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._jobs: dict[str, Job] = {}

    def start(self, kind: str, total: int, work: Callable[[Job], Awaitable[BaseModel]], *,
              detached: bool = False) -> Job:
        """Run ``work(job)`` in the background (``detached``: its id is handed out at once)."""
        self._expire()
        job = Job(kind, total)
        job.detached = detached
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job, work))
        return job

    async def detach(self, job: Job) -> None:
        """The job's id is being handed out (a 202): record it in the store once it finishes."""
        job.detached = True
        if job.event.is_set():  # it finished between the wait's timeout and now
            await self._persist(job)

    async def _persist(self, job: Job) -> None:
        # on a store error the answer is still in memory; only a poll after a restart would miss it
        with contextlib.suppress(StoreError):
            await asyncio.to_thread(self.store.write_json, self.key(job.id), job.status_model().model_dump(mode="json"))

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[BaseModel]]) -> None:
        job.status = "running"
        try:
            job.result = await work(job)
            job.status = "done"
        except NsbiflowError as exc:
            job.error, job.status = exc, "failed"
        except Exception as exc:  # a bug: still one line for the client
            job.error = NsbiflowError(f"internal error: {type(exc).__name__}: {exc} (please report it)")
            job.status = "failed"
        job.finished, job.finished_at = _now(), time.monotonic()
        if job.detached:
            await self._persist(job)
        job.event.set()

    @staticmethod
    def key(job_id: str) -> str:
        """Store key of a finished job (``job_id`` is checked to be 32 hex digits by the route)."""
        return f"{JOBS_PREFIX}{job_id}.json"

    async def wait(self, job: Job, timeout: float) -> bool:
        """Whether the job finished within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(job.event.wait()), timeout)
        except TimeoutError:
            return False
        return True

    def status(self, job_id: str) -> JobStatus:
        """A job's status, from memory or (finished before a restart) from the store."""
        job = self._jobs.get(job_id)
        if job is not None:
            return job.status_model()
        try:
            data: Any = self.store.read_json(self.key(job_id))
            return JobStatus.model_validate(data)
        except (StoreError, ValueError):
            raise JobNotFoundError(f"no job {job_id}: it never existed or was finished too long ago") from None

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl_s
        for job_id in [j.id for j in self._jobs.values() if j.finished and j.finished_at < cutoff]:
            del self._jobs[job_id]

    def cancel_all(self) -> None:
        """Cancel unfinished jobs (server shutdown)."""
        for job in self._jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
