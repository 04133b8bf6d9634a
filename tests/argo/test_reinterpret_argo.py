"""Reinterpretation on Argo: ``nsbiflow reinterpret ARCHIVE --patch P --target argo`` compiles the patched workflow
against the S3 store that holds the archive, and the pods skip every step whose key is stored.

The original analysis runs locally against real S3 on loopback (moto), is preserved there, then reinterpreted for
Argo. The compiled Workflow is checked (schema, references), the unchanged step's pod is run through the real step
wrapper (it finds its key, identical to the original run's, and does not run), and the submission goes to the fake
Argo server the submit tests use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsbiflow.archive.reinterpret import reinterpret
from nsbiflow.archive.targets import ArgoTarget
from nsbiflow.backends.argo import wrapper as wrapper_module
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.backends.argo.wrapper import PodStep
from nsbiflow.store import open_store
from tests.archive.conftest import demo_with_interface
from tests.argo.conftest import make_bucket
from tests.argo.references import check_workflow, substitute
from tests.argo.test_submit import NAMESPACE, TOKEN, FakeArgo, fake_argo  # noqa: F401  (the fixture)
from tests.conftest import S3Endpoint, run_cli

pytestmark = pytest.mark.slow

STORE = "s3://nsbiflow/store"
PATCH = [{"op": "replace", "path": "/parameters/power/default", "value": 3}]


@pytest.fixture
def archived(s3_endpoint: S3Endpoint, tmp_path: Path) -> dict[str, Any]:
    """The demo analysis run locally against the S3 store and preserved there as ``demo``."""
    env = s3_endpoint.env
    make_bucket(env, "nsbiflow")
    workflow = demo_with_interface(tmp_path / "analysis")
    run = run_cli("run", workflow, "--store", STORE, "--json", "--results", tmp_path / "results", env=env)
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout.strip().splitlines()[-1])["run_id"]
    preserved = run_cli("preserve", run_id, "--name", "demo", "--store", STORE, "--json", env=env)
    assert preserved.returncode == 0, preserved.stderr
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps(PATCH))
    return {"run_id": run_id, "patch": patch, "env": env}


def _original_keys(run_id: str) -> dict[str, str]:
    manifest = open_store(STORE).read_manifest(run_id)
    return {step_id: str(step.key) for step_id, step in manifest.steps.items()}


def test_the_compiled_reinterpretation_reuses_the_original_keys(
    archived: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(STORE)
    result = reinterpret(store, "demo", PATCH, base_dir=tmp_path, target=ArgoTarget(submit=False))
    assert result.submitted and result.execution is not None
    document = result.execution.compiled
    assert document is not None
    assert strict_errors(document) == []
    if official_schema_path().exists():
        assert official_errors(document) == []
    assert check_workflow(document) == []
    assert result.reused == ["numbers"]
    assert set(result.reran) == {"square[0]", "square[1]", "square[2]", "square[3]", "total"}
    params = {p["name"]: p.get("value") for t in document["spec"]["templates"] if t["name"] == "main"
              for task in t["dag"]["tasks"] if task["name"] == "square"
              for p in task["arguments"]["parameters"]}  # fmt: skip
    assert params["power"] == "3"

    # the unchanged step's pod, through the real wrapper against the S3 store: same key, skipped
    original = _original_keys(archived["run_id"])
    argv, env = substitute(document, "numbers")
    pod = tmp_path / "pod-numbers"
    argv = [a.replace("=/work/", f"={pod}/") for a in argv]
    env = {**env, **archived["env"], "NSBIFLOW_STORE": STORE, "NSBIFLOW_STATE_DIR": str(pod / "state")}

    def must_not_run(*args: Any) -> int:
        raise AssertionError("the pod re-ran a step whose key is stored")

    monkeypatch.setattr(wrapper_module, "_run", must_not_run)
    monkeypatch.chdir(tmp_path)
    assert wrapper_module.pod_step_main(argv[3:], env) == 0
    assert (pod / "state" / "cached").read_text() == "true"
    assert (pod / "state" / "step-key").read_text() == original["numbers"]

    # a changed step's pod computes a new key (the patch reaches it), so it would run
    argv, env = substitute(document, "square", 0)
    pod = tmp_path / "pod-square"
    argv = [a.replace("=/work/", f"={pod}/") for a in argv]
    env = {**env, **archived["env"], "NSBIFLOW_STORE": STORE}
    step = PodStep.from_environment(argv[3:], env)
    contract = wrapper_module.parse_contract(step.definition, step.argv)
    numbers = store.read_manifest(archived["run_id"]).steps["numbers"].outputs["numbers"]
    for paths in contract.inputs.values():
        for path in paths:
            store.fetch(numbers, path)
    key = step.key(store, contract)
    assert key != original["square[0]"] and store.cache_lookup(key) is None


def test_reinterpret_target_argo_submits_to_the_server(
    archived: dict[str, Any], fake_argo: tuple[str, FakeArgo]  # noqa: F811
) -> None:
    url, state = fake_argo
    result = run_cli("reinterpret", "demo", "--patch", archived["patch"], "--store", STORE, "--target", "argo",
                     "--argo-server", url, "-n", NAMESPACE, "--json",
                     env={**archived["env"], "ARGO_TOKEN": TOKEN, "KUBECONFIG": "/nonexistent"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "submitted" and summary["workflow"] == "demo-fanout-abcde"
    assert summary["reused"] == ["numbers"]
    post = [r for r in state.requests if r["method"] == "POST"]
    assert len(post) == 1 and state.problems == []
    workflow = post[0]["workflow"]
    assert check_workflow(workflow) == []
    assert TOKEN not in json.dumps(workflow) and archived["env"]["AWS_SECRET_ACCESS_KEY"] not in json.dumps(workflow)
    assert yaml.safe_dump(workflow).count("NSBIFLOW_STORE") >= 3


def test_the_argo_target_needs_the_archive_in_the_cluster_store(tmp_path: Path, archived: dict[str, Any]) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("store: s3://elsewhere/store\nnodePools: {cpu: {}}\n")
    result = run_cli("reinterpret", "demo", "--patch", archived["patch"], "--store", STORE, "--target", "argo",
                     "--profile", profile, env=archived["env"])  # fmt: skip
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "s3://elsewhere/store" in result.stderr
