"""NSBI models (kind: Model + per-event ratio tables in the store) through a real server: same numbers as
the physics package in this process, warm profiles, model patches in a batch, archived fit steps."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nsbiflow.physics.model import fit
from nsbiflow.physics.model.data import read_samples
from nsbiflow.physics.model.likelihood import Likelihood
from nsbiflow.physics.model.loader import model_from_data
from nsbiflow.physics.toy_model import ToyModel
from nsbiflow.service.backends.nsbi_model import bundle_document
from nsbiflow.service.process import ServerProcess
from nsbiflow.store import open_store

from ..physics.model.conftest import TOY_MODEL, toy_table
from .conftest import TOKEN, Server

pytestmark = pytest.mark.slow

N_EVENTS = 2000


def write_ratio_tables(folder: Path, seed: int = 11) -> Path:
    """What ``infer`` writes: one Parquet file per sample with ``logr_<label>`` columns and the process name."""
    toy = ToyModel()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    samples = {p: toy.sample(p, N_EVENTS, rng) for p in ("signal", "background", "reference", "background_up",
                                                         "background_down")}
    samples["observed"] = toy.sample_mixture(60, 1000, rng)
    for name, x in samples.items():
        table = toy_table(toy, name, x)
        arrow = pa.table({k: pa.array(np.asarray(v, dtype=np.float64)) for k, v in table.columns.items()})
        meta = {"process": name, "observables": table.meta["observables"]}
        pq.write_table(arrow.replace_schema_metadata({b"nsbiflow": json.dumps(meta).encode()}),
                       str(folder / f"{name}.parquet"))
    return folder


@pytest.fixture(scope="module")
def nsbi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, dict[str, Any], Path]]:
    """A server, the digest of an uploaded toy NSBI bundle, the Model document and the tables' folder."""
    root = tmp_path_factory.mktemp("nsbi")
    ratios = write_ratio_tables(root / "ratios")
    store = open_store(root / "store")
    tree = store.put_tree(ratios).digest
    document = yaml.safe_load(TOY_MODEL.read_text())
    process = ServerProcess(root / "store", token=TOKEN, workers=1, log=root / "server.log").start()
    server = Server(process, TOKEN, root)
    response = server.post("/v1/models", {"kind": "nsbi", "name": "toy", "document": bundle_document(document, [tree])})
    assert response.status_code == 201, response.text
    try:
        yield server, response.json()["digest"], document, ratios
    finally:
        server.close()


def _local(document: dict[str, Any], ratios: Path) -> Likelihood:
    tables, _ = read_samples([ratios])
    return Likelihood(model_from_data(document), tables, "nsbi")


def test_info_fit_and_hypotest_equal_the_physics_package(nsbi: tuple[Server, str, dict[str, Any], Path]) -> None:
    server, digest, document, ratios = nsbi
    info = server.http.get(f"/v1/models/{digest}").json()["result"]
    assert info["kind"] == "nsbi" and info["poi"] == "mu"
    assert info["parameters"] == ["mu", "alpha", "bkg_norm"]
    assert info["summary"]["samples"]["observed"] == 1060
    like = _local(document, ratios)
    best = fit.minimise(like)
    answer = server.post("/v1/fit", {"model": digest}).json()
    values = {p["name"]: p for p in answer["result"]["parameters"]}
    assert answer["result"]["twice_nll"] == pytest.approx(best.twice_nll, abs=1e-8)
    for name, value in zip(like.parameters.names, best.x, strict=True):
        assert values[name]["value"] == pytest.approx(float(value), abs=1e-6)
        assert values[name]["error"] > 0
    data, asimov = fit.cls_profiles(like, "mu")
    hypotest = server.post("/v1/hypotest", {"model": digest, "poi": 1.5}).json()["result"]
    assert hypotest["cls_obs"] == pytest.approx(fit.cls_value(data, asimov, "mu", 1.5), abs=1e-8)
    assert hypotest["cls_exp"] == sorted(hypotest["cls_exp"]) and 0 < hypotest["cls_exp"][2] < 1
    held = server.post("/v1/fit", {"model": digest, "fixed": {"mu": 0.0}}).json()["result"]
    assert next(p for p in held["parameters"] if p["name"] == "mu") == {"name": "mu", "value": 0.0, "error": None}


