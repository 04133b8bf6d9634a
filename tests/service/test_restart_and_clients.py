"""A restarted server keeps what the store holds; the Python client and ``nsbiflow fit`` talk to a real server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nsbiflow.archive.record import ArchiveRecord, write_archive
from nsbiflow.service.client import FitClient, FitServiceError, client_from_env
from nsbiflow.service.process import ServerProcess
from nsbiflow.store import ArtifactRef, open_store
from nsbiflow.store.digest import canonical_json

from ..conftest import run_cli
from .conftest import TOKEN, patchset, pyhf_cls, workspace, write_json

pytestmark = pytest.mark.slow


def _archive_with_workspace(store_path: Path, spec: dict[str, Any], name: str = "toy-analysis") -> None:
    """An archive record whose ``workspace`` result is a pyhf workspace (what `nsbiflow preserve` records)."""
    store = open_store(store_path)
    data = canonical_json(spec)
    blob = store.put_bytes(data)
    other = store.put_bytes(b'{"mu_hat": 1.0}')
    # as the toy workflow declares it: the reinterpretation interface names results.json, not the workspace
    write_archive(store, ArchiveRecord(
        name=name, created="2026-01-01T00:00:00+00:00", run_id="run-1", workflow_name="toy", workflow_file=blob,
        workflow_document=blob, definitions={}, parameters={}, interface={"results": ["results"]}, images={},
        versions={}, steps={}, manifest={}, blobs={blob: "workspace", other: "results"},
        results={"workspace": ArtifactRef(kind="file", digest=blob, size=len(data), filename="workspace.json"),
                 "results": ArtifactRef(kind="file", digest=other, size=15, filename="results.json")},
    ))


def test_restart_keeps_models_jobs_and_archives(tmp_path: Path) -> None:
    store = tmp_path / "store"
    base = workspace()
    with ServerProcess(store, token=TOKEN, workers=1) as first, FitClient(first.url, TOKEN) as client:
        digest = client.upload(base, name="before-restart")["digest"]
        before = client.hypotest(digest, 1.0)["result"]
        job_id = client.submit("batch", {"model": digest, "patchset": patchset(base, [[1.0, 1.0], [2.0, 2.0]])})
        batch = client.wait(job_id)
    _archive_with_workspace(store, workspace(observed=[55.0, 70.0]))
    # the new process answers every plain request with 202 (sync wait 0): the client polls transparently
    with ServerProcess(store, token=TOKEN, workers=1, extra=["--sync-wait", "0", "--preload", digest]) as second, \
            FitClient(second.url, TOKEN, poll_s=0.02) as client:
        assert [m["name"] for m in client.models()] == ["before-restart"]
        assert client.hypotest(digest, 1.0)["result"] == before
        old = client.job(job_id)
        assert old["status"] == "done" and old["result"] == batch
        archived = client.hypotest("toy-analysis:workspace", 1.0)
        assert archived["model"] == "toy-analysis:workspace"
        assert archived["result"]["cls_obs"] == pytest.approx(pyhf_cls(workspace(observed=[55.0, 70.0]))[0], 1e-9)
        assert client.hypotest("toy-analysis", 1.0)["digest"] == archived["digest"]  # the only model result
        with pytest.raises(FitServiceError, match="has no model result 'plots'") as missing:
            client.fit("toy-analysis:plots")
        assert missing.value.status == 404


def test_client_from_env_is_opt_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NSBIFLOW_FIT_SERVER", raising=False)
    assert client_from_env() is None
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("NSBIFLOW_FIT_SERVER", "http://127.0.0.1:9/")
    monkeypatch.setenv("NSBIFLOW_FIT_TOKEN_FILE", str(token_file))
    client = client_from_env()
    assert client is not None and client.url == "http://127.0.0.1:9"
    assert client._http.headers["authorization"] == f"Bearer {TOKEN}"
    client.close()


def test_nsbiflow_fit_gives_the_same_answer_locally_and_through_the_server(tmp_path: Path) -> None:
    ws = write_json(tmp_path / "ws.json", workspace())
    local = run_cli("fit", "--workspace", ws, "--hypotest", "1.0")
    assert local.returncode == 0, local.stderr
    observed, _ = pyhf_cls(workspace())
    assert json.loads(local.stdout)["result"]["cls_obs"] == pytest.approx(observed, abs=1e-12)
    patches = write_json(tmp_path / "patchset.json", patchset(workspace(), [[1.0, 2.0], [4.0, 4.0]]))
    with ServerProcess(tmp_path / "store", token=TOKEN, workers=0) as server:  # fits in a server thread
        env = {"NSBIFLOW_FIT_TOKEN": TOKEN}
        remote = run_cli("fit", "--server", server.url, "--workspace", ws, "--hypotest", "1.0", env=env)
        assert remote.returncode == 0, remote.stderr
        assert json.loads(remote.stdout)["result"] == json.loads(local.stdout)["result"]
        out = tmp_path / "batch.json"
        batch = run_cli("fit", "--server", server.url, "--workspace", ws, "--patchset", patches, "--hypotest", "1",
                        "-o", out, env=env)
        assert batch.returncode == 0, batch.stderr
        assert [i["name"] for i in json.loads(out.read_text())["items"]] == ["p0", "p1"]
        denied = run_cli("fit", "--server", server.url, "--workspace", ws, env={"NSBIFLOW_FIT_TOKEN": "x" * 20})
        assert denied.returncode == 1
        assert denied.stderr.strip() == (
            "error: fit service: 401: missing or wrong bearer token (Authorization: Bearer <token>)"
        )
    for item, signal in zip(json.loads(out.read_text())["items"], ([1.0, 2.0], [4.0, 4.0]), strict=True):
        assert item["result"]["cls_obs"] == pytest.approx(pyhf_cls(workspace(signal=signal))[0], abs=1e-9)


def test_cli_refuses_bad_usage_in_one_line(tmp_path: Path) -> None:
    env = {k: "" for k in os.environ if k.startswith("NSBIFLOW_SERVICE_TOKEN")}
    no_token = run_cli("serve", "--store", tmp_path / "store", "--port", "1", env=env)
    assert no_token.returncode == 1
    assert no_token.stderr.strip().endswith("no bearer token: set $NSBIFLOW_SERVICE_TOKEN or --token-file "
                                            "(or --no-auth on 127.0.0.1)")
    exposed = run_cli("serve", "--no-auth", "--host", "0.0.0.0", "--store", tmp_path / "store")
    assert exposed.returncode == 1 and "only allowed on a loopback address" in exposed.stderr
    short = run_cli("serve", "--store", tmp_path / "store", env={"NSBIFLOW_SERVICE_TOKEN": "short"})
    assert short.returncode == 1 and "shorter than 16 characters" in short.stderr and "short\n" not in short.stderr
    missing = run_cli("serve", "--store", tmp_path / "store", "--preload", "sha256:" + "0" * 64,
                      env={"NSBIFLOW_SERVICE_TOKEN": TOKEN})
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: no model sha256:0000")
    ws = write_json(tmp_path / "ws.json", workspace())
    both = run_cli("fit", "--workspace", ws, "--hypotest", "1", "--upper-limit")
    assert both.returncode == 2 and both.stderr.strip() == "error: choose one of --hypotest, --upper-limit and --scan"
    bad_scan = run_cli("fit", "--workspace", ws, "--scan", "0:3")
    assert bad_scan.returncode == 2 and "expected START:STOP:POINTS" in bad_scan.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"channels": [')
    parsed = run_cli("fit", "--workspace", broken)
    assert parsed.returncode == 2 and f"{broken}:1:" in parsed.stderr

