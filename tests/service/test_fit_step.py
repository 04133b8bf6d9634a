"""The ``fit`` step through a fit service (``$NSBIFLOW_FIT_SERVER`` + a token): the same outputs as a local fit,
computed by a real server process on 127.0.0.1; the token never reaches a log, a record or a manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nsbiflow.service.client import FitClient
from nsbiflow.service.process import ServerProcess
from tests.conftest import run_cli

from ..physics.model.conftest import TOY_MODEL
from ..physics.model.test_reinterpret_model import MODEL, WORKFLOW
from . import test_nsbi
from .conftest import TOKEN

pytestmark = pytest.mark.slow

STEP = Path(sys.executable).parent / "nsbiflow-step"
PARAMS = {"n_scan": 5, "impacts": False, "cls": False, "injected": {"mu": 1.0}}  # small: the same code either way
CLEAN = {k: "" for k in ("NSBIFLOW_FIT_SERVER", "NSBIFLOW_FIT_TOKEN", "NSBIFLOW_FIT_TOKEN_FILE")}


def _fit(ratios: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out.mkdir()
    command = [str(STEP), "fit", "--in", f"model={TOY_MODEL}", "--in", f"ratios={ratios}",
               "--out", f"results={out / 'results.json'}", "--out", f"workspace={out / 'workspace.json'}",
               "--out", f"plots={out / 'plots'}"]
    command += [arg for key, value in PARAMS.items() for arg in ("--param", f"{key}={json.dumps(value)}")]
    return subprocess.run(command, env={**os.environ, **CLEAN, **env}, capture_output=True, text=True, timeout=600)


def test_the_fit_step_through_a_server_writes_what_a_local_fit_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(test_nsbi, "N_EVENTS", 500)
    ratios = test_nsbi.write_ratio_tables(tmp_path / "ratios")
    local = _fit(ratios, tmp_path / "local", {})
    assert local.returncode == 0, local.stderr
    assert "fit service" not in local.stdout
    with ServerProcess(tmp_path / "server-store", token=TOKEN, workers=2, log=tmp_path / "server.log") as server:
        env = {"NSBIFLOW_FIT_SERVER": server.url, "NSBIFLOW_FIT_TOKEN": TOKEN}
        remote = _fit(ratios, tmp_path / "remote", env)
        assert remote.returncode == 0, remote.stderr
        assert f"evaluated by the fit service at {server.url}" in remote.stdout
        with FitClient(server.url, TOKEN) as client:
            assert [m["kind"] for m in client.models()] == ["nsbi"]  # the bundle the step uploaded
            # a second fit sends no blob again: the server's store has them all
            tree = client.models()[0]["digest"]
            assert client.missing_blobs([tree]) == []
        no_token = _fit(ratios, tmp_path / "no-token", {"NSBIFLOW_FIT_SERVER": server.url})
        wrong = _fit(ratios, tmp_path / "wrong", {**env, "NSBIFLOW_FIT_TOKEN": "w" * 24})
    assert no_token.returncode == 1
    assert no_token.stderr.strip() == ("error: fit: $NSBIFLOW_FIT_SERVER is set but no token: set "
                                       "$NSBIFLOW_FIT_TOKEN or $NSBIFLOW_FIT_TOKEN_FILE")
    assert wrong.returncode == 1 and wrong.stderr.strip().startswith("error: fit: fit service: 401: ")
    for name in ("results.json", "workspace.json", "plots/summary.md"):
        assert (tmp_path / "remote" / name).read_text() == (tmp_path / "local" / name).read_text(), name
    results = json.loads((tmp_path / "local" / "results.json").read_text())
    assert set(results["methods"]) == {"exact", "nsbi", "discriminant", "histogram"}
    assert "code 4" in results["workspace"]
    assert sorted(p.name for p in (tmp_path / "remote" / "plots").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "plots").iterdir())
    assert TOKEN not in (tmp_path / "server.log").read_text()


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_workflow_fit_through_the_server_never_records_the_token(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(WORKFLOW)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(MODEL))
    store, work = tmp_path / "store", tmp_path / "work"
    with ServerProcess(tmp_path / "server-store", token=TOKEN, workers=1, log=tmp_path / "server.log") as server:
        env = {"NSBIFLOW_FIT_SERVER": server.url, "NSBIFLOW_FIT_TOKEN": TOKEN, "TMPDIR": str(work)}
        work.mkdir()
        run = run_cli("run", tmp_path / "wf.yaml", "--store", store, env=env)
        assert run.returncode == 0, run.stderr
        with FitClient(server.url, TOKEN) as client:
            assert [m["kind"] for m in client.models()] == ["nsbi"]  # the fit went to the server
    logs = [p for p in store.rglob("*") if p.is_file() and b"evaluated by the fit service" in p.read_bytes()]
    assert logs, "the fit step's stored log says where its methods were evaluated"
    assert TOKEN.encode() not in run.stdout.encode() + run.stderr.encode()
    assert _files_containing(tmp_path, TOKEN.encode()) == []  # store (logs, records, manifests), work dirs, server
