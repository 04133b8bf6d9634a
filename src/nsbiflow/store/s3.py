"""Artifact storage in an S3-compatible bucket (MinIO, Ceph, AWS) through the ``minio`` SDK.

The endpoint and credentials come from the standard environment variables, never from a workflow file:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g. ``http://minio.nsbiflow:9000``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN`` and ``AWS_DEFAULT_REGION``/``AWS_REGION``
(``MINIO_ACCESS_KEY``/``MINIO_SECRET_KEY`` are accepted too). S3 objects appear only when an upload
completes (single PUT or multipart), so a killed runner never leaves a half-written object behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.credentials import ChainedProvider, EnvAWSProvider, EnvMinioProvider
from minio.error import MinioException, S3Error

from nsbiflow.errors import ArtifactNotFoundError, StoreError, StoreUnavailableError

T = TypeVar("T")

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "S3_ENDPOINT_URL")


def endpoint_from_environment() -> str:
    """The S3 endpoint URL from the environment (default: AWS)."""
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return "https://s3.amazonaws.com"


class S3Backend:
    """Objects are keys under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, *, endpoint: str | None = None, create_bucket: bool = True) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreError(f"invalid S3 store URI {uri!r}: expected s3://BUCKET[/PREFIX]")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint or endpoint_from_environment()
        url = urlparse(self.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise StoreError(f"invalid S3 endpoint {self.endpoint!r}: expected http(s)://HOST[:PORT]")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=120),
            retries=urllib3.Retry(total=2, connect=2, read=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
        )
        self.client = Minio(
            url.netloc,
            secure=url.scheme == "https",
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
            credentials=ChainedProvider([EnvAWSProvider(), EnvMinioProvider()]),
            http_client=http,
        )
        self._ensure_bucket(create_bucket)

    @contextmanager
    def _errors(self, key: str = "") -> Iterator[None]:
        try:
            yield
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise ArtifactNotFoundError(f"{key} is not in the store {self.uri}") from None
            if exc.code == "NoSuchBucket":
                raise StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}") from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(
                    f"S3 refused access to {self.uri} ({exc.code}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                ) from None
            raise StoreError(f"S3 error on {self.uri}/{key}: {exc.code}: {exc.message}") from None
        except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StoreUnavailableError(
                f"cannot reach the S3 endpoint {self.endpoint} ({type(reason).__name__}); check that it is up "
                "and AWS_ENDPOINT_URL is right, then run again: finished steps are kept"
            ) from None

    def _call(self, fn: Callable[[], T], key: str = "") -> T:
        with self._errors(key):
            return fn()
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure_bucket(self, create: bool) -> None:
        if self._call(lambda: self.client.bucket_exists(self.bucket)):
            return
        if not create:
            raise StoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint}")
        self._call(lambda: self.client.make_bucket(self.bucket))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, source: Path) -> None:
        """Upload a file (multipart for large files) under ``key``."""
        self._call(lambda: self.client.fput_object(self.bucket, self._key(key), str(source)), key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload bytes under ``key``."""
        import io

        self._call(lambda: self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data)), key)

    def get_file(self, key: str, destination: Path) -> None:
        """Download the object to ``destination``."""

        def _download() -> None:
            response = self.client.get_object(self.bucket, self._key(key))
            try:
                with open(destination, "wb") as handle:
                    for chunk in response.stream(1 << 20):
                        handle.write(chunk)
            finally:
                response.close()
                response.release_conn()

        self._call(_download, key)

    def get_bytes(self, key: str) -> bytes:
        """Download the object."""

        def _read() -> bytes:
            response = self.client.get_object(self.bucket, self._key(key))
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call(_read, key)

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        try:
            self._call(lambda: self.client.stat_object(self.bucket, self._key(key)), key)
        except ArtifactNotFoundError:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``."""
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        objects = self._call(lambda: list(self.client.list_objects(self.bucket, prefix=full, recursive=True)))
        return sorted(str(o.object_name)[strip:] for o in objects if o.object_name)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._call(lambda: self.client.remove_object(self.bucket, self._key(key)), key)

    def local_path(self, key: str) -> Path | None:
        """Objects in a bucket have no local path."""
        return None

    def url(self, key: str) -> str:
        """The ``s3://`` URL of a key."""
        return f"s3://{self.bucket}/{self._key(key)}"