def test_scan_and_upper_limit(nsbi: tuple[Server, str, dict[str, Any], Path]) -> None:
    server, digest, _, _ = nsbi
    scan = server.post("/v1/scan", {"model": digest, "start": 0.0, "stop": 3.0, "points": 7}).json()
    assert scan["parameter"] == "mu" and min(scan["delta_twice_nll"]) >= 0
    grid = [0.5 * i for i in range(1, 9)]
    on_grid = server.post("/v1/upper-limit", {"model": digest, "scan": grid}).json()["result"]
    rooted = server.post("/v1/upper-limit", {"model": digest}).json()["result"]
    assert rooted["obs"] == pytest.approx(on_grid["obs"], rel=0.05)
    assert rooted["exp"] == sorted(rooted["exp"])
    for level_mu, band in ((rooted["obs"], "obs"), (rooted["exp"][2], "median")):
        check = server.post("/v1/hypotest", {"model": digest, "poi": level_mu}).json()["result"]
        value = check["cls_obs"] if band == "obs" else check["cls_exp"][2]
        assert value == pytest.approx(0.05, abs=1e-4), band


def test_a_batch_of_model_patches_reuses_the_loaded_tables(nsbi: tuple[Server, str, dict[str, Any], Path]) -> None:
    server, digest, document, ratios = nsbi
    patches = [{"name": f"yield_{y:g}", "patch": [
        {"op": "replace", "path": "/regions/SR/processes/signal/yield", "value": y}]} for y in (50.0, 100.0, 200.0)]
    patches.append({"name": "broken", "patch": [
        {"op": "replace", "path": "/regions/SR/processes/signal/coefficient", "value": "nope * 2"}]})
    batch = server.post("/v1/batch", {"model": digest, "patches": patches,
                                      "operation": {"op": "hypotest", "poi": 1.0}}).json()
    by_name = {i["name"]: i for i in batch["items"]}
    assert batch["failed"] == 1 and by_name["broken"]["error"].startswith("model: ")
    cls = [by_name[f"yield_{y:g}"]["result"]["cls_obs"] for y in (50.0, 100.0, 200.0)]
    assert cls[0] > cls[1] > cls[2]  # more expected signal at mu = 1: more strongly excluded
    patched = json.loads(json.dumps(document))
    patched["regions"]["SR"]["processes"]["signal"]["yield"] = 200.0
    data, asimov = fit.cls_profiles(_local(patched, ratios), "mu")
    assert cls[2] == pytest.approx(fit.cls_value(data, asimov, "mu", 1.0), abs=1e-8)
    patchset = server.post("/v1/batch", {"model": digest, "patchset": {"patches": []}})
    assert patchset.status_code == 400 and patchset.json()["detail"].startswith("patchset: a pyhf patchset")


def test_a_bundle_naming_tables_that_are_not_in_the_store_is_refused(
        nsbi: tuple[Server, str, dict[str, Any], Path]) -> None:
    server, _, document, _ = nsbi
    bundle = bundle_document(document, ["sha256:" + "ee" * 32])
    response = server.post("/v1/models", {"kind": "nsbi", "document": bundle})
    assert response.status_code == 404 and "sha256:eeee" in response.json()["detail"]
    bad = server.post("/v1/models", {"kind": "nsbi", "document": {**bundle, "ratios": ["../../etc"]}})
    assert bad.status_code == 422, bad.text


def test_an_archived_fit_step_is_an_nsbi_model(nsbi: tuple[Server, str, dict[str, Any], Path]) -> None:
    from nsbiflow.archive.record import ArchiveRecord, write_archive

    server, _, _, ratios = nsbi
    store = open_store(server.store)  # what `nsbiflow preserve` leaves in the server's store
    tree = store.put_tree(ratios).digest
    model_blob = store.put_bytes(TOY_MODEL.read_bytes())
    manifest = {"steps": {"fit": {"template": "fit", "inputs": {"model": [model_blob], "ratios": [tree]}}}}
    write_archive(store, ArchiveRecord(
        name="toy-nsbi", created="2026-01-01T00:00:00+00:00", run_id="run-1", workflow_name="toy",
        workflow_file=model_blob, workflow_document=model_blob, definitions={}, parameters={}, interface={},
        images={}, versions={}, steps={}, manifest=manifest, blobs={}, results={},
    ))
    answer = server.post("/v1/hypotest", {"model": "toy-nsbi:fit", "poi": 1.0})
    assert answer.status_code == 200, answer.text
    assert answer.json()["kind"] == "nsbi"
    assert server.post("/v1/hypotest", {"model": "toy-nsbi"}).json()["digest"] == answer.json()["digest"]
    missing = server.post("/v1/hypotest", {"model": "toy-nsbi:limits"})
    assert missing.status_code == 404 and missing.json()["detail"] == (
        "archive 'toy-nsbi' has no model result 'limits' (models: fit)")
