"""The Argo compiler: DAG shape, fan-out, artifacts, resources, node pools, hardening, provenance, secrets."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from nsbiflow.backends.argo import ProfileError, compile_to_dict, compile_to_yaml, load_profile
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.engine.plan import load_plan
from tests.argo.conftest import WORKFLOWS, compile_file, tasks, templates

DEMO = WORKFLOWS / "examples" / "demo-fanout.yaml"


def test_demo_dag_fan_out_and_fan_in() -> None:
    plan, wf = compile_file(DEMO)
    dag = tasks(wf)
    assert list(dag) == ["numbers", "square", "total"]
    assert len(dag["square"]["withItems"]) == len(plan.templates["square"]) == 4
    assert dag["square"]["dependencies"] == ["numbers"] and dag["total"]["dependencies"] == ["square"]
    # varying parameter travels in the items, constant ones are literal
    args = {p["name"]: p["value"] for p in dag["square"]["arguments"]["parameters"]}
    assert args["chunk"] == "{{item.p_chunk}}" and args["chunks"] == "4" and args["power"] == "2"
    assert [item["p_chunk"] for item in dag["square"]["withItems"]] == ["0", "1", "2", "3"]
    # fan-in: one key-only S3 artifact per upstream instance, the same keys the upstream writes
    keys = [a["s3"] for a in dag["total"]["arguments"]["artifacts"]]
    assert keys == [{"key": f"nsbiflow/{{{{workflow.name}}}}/square/{i}/partial.tgz"} for i in range(4)]
    square = templates(wf)["square"]
    assert square["outputs"]["artifacts"][0]["s3"] == {
        "key": "nsbiflow/{{workflow.name}}/square/{{inputs.parameters.nsbiflow-slug}}/partial.tgz"}
    total = templates(wf)["total"]
    assert [a["path"] for a in total["inputs"]["artifacts"]] == [f"/work/in/partials/{i}" for i in range(4)]
    assert wf["spec"]["artifactRepositoryRef"] == {"configMap": "artifact-repositories", "key": "nsbiflow-s3"}


def test_step_contract_command_through_the_wrapper() -> None:
    _, wf = compile_file(DEMO)
    container = templates(wf)["square"]["container"]
    assert container["command"] == ["nsbiflow", "pod-step", "--"]
    assert container["args"] == ["python", "-m", "nsbiflow.demo", "square",
                                 "--param", "chunk={{inputs.parameters.chunk}}",
                                 "--param", "chunks={{inputs.parameters.chunks}}",
                                 "--param", "power={{inputs.parameters.power}}",
                                 "--in", "numbers=/work/in/numbers/numbers.txt",
                                 "--out", "partial=/work/out/partial"]  # fmt: skip


def test_gpu_step_resources_pool_and_fan_out(gpu_workflow: Path) -> None:
    plan, wf = compile_file(gpu_workflow)
    train = templates(wf)["train"]
    resources = train["container"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" and resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["requests"]["cpu"] == "4" and resources["limits"]["memory"] == "16Gi"
    assert train["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in train["tolerations"]
    assert train["metadata"]["labels"]["nsbiflow.io/node-pool"] == "gpu"
    assert len(tasks(wf)["train"]["withItems"]) == len(plan.templates["train"]) == 5
    assert [i["step"] for i in tasks(wf)["train"]["withItems"]] == plan.templates["train"]
    assert len(tasks(wf)["gather"]["arguments"]["artifacts"]) == 5
    gather = templates(wf)["gather"]
    assert "nodeSelector" not in gather and "nvidia.com/gpu" not in gather["container"]["resources"]["limits"]
    assert gather["container"]["resources"]["requests"]["cpu"] == "500m"
    # retries as IntOrString strings, deadline from timeout
    assert train["retryStrategy"]["limit"] == "2" and train["retryStrategy"]["backoff"]["duration"] == "5s"
    assert train["activeDeadlineSeconds"] == "3600"


def test_toy_nsbi_gpu_training_when_present() -> None:
    path = WORKFLOWS / "toy-nsbi.yaml"
    if not path.exists():
        pytest.skip("workflows/toy-nsbi.yaml is not written yet")
    plan, wf = compile_file(path)
    gpu = [t for t, ids in plan.templates.items() if plan.steps[ids[0]].resources.gpu > 0]
    assert gpu, "toy-nsbi.yaml has no GPU step"
    for name in gpu:
        template = templates(wf)[name.replace("_", "-")]
        assert "nvidia.com/gpu" in template["container"]["resources"]["limits"]
        assert template["nodeSelector"] and template["tolerations"]
    for name, ids in plan.templates.items():
        task = tasks(wf)[name.replace("_", "-")]
        assert len(task.get("withItems", [None])) == len(ids)


def test_pod_hardening_and_provenance() -> None:
    plan, wf = compile_file(DEMO)
    spec = wf["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert {v["name"] for v in spec["volumes"]} == {"work", "tmp"}
    assert all("emptyDir" in v for v in spec["volumes"])
    for template in spec["templates"][1:]:
        container = template["container"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/work", "/tmp"} <= mounts and container["workingDir"] == "/work"
        assert all(a["path"].startswith("/work/") for a in template.get("outputs", {}).get("artifacts", []))
        assert template["metadata"]["annotations"]["nsbiflow.io/step-definition"].startswith("sha256:")
        assert {p["name"] for p in template["outputs"]["parameters"]} == {"step-key", "cached"}
    meta = wf["metadata"]
    assert meta["annotations"]["nsbiflow.io/workflow-digest"] == plan.digest
    assert plan.digest.split(":")[1].startswith(meta["labels"]["nsbiflow.io/workflow-digest"])
    assert meta["generateName"] == "demo-fanout-"


def test_no_secret_values_in_compiled_output(monkeypatch: pytest.MonkeyPatch, gpu_workflow: Path) -> None:
    sentinels = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-sentinel-value", "AWS_ACCESS_KEY_ID": "akid-sentinel",
                 "ARGO_TOKEN": "token-sentinel-value", "MINIO_SECRET_KEY": "minio-sentinel"}  # fmt: skip
    for key, value in sentinels.items():
        monkeypatch.setenv(key, value)
    for path in (DEMO, gpu_workflow):
        text = compile_to_yaml(load_plan(path))
        assert not any(value in text for value in sentinels.values())
        for template in yaml.safe_load(text)["spec"]["templates"][1:]:
            env = {e["name"]: e for e in template["container"]["env"]}
            for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
                assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"]


def test_both_schemas_accept_compiled_and_strict_rejects_unknown(gpu_workflow: Path) -> None:
    for path in (DEMO, gpu_workflow):
        _, wf = compile_file(path)
        assert strict_errors(wf) == []
        if official_schema_path().exists():
            assert official_errors(wf) == []
    wf["spec"]["templates"][1]["container"]["imagePullPolcy"] = "Always"
    assert any("imagePullPolcy" in e for e in strict_errors(wf))


def test_profile_from_chart_configmap(tmp_path: Path, gpu_workflow: Path) -> None:
    profile = tmp_path / "profile.yaml"
    inner = textwrap.dedent("""
        namespace: physics
        serviceAccountName: nsbiflow-workflow
        artifactRepositoryRef: {configMap: repos, key: minio}
        store: "s3://bucket/store"
        images: {cpu: "registry.local/step-cpu@sha256:aaaa", cuda: "registry.local/step-cuda@sha256:bbbb"}
        stepTemplatePrefix: "nsbiflow-"
        nodePools:
          cpu: {nodeSelector: {pool: cpu}, tolerations: []}
          gpu:
            nodeSelector: {pool: a100}
            tolerations: [{key: gpu, operator: Equal, value: "yes", effect: NoSchedule}]
            gpuResource: nvidia.com/gpu
        securityContext: {pod: {runAsNonRoot: true, runAsUser: 10001}, container: {}}
    """)
    profile.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"},
                                       "data": {"profile.yaml": inner}}))  # fmt: skip
    assert load_profile(profile).namespace == "physics"
    _, wf = compile_file(gpu_workflow, profile)
    assert wf["metadata"]["namespace"] == "physics"
    assert wf["spec"]["artifactRepositoryRef"] == {"configMap": "repos", "key": "minio"}
    train, events = templates(wf)["train"], templates(wf)["events"]
    assert train["nodeSelector"] == {"pool": "a100"} and events["nodeSelector"] == {"pool": "cpu"}
    assert train["container"]["image"].endswith("step-cuda@sha256:bbbb")
    assert events["container"]["image"].endswith("step-cpu@sha256:aaaa")
    assert strict_errors(wf) == []


def test_gpu_step_without_gpu_pool_is_one_clear_error(tmp_path: Path, gpu_workflow: Path) -> None:
    profile = tmp_path / "cpu-only.yaml"
    profile.write_text("nodePools: {cpu: {}}\n")
    with pytest.raises(ProfileError, match="no node pool 'gpu'"):
        compile_file(gpu_workflow, profile)
    profile.write_text("nodePools: {cpu: {}, gpu: {nodeSelector: {a: b}}}\n")
    with pytest.raises(ProfileError, match="has no GPUs"):
        compile_file(gpu_workflow, profile)


def test_input_files_are_read_from_the_store_by_digest(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_text("1,2,3\n")
    workflow = tmp_path / "files.yaml"
    workflow.write_text(textwrap.dedent("""
        apiVersion: nsbiflow/v1
        kind: Workflow
        metadata: {name: files}
        steps:
          total:
            run:
              image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
              command: [python, -m, nsbiflow.demo, total]
              inputs: {partials: {kind: file, multiple: true}}
              outputs: {total: {kind: file, filename: total.json}}
            inputs: {partials: {path: events.csv}}
    """))
    _, wf = compile_file(workflow)
    from nsbiflow.store.digest import digest_file

    hexdigest = digest_file(data).split(":")[1]
    artifact = tasks(wf)["total"]["arguments"]["artifacts"][0]
    assert artifact == {"name": "partials-0", "s3": {"key": f"store/blobs/sha256/{hexdigest[:2]}/{hexdigest}"}}
    assert templates(wf)["total"]["inputs"]["artifacts"][0]["path"] == "/work/in/partials/0/events.csv"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"container": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation must be false"),
        ({"container": {"privileged": True}}, "privileged must not be true"),
        ({"container": {"capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}}}, "only NET_BIND_SERVICE"),
        ({"container": {"capabilities": {"drop": []}}}, "drop must contain ALL"),
        ({"pod": {"runAsNonRoot": False}, "container": {"runAsNonRoot": False}}, "runAsNonRoot must be true"),
        ({"pod": {"runAsUser": 0}}, "runAsUser must not be 0"),
        ({"pod": {"seccompProfile": {"type": "Unconfined"}}}, "RuntimeDefault or Localhost"),
    ],
)
def test_a_profile_cannot_loosen_the_pod_security(tmp_path: Path, context: dict, message: str) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(yaml.safe_dump({"securityContext": context, "nodePools": {"cpu": {}}}))
    with pytest.raises(ProfileError, match=re.escape(message)):
        compile_to_dict(load_plan(DEMO), profile_path=profile)


def test_a_profile_may_tighten_the_pod_security(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text("securityContext: {container: {runAsUser: 20000}, pod: {runAsGroup: 20000}}\n"
                       "nodePools: {cpu: {}}\n")
    document = compile_to_dict(load_plan(DEMO), profile_path=profile)
    container = next(t for t in document["spec"]["templates"] if "container" in t)["container"]
    assert container["securityContext"]["runAsUser"] == 20000
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert document["spec"]["securityContext"]["runAsGroup"] == 20000
