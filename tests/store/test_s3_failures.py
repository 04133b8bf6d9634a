"""S3 failure modes: a frozen endpoint, a missing bucket, no credentials, bad names and URLs, abandoned uploads."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from nsbiflow.errors import StoreError, StoreUnavailableError
from nsbiflow.store import open_store
from tests.conftest import S3Endpoint, run_cli


@contextlib.contextmanager
def frozen_endpoint() -> Iterator[str]:
    """A loopback server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_frozen_endpoint_fails_within_the_deadline(s3_endpoint: S3Endpoint) -> None:
    with frozen_endpoint() as url:
        env = {**s3_endpoint.env, "AWS_ENDPOINT_URL": url, "NSBIFLOW_S3_TIMEOUT": "1"}
        started = time.monotonic()
        result = run_cli("runs", "--store", "s3://frozen/x", env=env, timeout=120)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result
    assert elapsed < 30, elapsed
    assert "cannot reach the S3 endpoint" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_bucket_is_refused_unless_asked_to_create(
    s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NSBIFLOW_CREATE_BUCKET")
    with pytest.raises(StoreError, match="does not exist"):
        open_store("s3://misspelt-bucket/x")
    env = {**s3_endpoint.env, "NSBIFLOW_CREATE_BUCKET": "0"}
    result = run_cli("runs", "--store", "s3://misspelt-bucket/x", env=env)
    assert result.returncode == 1 and "NSBIFLOW_CREATE_BUCKET=1" in result.stderr
    from minio import Minio

    client = Minio(s3_endpoint.url.removeprefix("http://"), "testing-key-id", "testing-secret-key", secure=False)
    assert not client.bucket_exists("misspelt-bucket")  # nothing was created
    monkeypatch.setenv("NSBIFLOW_CREATE_BUCKET", "1")
    open_store("s3://misspelt-bucket/x")
    assert client.bucket_exists("misspelt-bucket")


@pytest.mark.parametrize(
    "uri,env,needle",
    [
        ("s3://bucket/x", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "no S3 credentials"),
        ("s3://Bad_Bucket/x", {}, "invalid S3 bucket name"),
        ("s3://ab/x", {}, "invalid S3 bucket name"),
        ("s3://192.168.1.1/x", {}, "invalid S3 bucket name"),
        ("s3://bucket/../x", {}, "'..'"),
        ("s3://bucket/x", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9/minio"}, "must not have a path"),
        ("s3://bucket/x", {"NSBIFLOW_S3_TIMEOUT": "soon"}, "NSBIFLOW_S3_TIMEOUT"),
    ],
)
def test_configuration_errors_are_one_line(s3_endpoint: S3Endpoint, uri: str, env: dict, needle: str) -> None:
    result = run_cli("runs", "--store", uri, env={**s3_endpoint.env, **env})
    assert result.returncode == 1, result
    assert needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "internal error" not in result.stderr


def test_abandoned_multipart_upload_is_aborted_by_gc(s3_endpoint: S3Endpoint) -> None:
    store = open_store("s3://uploads/team")
    backend = store.backend
    client = backend.client  # type: ignore[attr-defined]
    upload_id = client._create_multipart_upload("uploads", "team/blobs/sha256/ab/abandoned", {})
    client._upload_part("uploads", "team/blobs/sha256/ab/abandoned", io.BytesIO(b"x" * 100).read(), {}, upload_id, 1)
    # (moto reports every upload as initiated in 2010, so the age threshold itself is not exercised here)
    assert backend.stale_temporaries(older_than=0)  # type: ignore[attr-defined]
    dry = run_cli("gc", "--store", "s3://uploads/team", "--min-age", "0", "--dry-run", "--json", env=s3_endpoint.env)
    assert dry.returncode == 0, dry.stderr
    assert any("abandoned" in t for t in json.loads(dry.stdout)["temporaries"])
    assert backend.stale_temporaries(older_than=0)  # type: ignore[attr-defined]
    done = run_cli("gc", "--store", "s3://uploads/team", "--min-age", "0", env=s3_endpoint.env)
    assert done.returncode == 0, done.stderr
    assert not backend.stale_temporaries(older_than=0)  # type: ignore[attr-defined]


def test_unavailable_store_error_type_is_kept(s3_endpoint: S3Endpoint) -> None:
    s3_endpoint.stop()
    with pytest.raises(StoreUnavailableError):
        open_store("s3://gone/x")
