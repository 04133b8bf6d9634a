"""Fixtures of the fit-service tests: pyhf workspaces and patchsets, and a real server on 127.0.0.1."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nsbiflow.service.process import ServerProcess

TOKEN = "test-token-0123456789abcdef"


def workspace(signal: list[float] | None = None, observed: list[float] | None = None) -> dict[str, Any]:
    """A two-bin pyhf workspace: signal (mu), background with per-bin shapesys."""
    return {
        "version": "1.0.0",
        "channels": [{"name": "SR", "samples": [
            {"name": "signal", "data": signal or [5.0, 10.0],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "background", "data": [50.0, 60.0],
             "modifiers": [{"name": "bkg_unc", "type": "shapesys", "data": [5.0, 12.0]}]},
        ]}],
        "observations": [{"name": "SR", "data": observed or [52.0, 63.0]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    }


def patchset(base: dict[str, Any], signals: list[list[float]]) -> dict[str, Any]:
    """A pyhf PatchSet replacing the signal yields, one patch per entry of ``signals``."""
    import pyhf

    return {
        "metadata": {"name": "signal-grid", "description": "test grid", "labels": ["point"],
                     "references": {"hepdata": "ins0000000"}, "digests": {"sha256": pyhf.utils.digest(base)}},
        "patches": [
            {"metadata": {"name": f"p{i}", "values": [i]},
             "patch": [{"op": "replace", "path": "/channels/0/samples/0/data", "value": signal}]}
            for i, signal in enumerate(signals)
        ],
        "version": "1.0.0",
    }


def pyhf_cls(spec: dict[str, Any], poi: float = 1.0) -> tuple[float, list[float]]:
    """What ``pyhf cls`` computes, in this process (the reference the service must equal)."""
    import pyhf

    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    ws = pyhf.Workspace(copy.deepcopy(spec))
    model = ws.model(modifier_settings={"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}})
    observed, expected = pyhf.infer.hypotest(poi, ws.data(model), model, test_stat="qtilde",
                                             return_expected_set=True)
    return float(observed), [float(v) for v in expected]


class Server:
    """A running server plus an authenticated httpx client."""

    def __init__(self, process: ServerProcess, token: str, root: Path) -> None:
        self.process = process
        self.token = token
        self.token_file = root / "token"
        self.log = root / "server.log"
        self.store = root / "store"
        self.http = httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    @property
    def url(self) -> str:
        return self.process.url

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def upload(self, document: dict[str, Any], name: str | None = None) -> str:
        response = self.post("/v1/models", {"kind": "pyhf", "name": name, "document": document})
        assert response.status_code == 201, response.text
        digest: str = response.json()["digest"]
        return digest

    def close(self) -> None:
        self.http.close()
        self.process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``nsbiflow serve`` with 2 workers, the token in a file (as a mounted Secret), small size limits."""
    root = tmp_path_factory.mktemp("service")
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    process = ServerProcess(root / "store", token_file=token_file, workers=2, log=root / "server.log",
                            extra=["--max-request-mb", "0.25", "--max-model-mb", "0.1"]).start()
    running = Server(process, TOKEN, root)
    try:
        yield running
    finally:
        running.close()


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


# the chart fixtures of tests/deploy (real Helm through helm-python-sdk), shared rather than copied
from ..deploy.conftest import chart, helm, render  # noqa: E402, F401
