"""The same workflow against a real S3 endpoint (moto's server on loopback) through the minio SDK."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from nsbiflow.errors import ArtifactNotFoundError, CorruptArtifactError, StoreUnavailableError
from nsbiflow.store import open_store
from nsbiflow.store.artifacts import blob_key
from tests.conftest import S3Endpoint, run_cli


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_store_roundtrip_and_verification(s3_endpoint: S3Endpoint, tmp_path: Path) -> None:
    store = open_store("s3://nsbi-test/analysis")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (24 * 4096 + 3))  # ~24 MiB: multipart upload
    ref = store.put_file(big)
    assert store.has_blob(ref.digest)
    store.fetch_file(ref.digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    tree = store.put_tree(folder)
    store.fetch_tree(tree.digest, tmp_path / "tree-back")
    assert (tmp_path / "tree-back" / "sub" / "b.txt").read_text() == "b"
    # tamper with a blob in the bucket: reads refuse it
    small = store.put_bytes(b"hello")
    store.backend.put_bytes(blob_key(small), b"HELLO")
    with pytest.raises(CorruptArtifactError, match="corrupted"):
        store.read_blob(small)
    with pytest.raises(ArtifactNotFoundError):
        store.read_blob("sha256:" + "0" * 64)


def test_workflow_runs_and_caches_on_s3(s3_endpoint: S3Endpoint, demo_workflow: Path) -> None:
    uri = "s3://nsbi-runs/team-a"
    first = run_cli("run", demo_workflow, "--store", uri, "--json", env=s3_endpoint.env)
    assert first.returncode == 0, first.stderr
    summary = last_json(first.stdout)
    assert summary["outputs"]["total"]["store_location"].startswith("s3://nsbi-runs/team-a/blobs/sha256/")
    second = run_cli("run", demo_workflow, "--store", uri, "--json", env=s3_endpoint.env)
    assert {s["status"] for s in last_json(second.stdout)["steps"]} == {"cached"}
    listing = run_cli("runs", "--store", uri, env=s3_endpoint.env)
    assert summary["run_id"] in listing.stdout
    # no credential ever lands in a record
    store = open_store(uri)
    manifest_text = store.backend.get_bytes(f"runs/{summary['run_id']}/manifest.json").decode()
    assert s3_endpoint.env["AWS_SECRET_ACCESS_KEY"] not in manifest_text


def test_endpoint_that_goes_away_mid_run(s3_endpoint: S3Endpoint, demo_workflow: Path) -> None:
    data = yaml.safe_load(demo_workflow.read_text())
    data["steps"]["square"]["run"]["parameters"]["sleep"] = {"type": "float", "default": 0.0}
    data["steps"]["square"]["with"]["sleep"] = 1.0
    workflow = demo_workflow.with_name("slow.yaml")
    workflow.write_text(yaml.safe_dump(data))
    uri = "s3://nsbi-outage/x"
    store = open_store(uri)

    def stop_when_numbers_cached() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if store.backend.list("cache/"):
                    break
            except StoreUnavailableError:
                return
            time.sleep(0.05)
        s3_endpoint.stop()

    killer = threading.Thread(target=stop_when_numbers_cached)
    killer.start()
    result = run_cli("run", workflow, "--store", uri, "--json", env=s3_endpoint.env, timeout=120)
    killer.join()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert "cannot reach the S3 endpoint" in error_lines[0] and "run again" in error_lines[0]


def test_resume_after_outage(s3_endpoint: S3Endpoint, demo_workflow: Path, tmp_path: Path) -> None:
    # finished work is kept in the bucket; a new endpoint process serving the same data would resume.
    # moto keeps state per server, so emulate the outage by pointing at a dead port, then back.
    uri = "s3://nsbi-resume/x"
    first = run_cli("run", demo_workflow, "--store", uri, "--json", env=s3_endpoint.env)
    assert first.returncode == 0, first.stderr
    dead = dict(s3_endpoint.env, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    down = run_cli("run", demo_workflow, "--store", uri, "--json", env=dead, timeout=120)
    assert down.returncode == 1
    assert down.stderr.strip().startswith("error: cannot reach the S3 endpoint http://127.0.0.1:9")
    assert len(down.stderr.strip().splitlines()) == 1
    back = run_cli("run", demo_workflow, "--store", uri, "--json", env=s3_endpoint.env)
    assert {s["status"] for s in last_json(back.stdout)["steps"]} == {"cached"}
