"""The service's settings: one pydantic model, filled from command-line options and the environment."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

TOKEN_ENV = "NSBIFLOW_SERVICE_TOKEN"
"""Environment variable holding the bearer token itself."""
TOKEN_FILE_ENV = "NSBIFLOW_SERVICE_TOKEN_FILE"
"""Environment variable naming a file that holds the token (a mounted Kubernetes Secret)."""
MIN_TOKEN_LENGTH = 16


class ServiceSettings(BaseModel):
    """How one ``nsbiflow serve`` process runs."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(None, description="store URI (folder or s3://bucket/prefix); default $NSBIFLOW_STORE")
    token_file: str | None = Field(None, description="file holding the bearer token (re-read when it changes)")
    token_env: str = Field(TOKEN_ENV, description="environment variable holding the token when no file is given")
    no_auth: bool = Field(False, description="serve without a token (only allowed on a loopback address)")
    workers: int = Field(2, ge=0, le=256, description="fit worker processes (0: one thread in the server process)")
    max_request_bytes: int = Field(8 << 20, ge=1024, description="largest request body accepted (413 above)")
    max_model_bytes: int = Field(64 << 20, ge=1024, description="largest model document loaded or uploaded")
    max_blob_bytes: int = Field(512 << 20, ge=1024, description="largest blob uploaded (PUT /v1/blobs/...)")
    max_batch: int = Field(10_000, ge=1, description="most patches or scan points in one request")
    sync_wait_s: float = Field(30.0, ge=0, description="how long a plain request waits before answering 202 + job id")
    job_ttl_s: float = Field(3600.0, gt=0, description="how long finished jobs are kept in memory")
    warm_models: int = Field(16, ge=1, description="models kept loaded per process (least recently used go first)")
    preload: list[str] = Field(default_factory=list, description="model references loaded at start-up")

    def token_source(self) -> str:
        """Where the token comes from, for messages (never the token itself)."""
        return f"file {self.token_file}" if self.token_file else f"${self.token_env}"


def default_token_file() -> str | None:
    """``$NSBIFLOW_SERVICE_TOKEN_FILE`` when set."""
    return os.environ.get(TOKEN_FILE_ENV) or None
