"""Every endpoint of a real ``nsbiflow serve`` process on 127.0.0.1, through a real HTTP client (httpx)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from nsbiflow.service.client import FitClient, FitServiceError
from nsbiflow.service.process import free_port

from .conftest import TOKEN, Server, patchset, pyhf_cls, workspace

pytestmark = pytest.mark.slow  # one server start (~5 s) for the module

SIGNALS = [[1.0, 2.0], [3.0, 6.0], [8.0, 4.0], [12.0, 20.0]]


def _result(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


# ---------------------------------------------------------------- authentication


def test_probes_are_open_and_every_v1_route_needs_the_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": TOKEN}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/hypotest"), ("GET", "/v1/openapi.json"),
                             ("GET", "/v1/jobs/" + "0" * 32)):
            response = httpx.request(method, f"{server.url}{path}", headers=headers, json={})
            assert response.status_code == 401, (headers, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json() == {"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"}
    assert server.http.get("/v1/openapi.json").json()["info"]["title"] == "nsbiflow fit service"


def test_the_token_never_reaches_the_log(server: Server) -> None:
    httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer not-the-token-but-long"})
    server.http.get("/v1/models")
    assert TOKEN not in server.log.read_text()


def test_a_rotated_token_file_takes_effect_without_a_restart(server: Server) -> None:
    new = "rotated-token-abcdefghijklmnop"
    time.sleep(0.01)
    server.token_file.write_text(new)
    try:
        assert server.http.get("/v1/models").status_code == 401
        rotated = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {new}"})
        assert rotated.status_code == 200
    finally:
        server.token_file.write_text(TOKEN)
    assert server.http.get("/v1/models").status_code == 200


# ---------------------------------------------------------------- models


def test_upload_list_and_describe_a_workspace(server: Server) -> None:
    digest = server.upload(workspace(), name="two-bin")
    assert digest.startswith("sha256:")
    assert server.upload(workspace(), name="again") == digest  # content-addressed, idempotent
    listed = _result(server.http.get("/v1/models"))["models"]
    assert [m["name"] for m in listed if m["digest"] == digest] == ["two-bin"]
    info = _result(server.http.get(f"/v1/models/{digest}"))
    assert info["result"]["poi"] == "mu"
    assert info["result"]["parameters"] == ["mu", "bkg_unc[0]", "bkg_unc[1]"]
    assert info["result"]["summary"]["channels"] == ["SR"]


def test_a_model_that_does_not_exist_is_404_with_one_line(server: Server) -> None:
    missing = "sha256:" + "ab" * 32
    for response in (server.post("/v1/hypotest", {"model": missing}), server.http.get(f"/v1/models/{missing}")):
        body = _result(response, 404)
        assert body["detail"].startswith(f"no model {missing} in the store")
        assert "\n" not in body["detail"] and "Traceback" not in response.text
    body = _result(server.post("/v1/fit", {"model": "no-such-archive"}), 404)
    assert "no archive 'no-such-archive'" in body["detail"]


def test_an_invalid_workspace_is_refused_and_not_registered(server: Server) -> None:
    bad = workspace()
    bad["channels"][0]["samples"][0]["modifiers"][0]["type"] = "nonsense"
    body = _result(server.post("/v1/models", {"kind": "pyhf", "document": bad}), 422)
    assert body["detail"].startswith("not a valid pyhf workspace")
    body = _result(server.post("/v1/models", {"kind": "pyhf", "document": {"channels": []}}), 422)
    assert body["detail"] == "document: not a pyhf model document"
    assert all(m["size"] for m in server.http.get("/v1/models").json()["models"])


# ---------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/hypotest", {"model": "sha256:" + "0" * 64, "poi": "high"}, "body.poi"),
        ("/v1/hypotest", {"poi": 1.0}, "body.model"),
        ("/v1/fit", {"model": "../../etc/passwd"}, "body.model"),
        ("/v1/fit", {"model": "/abs/path.json"}, "body.model"),
        ("/v1/fit", {"model": "sha256:" + "0" * 64, "colour": "red"}, "body.colour"),
        ("/v1/scan", {"model": "sha256:" + "0" * 64, "start": 0, "stop": 1, "points": 1}, "body.points"),
        ("/v1/upper-limit", {"model": "sha256:" + "0" * 64, "level": 1.5}, "body.level"),
        ("/v1/batch", {"model": "sha256:" + "0" * 64, "patches": [{"name": "a", "patch": [{"op": "jump"}]}]},
         "body.patches.0.patch.0.op"),
        ("/v1/jobs", {"kind": "hypotest", "request": {"model": "sha256:" + "0" * 64, "poi": []}},
         "body.request.poi"),
    ],
)
def test_schema_errors_are_422_naming_the_field(server: Server, path: str, body: dict[str, Any], field: str) -> None:
    detail = _result(server.post(path, body), 422)["detail"]
    assert detail.startswith(f"{field}: "), detail
    assert "\n" not in detail


def test_bad_json_and_wrong_patches_are_one_line(server: Server) -> None:
    response = server.http.post("/v1/fit", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"].startswith("body")
    digest = server.upload(workspace())
    body = _result(server.post("/v1/fit", {"model": digest, "fixed": {"nope": 1.0}}), 400)
    assert body["detail"].startswith("no parameter 'nope' in the model")
    body = _result(server.post("/v1/hypotest", {"model": digest, "patch": [
        {"op": "remove", "path": "/channels/3"}]}), 400)
    assert body["detail"].startswith("the patch does not apply to the workspace")
    body = _result(server.post("/v1/batch", {"model": digest, "patchset": {"nonsense": True}}), 400)
    assert body["detail"].startswith("patchset: not a valid pyhf patchset")
    other = patchset(workspace(observed=[40.0, 40.0]), SIGNALS)
    body = _result(server.post("/v1/batch", {"model": digest, "patchset": other}), 400)
    assert body["detail"].startswith("patchset: made for another workspace")


def test_size_limits_are_413(server: Server) -> None:
    huge = b'{"model": "' + b"x" * 300_000 + b'"}'
    response = server.http.post("/v1/fit", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == f"request body over the server's limit of {int(0.25 * (1 << 20))} bytes"

    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 10_000

    chunked = server.http.post("/v1/fit", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    big = workspace(signal=[1.0] * 7000, observed=[50.0] * 7000)  # under the body limit, over the model limit
    big["channels"][0]["samples"][1]["data"] = [50.0] * 7000
    big["channels"][0]["samples"][1]["modifiers"][0]["data"] = [5.0] * 7000
    body = _result(server.post("/v1/models", {"kind": "pyhf", "document": big}), 413)
    assert "over the server's model limit" in body["detail"]


# ---------------------------------------------------------------- fits


def test_hypotest_equals_pyhf_cls(server: Server) -> None:
    digest = server.upload(workspace())
    for poi in (0.5, 1.0, 2.0):
        result = _result(server.post("/v1/hypotest", {"model": digest, "poi": poi}))["result"]
        observed, expected = pyhf_cls(workspace(), poi)
        assert result["cls_obs"] == pytest.approx(observed, abs=1e-9)
        assert result["cls_exp"] == pytest.approx(expected, abs=1e-9)


def test_fit_and_fixed_parameters(server: Server) -> None:
    import pyhf

    digest = server.upload(workspace())
    answer = _result(server.post("/v1/fit", {"model": digest}))
    assert answer["digest"] == digest and answer["kind"] == "pyhf"
    fitted = {p["name"]: p for p in answer["result"]["parameters"]}
    pyhf.set_backend("numpy", pyhf.optimize.minuit_optimizer(verbose=0))
    ws = pyhf.Workspace(workspace())
    model = ws.model(modifier_settings={"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}})
    reference = pyhf.infer.mle.fit(ws.data(model), model, return_uncertainties=True)
    assert fitted["mu"]["value"] == pytest.approx(float(reference[0][0]), abs=1e-6)
    assert fitted["mu"]["error"] == pytest.approx(float(reference[0][1]), rel=1e-4)
    held = _result(server.post("/v1/fit", {"model": digest, "fixed": {"mu": 2.0}}))["result"]
    mu = next(p for p in held["parameters"] if p["name"] == "mu")
    assert mu == {"name": "mu", "value": 2.0, "error": None}
    assert held["twice_nll"] > answer["result"]["twice_nll"]


def test_upper_limit_on_a_grid_and_by_root_finding(server: Server) -> None:
    import numpy as np
    import pyhf

    digest = server.upload(workspace())
    grid = [float(x) for x in np.linspace(0.0, 5.0, 11)]
    result = _result(server.post("/v1/upper-limit", {"model": digest, "scan": grid}))["result"]
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    ws = pyhf.Workspace(workspace())
    model = ws.model(modifier_settings={"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}})
    observed, expected = pyhf.infer.intervals.upper_limits.upper_limit(ws.data(model), model, scan=np.array(grid))
    assert result["obs"] == pytest.approx(float(observed), abs=1e-6)
    assert result["exp"] == pytest.approx([float(e) for e in expected], abs=1e-6)
    rooted = _result(server.post("/v1/upper-limit", {"model": digest}))["result"]
    assert rooted["obs"] == pytest.approx(result["obs"], rel=0.05)  # the grid interpolates linearly


def test_profile_scan(server: Server) -> None:
    digest = server.upload(workspace())
    scan = _result(server.post("/v1/scan", {"model": digest, "start": 0.0, "stop": 3.0, "points": 7}))
    assert scan["parameter"] == "mu" and len(scan["values"]) == len(scan["twice_nll"]) == 7
    assert min(scan["delta_twice_nll"]) >= 0.0
    best_mu = next(p["value"] for p in scan["best"]["parameters"] if p["name"] == "mu")
    lowest = scan["values"][scan["delta_twice_nll"].index(min(scan["delta_twice_nll"]))]
    assert abs(lowest - best_mu) <= 0.5  # the grid point nearest the best fit is the lowest
    nuisance = _result(server.post("/v1/scan", {"model": digest, "parameter": "bkg_unc[0]", "start": 0.8,
                                                "stop": 1.2, "points": 3}))
    assert nuisance["parameter"] == "bkg_unc[0]"


def test_batch_of_patchset_patches_equals_pyhf(server: Server) -> None:
    import pyhf

    base = workspace()
    digest = server.upload(base)
    patches = patchset(base, SIGNALS)
    batch = _result(server.post("/v1/batch", {"model": digest, "patchset": patches}))
    assert [i["name"] for i in batch["items"]] == ["p0", "p1", "p2", "p3"] and batch["failed"] == 0
    reference = pyhf.PatchSet(patches)
    for item in batch["items"]:
        patched = dict(reference.apply(pyhf.Workspace(base), item["name"]))
        observed, expected = pyhf_cls(patched)
        assert item["result"]["cls_obs"] == pytest.approx(observed, abs=1e-9)
        assert item["result"]["cls_exp"] == pytest.approx(expected, abs=1e-9)
    some = _result(server.post("/v1/batch", {"model": digest, "patchset": patches, "names": ["p2"],
                                            "operation": {"op": "upper_limit", "scan": [0.0, 1.0, 2.0, 4.0]}}))
    assert [i["name"] for i in some["items"]] == ["p2"] and some["items"][0]["result"]["op"] == "upper_limit"
    missing = _result(server.post("/v1/batch", {"model": digest, "patchset": patches, "names": ["p9"]}), 400)
    assert missing["detail"].startswith("names: the patchset has no patch 'p9'")


def test_batch_reports_a_failing_patch_and_keeps_the_others(server: Server) -> None:
    digest = server.upload(workspace())
    patches = [
        {"name": "good", "patch": [{"op": "replace", "path": "/channels/0/samples/0/data", "value": [2.0, 3.0]}]},
        {"name": "bad", "patch": [{"op": "replace", "path": "/channels/0/samples/0/data", "value": [2.0]}]},
    ]
    batch = _result(server.post("/v1/batch", {"model": digest, "patches": patches,
                                              "operation": {"op": "fit"}}))
    good, bad = batch["items"]
    assert good["result"]["op"] == "fit" and good["error"] is None
    assert bad["result"] is None and bad["error"] and "\n" not in bad["error"]
    assert batch["failed"] == 1


# ---------------------------------------------------------------- jobs


def test_jobs_report_progress_and_results(server: Server) -> None:
    base = workspace()
    digest = server.upload(base)
    accepted = _result(server.post("/v1/jobs", {"kind": "batch", "request": {
        "model": digest, "patchset": patchset(base, SIGNALS * 3)}}), 202)
    assert accepted["poll"] == f"/v1/jobs/{accepted['job_id']}"
    seen = []
    for _ in range(600):
        status = _result(server.http.get(accepted["poll"]))
        seen.append(status["done"])
        if status["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["status"] == "done", status
    assert status["done"] == status["total"] == 12
    assert seen == sorted(seen)
    assert len(status["result"]["items"]) == 12
    failed = _result(server.post("/v1/jobs", {"kind": "fit", "request": {"model": "sha256:" + "cd" * 32}}), 202)
    for _ in range(200):
        status = _result(server.http.get(failed["poll"]))
        if status["status"] != "running" and status["status"] != "queued":
            break
        time.sleep(0.05)
    assert status["status"] == "failed" and status["error"].startswith("no model sha256:cdcd")
    assert _result(server.http.get("/v1/jobs/" + "0" * 32), 404)["detail"].startswith("no job")
    assert _result(server.http.get("/v1/jobs/not-a-job-id"), 422)["detail"].startswith("path.job_id: ")


# ---------------------------------------------------------------- the Python client's errors, a dying worker


def test_client_errors_are_one_line(server: Server) -> None:
    with FitClient(server.url, "a-wrong-token-of-some-length") as client, \
            pytest.raises(FitServiceError, match=r"^fit service: 401: missing or wrong bearer token") as denied:
        client.models()
    assert denied.value.status == 401
    with FitClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=2) as client, \
            pytest.raises(FitServiceError, match="unreachable"):
        client.models()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find the worker processes")
def test_a_worker_that_dies_is_replaced(server: Server) -> None:
    """Last in the module: the pool is replaced, and the next request loads the model again."""
    with FitClient(server.url, TOKEN) as client:
        digest = client.upload(workspace())["digest"]
        before = client.hypotest(digest)["result"]
        assert server.process.process is not None
        workers = [c for c in _children(server.process.process.pid)
                   if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        with pytest.raises(FitServiceError, match="a fit worker died") as died:
            client.hypotest(digest)
        assert died.value.status == 503
        assert client.hypotest(digest)["result"] == before


# ---------------------------------------------------------------- blobs (what a fit step uploads)


def test_blobs_are_checked_against_their_digest_and_have_their_own_size_limit(server: Server) -> None:
    from nsbiflow.store.digest import digest_bytes

    data = os.urandom(300_000)  # over this server's request limit (0.25 MiB), under its blob limit
    digest = digest_bytes(data)
    assert _result(server.post("/v1/blobs/missing", {"digests": [digest]}))["missing"] == [digest]
    wrong = _result(server.http.put(f"/v1/blobs/{digest}", content=data[:-1]), 400)["detail"]
    assert wrong.startswith(f"blob: the body does not hash to {digest}")
    assert _result(server.http.put(f"/v1/blobs/{digest}", content=data)) == {"digest": digest, "size": len(data)}
    assert _result(server.post("/v1/blobs/missing", {"digests": [digest]}))["missing"] == []
    assert (server.store / "blobs" / "sha256" / digest[7:9] / digest[7:]).read_bytes() == data
    bad = _result(server.post("/v1/blobs/missing", {"digests": ["sha256:12"]}), 422)["detail"]
    assert bad.startswith("body.digests.0: ")
    assert _result(server.http.put("/v1/blobs/sha256:zz", content=b"x"), 422)["detail"].startswith("path.digest")
    too_big = _result(server.post("/v1/batch", {"model": digest, "patches": [], "pad": "x" * 300_000}), 413)
    assert "limit of 262144 bytes" in too_big["detail"]
    denied = httpx.put(f"{server.url}/v1/blobs/{digest}", content=data)
    assert denied.status_code == 401
