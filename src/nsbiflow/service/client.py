"""A small Python client of the fit service (httpx), for ``nsbiflow fit --server`` and for fit steps.

Opt-in hook for steps: ``client_from_env()`` returns a client when ``$NSBIFLOW_FIT_SERVER`` is set (token
from ``$NSBIFLOW_FIT_TOKEN`` or the file ``$NSBIFLOW_FIT_TOKEN_FILE``), else None, so a step can do::

    client = client_from_env()
    if client is not None:
        digest = client.upload(workspace_json)["digest"]
        cls = client.hypotest(digest, poi=1.0)["result"]["cls_obs"]

A 202 answer (the request outlived the server's wait) is followed by polling the job until it finishes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from nsbiflow.errors import NsbiflowError

SERVER_ENV = "NSBIFLOW_FIT_SERVER"
TOKEN_ENV = "NSBIFLOW_FIT_TOKEN"
TOKEN_FILE_ENV = "NSBIFLOW_FIT_TOKEN_FILE"
PATHS = {"fit": "/v1/fit", "hypotest": "/v1/hypotest", "upper-limit": "/v1/upper-limit", "scan": "/v1/scan",
         "batch": "/v1/batch", "analyse": "/v1/analyse"}


class FitServiceError(NsbiflowError):
    """The fit service refused a request or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class FitClient:
    """Talks to one fit service."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 600.0, poll_s: float = 0.2,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.poll_s = poll_s
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> FitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, *, follow: bool = True,
                 content: bytes | None = None) -> Any:
        try:
            if content is not None:
                response = self._http.request(method, path, content=content,
                                              headers={"Content-Type": "application/octet-stream"})
            else:
                response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise FitServiceError(f"fit service at {self.url} unreachable: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text.strip()[:200]
            raise FitServiceError(f"fit service: {response.status_code}: {detail}", response.status_code)
        data = response.json()
        if response.status_code == 202 and follow:
            return self.wait(data["job_id"])
        return data

    def wait(self, job_id: str) -> Any:
        """Poll a job until it finishes; its result (or a ``FitServiceError`` with its error line)."""
        deadline = time.monotonic() + self.timeout
        while True:
            status = self.job(job_id)
            if status["status"] == "done":
                return status["result"]
            if status["status"] == "failed":
                raise FitServiceError(f"fit service: job {job_id} failed: {status['error']}",
                                      int(status.get("error_status") or 0))
            if time.monotonic() > deadline:
                raise FitServiceError(f"fit service: job {job_id} still running after {self.timeout:.0f} s")
            time.sleep(self.poll_s)

    # -- API ---------------------------------------------------------------------------------------
    def health(self) -> Any:
        """``GET /readyz``."""
        return self._request("GET", "/readyz")

    def models(self) -> list[dict[str, Any]]:
        """Registered models."""
        models: list[dict[str, Any]] = self._request("GET", "/v1/models")["models"]
        return models

    def upload(self, document: dict[str, Any], *, kind: str = "pyhf", name: str | None = None) -> dict[str, Any]:
        """Store and register a model document; the entry (``digest`` addresses it from then on)."""
        entry: dict[str, Any] = self._request("POST", "/v1/models", {"kind": kind, "name": name, "document": document})
        return entry

    def info(self, model: str) -> Any:
        """A model's parameters and structure."""
        return self._request("GET", f"/v1/models/{model}")

    def fit(self, model: str, *, patch: list[Any] | None = None, fixed: dict[str, float] | None = None,
            init: dict[str, float] | None = None) -> Any:
        """Best fit."""
        return self._request("POST", "/v1/fit", {"model": model, "patch": patch, "fixed": fixed or {},
                                                 "init": init or {}})

    def hypotest(self, model: str, poi: float = 1.0, *, test_stat: str = "qtilde",
                 patch: list[Any] | None = None) -> Any:
        """CLs at one POI value."""
        return self._request("POST", "/v1/hypotest", {"model": model, "poi": poi, "test_stat": test_stat,
                                                      "patch": patch})

    def upper_limit(self, model: str, *, level: float = 0.05, scan: list[float] | None = None,
                    patch: list[Any] | None = None) -> Any:
        """Observed and expected upper limits."""
        return self._request("POST", "/v1/upper-limit", {"model": model, "level": level, "scan": scan,
                                                         "patch": patch})

    def scan(self, model: str, start: float, stop: float, points: int = 21, *, parameter: str | None = None,
             patch: list[Any] | None = None) -> Any:
        """Profile-likelihood scan."""
        return self._request("POST", "/v1/scan", {"model": model, "start": start, "stop": stop, "points": points,
                                                  "parameter": parameter, "patch": patch})

    def batch(self, model: str, *, patchset: dict[str, Any] | None = None, names: list[str] | None = None,
              patches: list[dict[str, Any]] | None = None, operation: dict[str, Any] | None = None) -> Any:
        """One operation on many patches, in parallel on the server."""
        body: dict[str, Any] = {"model": model, "operation": operation or {"op": "hypotest"}}
        if patchset is not None:
            body["patchset"], body["names"] = patchset, names
        else:
            body["patches"] = patches
        return self._request("POST", "/v1/batch", body)

    def analyse(self, model: str, tasks: list[dict[str, Any]]) -> Any:
        """The ``fit`` step's methods (``physics.model.run.MethodTask`` as dicts) on an NSBI model, in parallel."""
        return self._request("POST", "/v1/analyse", {"model": model, "tasks": tasks})

    def missing_blobs(self, digests: list[str]) -> list[str]:
        """Which of these blobs the server's store lacks."""
        missing: list[str] = self._request("POST", "/v1/blobs/missing", {"digests": digests})["missing"]
        return missing

    def put_blob(self, digest: str, data: bytes) -> Any:
        """Store a blob in the server's store (the server checks that ``data`` hashes to ``digest``)."""
        return self._request("PUT", f"/v1/blobs/{digest}", content=data)

    def call(self, kind: str, body: dict[str, Any]) -> Any:
        """Any request by kind (``fit``, ``hypotest``, ``upper-limit``, ``scan``, ``batch``) with its JSON body."""
        if kind not in PATHS:
            raise FitServiceError(f"unknown request kind {kind!r} (kinds: {', '.join(PATHS)})")
        return self._request("POST", PATHS[kind], body)

    def submit(self, kind: str, request: dict[str, Any]) -> str:
        """Start any request as a background job; its id."""
        job_id: str = self._request("POST", "/v1/jobs", {"kind": kind, "request": request}, follow=False)["job_id"]
        return job_id

    def job(self, job_id: str) -> Any:
        """A job's status."""
        return self._request("GET", f"/v1/jobs/{job_id}", follow=False)


def read_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """A token given directly, from a file, or from ``$NSBIFLOW_FIT_TOKEN`` / ``$NSBIFLOW_FIT_TOKEN_FILE``."""
    if token:
        return token
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise FitServiceError(f"cannot read the token file {path}: {exc.strerror}") from None
    return os.environ.get(TOKEN_ENV) or None


def client_from_env(*, require_token: bool = False) -> FitClient | None:
    """A client of ``$NSBIFLOW_FIT_SERVER`` when it is set (the opt-in hook for fit/limits steps), else None.

    ``require_token``: a server without a token is a one-line error (a step never sends its data unauthenticated
    by mistake).
    """
    url = os.environ.get(SERVER_ENV)
    if not url:
        return None
    token = read_token()
    if require_token and not token:
        raise FitServiceError(f"${SERVER_ENV} is set but no token: set ${TOKEN_ENV} or ${TOKEN_FILE_ENV}")
    return FitClient(url, token)


def shown_url(url: str) -> str:
    """A server URL fit for a log line (any ``user:password@`` removed)."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url
