"""Artifact storage in an S3-compatible bucket (MinIO, Ceph, AWS) through the ``minio`` SDK.

The endpoint and credentials come from the standard environment variables, never from a workflow file:
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (e.g. ``http://minio.nsbiflow:9000``), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN`` and ``AWS_DEFAULT_REGION``/``AWS_REGION``
(``MINIO_ACCESS_KEY``/``MINIO_SECRET_KEY`` are accepted too). S3 objects appear only when an upload
completes (single PUT or multipart), so a killed runner never leaves a half-written object behind; the
parts of a multipart upload it abandoned are aborted by the next run (or ``nsbiflow gc``) once stale.

Failure modes are bounded and named: every HTTP request has a deadline (``$NSBIFLOW_S3_TIMEOUT`` seconds,
default 60, for connecting and for each read; two retries), so a frozen endpoint fails an operation within
about three deadlines; a missing bucket is refused unless creating it is asked for
(``$NSBIFLOW_CREATE_BUCKET=1``, or ``create_bucket=True``); missing credentials, an invalid bucket name and
an endpoint URL with a path are one-line errors before any request.
"""

from __future__ import annotations

import builtins
import datetime as dt
import os
import re
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
TIMEOUT_ENV = "NSBIFLOW_S3_TIMEOUT"
CREATE_BUCKET_ENV = "NSBIFLOW_CREATE_BUCKET"
DEFAULT_TIMEOUT = 60.0
STALE_UPLOAD_SECONDS = 3600.0
"""A multipart upload started longer ago than this, and never completed, is abandoned."""

# S3 bucket naming rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name, or ``None``."""
    if not _BUCKET.match(bucket) or _IPV4.match(bucket) or any(x in bucket for x in ("..", ".-", "-.")):
        return (
            f"invalid S3 bucket name {bucket!r}: 3-63 lower-case letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def request_timeout() -> float:
    """Seconds allowed to connect and for each read of one request (``$NSBIFLOW_S3_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise StoreError(f"${TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise StoreError(f"${TIMEOUT_ENV}={text!r} must be between 0 and 3600 seconds")
    return value


def _has_credentials() -> bool:
    aws = os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")
    minio = os.environ.get("MINIO_ACCESS_KEY") and os.environ.get("MINIO_SECRET_KEY")
    return bool(aws or minio)


def endpoint_from_environment() -> str:
    """The S3 endpoint URL from the environment (default: AWS)."""
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return "https://s3.amazonaws.com"


class S3Backend:
    """Objects are keys under ``s3://bucket/prefix``."""

    def __init__(self, uri: str, *, endpoint: str | None = None, create_bucket: bool | None = None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
            raise StoreError(f"invalid S3 store URI {uri!r}: expected s3://BUCKET[/PREFIX]")
        self.bucket = parsed.netloc
        problem = bucket_problem(self.bucket)
        if problem is not None:
            raise StoreError(problem)
        self.prefix = parsed.path.strip("/")
        if any(part in (".", "..") for part in self.prefix.split("/")):
            raise StoreError(f"invalid S3 store URI {uri!r}: the prefix must not contain '.' or '..' parts")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint or endpoint_from_environment()
        url = urlparse(self.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise StoreError(f"invalid S3 endpoint {self.endpoint!r}: expected http(s)://HOST[:PORT]")
        if url.path.strip("/") or url.query or url.fragment:
            raise StoreError(
                f"invalid S3 endpoint {self.endpoint!r}: it must not have a path; give http(s)://HOST[:PORT] "
                "and put the bucket and prefix in the store URI (s3://BUCKET/PREFIX)"
            )
        if not _has_credentials():
            raise StoreError(
                f"no S3 credentials for {self.uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or MINIO_ACCESS_KEY and MINIO_SECRET_KEY)"
            )
        timeout = request_timeout()
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout),
            retries=urllib3.Retry(
                total=2, connect=2, read=1, backoff_factor=0.2, backoff_max=2, status_forcelist=[502, 503, 504]
            ),
        )
        self.client = Minio(
            url.netloc,
            secure=url.scheme == "https",
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
            credentials=ChainedProvider([EnvAWSProvider(), EnvMinioProvider()]),
            http_client=http,
        )
        if create_bucket is None:
            create_bucket = os.environ.get(CREATE_BUCKET_ENV, "") == "1"
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
        except ValueError as exc:  # the SDK's own argument checks
            raise StoreError(f"S3 request for {self.uri}/{key} refused by the client: {exc}") from None
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
            raise StoreError(
                f"bucket {self.bucket!r} does not exist at {self.endpoint}: check the name, or create it "
                f"(set {CREATE_BUCKET_ENV}=1 to let nsbiflow create it)"
            )
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

    def modified(self, key: str) -> float | None:
        """When the object was last written (POSIX seconds), or ``None`` if unknown."""
        info = self._call(lambda: self.client.stat_object(self.bucket, self._key(key)), key)
        return info.last_modified.timestamp() if info.last_modified else None

    def stale_temporaries(self, *, older_than: float = STALE_UPLOAD_SECONDS) -> builtins.list[str]:
        """Multipart uploads under the prefix started more than ``older_than`` s ago and never completed."""
        now = dt.datetime.now(dt.UTC)
        prefix = f"{self.prefix}/" if self.prefix else ""
        # minio's public API has no listing of uploads; its ListMultipartUploads call is used as is
        result = self._call(lambda: self.client._list_multipart_uploads(self.bucket, prefix=prefix))
        stale = []
        for upload in result.uploads:
            started = upload.initiated_time
            if started is None or (now - started).total_seconds() >= older_than:
                stale.append(f"{upload.object_name}?uploadId={upload.upload_id}")
        return sorted(stale)

    def clean_temporaries(self, *, older_than: float = STALE_UPLOAD_SECONDS) -> builtins.list[str]:
        """Abort abandoned multipart uploads (see ``stale_temporaries``); returns them."""
        removed = self.stale_temporaries(older_than=older_than)
        for item in removed:
            name, _, upload_id = item.partition("?uploadId=")

            def _abort(name: str = name, upload_id: str = upload_id) -> None:
                self.client._abort_multipart_upload(self.bucket, name, upload_id)

            self._call(_abort, name)
        return removed

    def url(self, key: str) -> str:
        """The ``s3://`` URL of a key."""
        return f"s3://{self.bucket}/{self._key(key)}"
