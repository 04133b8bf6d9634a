"""The whole install rendered for real: this chart plus the upstream argo-workflows and MinIO charts.

There is no network for ``helm dependency build``; ``../shared/vendor/charts/`` holds the real upstream charts,
packaged unchanged. The chart is copied to a temporary folder with those packages in its ``charts/`` and
rendered by real Helm (the Helm Go SDK of ``helm-python-sdk``) for every ``ci/*-values.yaml`` scenario. Every
object (the subcharts' too) is validated strictly; the values this chart hands the subcharts are checked to
take effect; no secret value appears outside a Secret; every pod meets the restricted Pod Security Standard.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    SCENARIOS,
    VENDOR_CHARTS,
    deep_merge,
    k8s_errors,
    missing_tool,
    scenario_values,
)

POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}  # fmt: skip


class Install:
    """One full render: files by path, objects with the chart (or subchart) that rendered them."""

    def __init__(self, files: dict[str, str], values: dict[str, Any]) -> None:
        self.files = files
        self.values = values
        self.objects: list[tuple[str, dict[str, Any]]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                continue
            owner = path.split("/templates/")[0]
            self.objects += [(owner, doc) for doc in yaml.safe_load_all(text) if doc]

    @property
    def notes(self) -> str:
        return next((t for p, t in self.files.items() if p == f"{CHART.name}/templates/NOTES.txt"), "")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for _, obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert found, f"no {kind} {name!r}; have {sorted(o['metadata']['name'] for o in self.of_kind(kind))}"
        return found[0]

    def owners(self) -> set[str]:
        return {owner for owner, _ in self.objects}


def vendored() -> dict[str, Path]:
    """Subchart name -> its vendored package."""
    found = {}
    for path in sorted(VENDOR_CHARTS.glob("*.tgz")):
        name, _, _version = path.stem.rpartition("-")
        found[name] = path
    return found


class FullChart:
    """The chart folder with the subcharts in ``charts/``; each render loads it afresh (Helm drops disabled
    subcharts from a loaded chart while rendering, so a loaded chart cannot be reused across scenarios)."""

    def __init__(self, helm: Any, folder: Path) -> None:
        self.helm = helm
        self.folder = folder

    def render(self, values: dict[str, Any], **options: Any) -> dict[str, str]:
        loaded = self.helm.Chart.load(str(self.folder))
        try:
            files: dict[str, str] = loaded.render(values, **options)
        finally:
            loaded.close()
        return files


@pytest.fixture(scope="session")
def full_chart(helm: Any, tmp_path_factory: pytest.TempPathFactory) -> FullChart:
    if not VENDOR_CHARTS.exists():
        missing_tool(f"the vendored upstream charts ({VENDOR_CHARTS})", "../shared/vendor/charts")
    folder = tmp_path_factory.mktemp("full-chart") / CHART.name
    shutil.copytree(CHART, folder)
    (folder / "charts").mkdir(exist_ok=True)
    for package in vendored().values():
        shutil.copy2(package, folder / "charts" / package.name)
    return FullChart(helm, folder)


@pytest.fixture(scope="session")
def install(full_chart: FullChart) -> Callable[..., Install]:
    def _render(scenario: str | None = None, extra: dict[str, Any] | None = None) -> Install:
        values = deep_merge(scenario_values(scenario) if scenario else {}, extra or {})
        files = full_chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return Install(files, values)

    return _render


@pytest.fixture(scope="session")
def installs(install: Callable[..., Install]) -> dict[str, Install]:
    return {name: install(name) for name in SCENARIOS}


def defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def effective(rendered: Install) -> dict[str, Any]:
    return deep_merge(defaults(), rendered.values)


# -- pins ---------------------------------------------------------------------------------------------------
def test_the_pinned_subcharts_are_the_rendered_ones() -> None:
    packages = vendored()
    if not packages:
        missing_tool(f"the vendored upstream charts ({VENDOR_CHARTS})", "../shared/vendor/charts")
    dependencies = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    pins = {d["name"]: d["version"] for d in dependencies}
    assert set(pins) == set(packages)
    for name, package in packages.items():
        expected = f"{name}-{pins[name]}.tgz"
        assert package.name == expected, f"Chart.yaml pins {name} {pins[name]}, the tests render {package.name}"


# -- every object, strictly ---------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_of_the_full_install_is_valid(scenario: str, installs: dict[str, Install],
                                                    argo_validators: dict[str, Any]) -> None:  # fmt: skip
    rendered = installs[scenario]
    wanted = {f"{CHART.name}"}
    if effective(rendered)["argo-workflows"]["enabled"]:
        wanted.add(f"{CHART.name}/charts/argo-workflows")
    if effective(rendered)["minio"]["enabled"]:
        wanted.add(f"{CHART.name}/charts/minio")
    assert rendered.owners() == wanted
    problems = []
    for owner, obj in rendered.objects:
        where = f"{owner}: {obj['kind']} {obj['metadata'].get('name')}"
        if obj["apiVersion"].startswith("argoproj.io/"):
            errors = list(argo_validators["strict"].iter_errors(obj))
            if errors:
                problems.append(f"{where}: {errors[0].message[:200]}")
            continue
        error = k8s_errors(obj)
        if error:
            problems.append(f"{where}: {error}")
    assert not problems, "\n".join(problems)


# -- values reach the subcharts -----------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_values_passed_to_argo_workflows_take_effect(scenario: str, installs: dict[str, Install]) -> None:
    rendered = installs[scenario]
    values = effective(rendered)
    if not values["argo-workflows"]["enabled"]:
        assert not rendered.of_kind("Deployment") or all("argo" not in o["metadata"]["name"]
                                                           for o in rendered.of_kind("Deployment"))  # fmt: skip
        pytest.skip("argo-workflows is not part of this scenario")
    server = f"{RELEASE}-argo-workflows-server"
    service = rendered.get("Service", server)
    assert [p["port"] for p in service["spec"]["ports"]] == [2746]
    assert f"svc/{server} 2746:2746" in rendered.notes
    assert f"svc/{server}" in (REPO / "docs" / "cluster.md").read_text(), "docs/cluster.md names another service"
    config = yaml.safe_load(rendered.get("ConfigMap", f"{RELEASE}-argo-workflows-workflow-controller-configmap")
                            ["data"]["config"])  # fmt: skip
    assert config["executor"]["securityContext"] == values["argo-workflows"]["executor"]["securityContext"]
    account = config["workflowDefaults"]["spec"]["serviceAccountName"]
    assert account == values["workflowServiceAccount"]["name"]
    rendered.get("ServiceAccount", account)
    roles = [o for o in rendered.of_kind("Role") if o["metadata"]["name"].startswith(RELEASE + "-argo-workflows")]
    assert roles, "singleNamespace: the controller gets Roles in the release namespace"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_artifact_repository_points_at_the_store(scenario: str, installs: dict[str, Install]) -> None:
    rendered = installs[scenario]
    values = effective(rendered)
    repo_values = values["s3"]["artifactRepository"]
    config_map = rendered.get("ConfigMap", repo_values["configMapName"])
    assert config_map["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == \
        repo_values["key"]  # fmt: skip
    s3 = yaml.safe_load(config_map["data"][repo_values["key"]])["s3"]
    assert s3["bucket"] == values["s3"]["bucket"]
    step_secret = values["s3"]["credentials"]["existingSecret"] or values["s3"]["credentials"]["secretName"]
    assert s3["accessKeySecret"]["name"] == s3["secretKeySecret"]["name"] == step_secret
    if values["minio"]["enabled"]:
        minio = rendered.get("Service", values["minio"]["fullnameOverride"])
        assert s3["endpoint"] == f"{minio['metadata']['name']}.{NAMESPACE}.svc:9000"
        assert [p["port"] for p in minio["spec"]["ports"]] == [9000]
        assert s3["endpoint"] in rendered.notes
    else:
        assert s3["endpoint"] == values["s3"]["endpoint"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_minio_gets_its_buckets_users_and_root_secret(scenario: str, installs: dict[str, Install]) -> None:
    rendered = installs[scenario]
    values = effective(rendered)
    if not values["minio"]["enabled"]:
        pytest.skip("MinIO is not part of this scenario")
    name = values["minio"]["fullnameOverride"]
    scripts = rendered.get("ConfigMap", name)["data"]
    assert re.search(rf"^createBucket {re.escape(values['s3']['bucket'])} ", scripts["initialize"], re.M)
    access = values["s3"]["credentials"]["accessKey"]
    step_secret = values["s3"]["credentials"]["secretName"]
    assert f"echo {access} > $MINIO_ACCESSKEY_SECRETKEY_TMP" in scripts["add-user"]
    assert f"/config/secrets/{step_secret}/secretKey" in scripts["add-user"]
    root_secret = values["s3"]["credentials"]["rootSecretName"]
    assert root_secret != step_secret
    server = rendered.get("Deployment", name)["spec"]["template"]["spec"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in server["containers"][0]["env"] if "valueFrom" in e}
    assert env["MINIO_ROOT_USER"] == {"name": root_secret, "key": "rootUser"}
    assert env["MINIO_ROOT_PASSWORD"] == {"name": root_secret, "key": "rootPassword"}
    assert set(rendered.get("Secret", root_secret)["data"]) == {"rootUser", "rootPassword"}
    assert set(rendered.get("Secret", step_secret)["data"]) == {"accessKey", "secretKey"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_step_pods_never_name_the_root_credentials(scenario: str, installs: dict[str, Install]) -> None:
    rendered = installs[scenario]
    root = effective(rendered)["s3"]["credentials"]["rootSecretName"]
    for owner, obj in rendered.objects:
        if owner == CHART.name and obj["kind"] != "Secret":
            assert root not in yaml.safe_dump(obj), f"{obj['kind']} {obj['metadata']['name']} names {root}"


# -- secrets ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_value_appears_outside_a_secret(scenario: str, install: Callable[..., Install]) -> None:
    known = "a-chosen-secret-key-3b9f1c"
    rendered = install(scenario, {"s3": {"credentials": {"secretKey": known}}})
    values = []
    for secret in rendered.of_kind("Secret"):
        values += [base64.b64decode(v).decode(errors="replace") for v in (secret.get("data") or {}).values()]
        values += list((secret.get("stringData") or {}).values())
    values = [v for v in values if len(v) >= 8 and v != effective(rendered)["s3"]["credentials"]["accessKey"]]
    if not effective(rendered)["s3"]["credentials"]["existingSecret"]:
        assert known in values
    for path, text in rendered.files.items():
        for doc in ([text] if path.endswith("NOTES.txt") else yaml.safe_load_all(text)):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                continue
            dumped = doc if isinstance(doc, str) else yaml.safe_dump(doc)
            leaked = [v[:4] for v in values if v in dumped]
            assert not leaked, f"{path}: a secret value appears outside a Secret ({leaked})"


# -- restricted Pod Security Standard ------------------------------------------------------------------------
def restricted_problems(pod: dict[str, Any], containers: list[dict[str, Any]], where: str) -> list[str]:
    """Violations of the restricted Pod Security Standard (Kubernetes' pod-security admission rules)."""
    problems = []
    context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{where}: {flag}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} of type {sorted(kinds)}")
    for container in containers:
        sc = container.get("securityContext") or {}
        cw = f"{where} container {container.get('name')}"
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{cw}: capabilities.drop lacks ALL")
        added = set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{cw}: adds capabilities {sorted(added)}")
        if not sc.get("runAsNonRoot", context.get("runAsNonRoot")):
            problems.append(f"{cw}: runAsNonRoot is not true")
        if sc.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{cw}: runs as uid 0")
        seccomp = (sc.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cw}: seccompProfile is {seccomp!r}")
    return problems


def pods(rendered: Install) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(where, pod spec, containers) of every pod the install can create, step pods included."""
    executor = None
    values = effective(rendered)
    if values["argo-workflows"]["enabled"]:
        config = rendered.get("ConfigMap", f"{RELEASE}-argo-workflows-workflow-controller-configmap")
        executor = yaml.safe_load(config["data"]["config"])["executor"]
    for owner, obj in rendered.objects:
        where = f"{owner}: {obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] in POD_OWNERS:
            spec = obj["spec"]["template"]["spec"]
            yield where, spec, [*spec.get("initContainers", []), *spec["containers"]]
        elif obj["kind"] == "WorkflowTemplate":
            spec = obj["spec"]
            for template in spec["templates"]:
                if "container" in template:
                    pod = {"securityContext": template.get("securityContext") or spec.get("securityContext"),
                           "volumes": [*(spec.get("volumes") or []), *(template.get("volumes") or [])]}  # fmt: skip
                    containers = [template["container"]]
                    if executor is not None:  # Argo's init and wait containers run beside the step
                        containers.append({"name": "argo-wait", "securityContext": executor["securityContext"]})
                    yield f"{where} template {template['name']}", pod, containers


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_meets_the_restricted_pod_security_standard(scenario: str, installs: dict[str, Install]) -> None:
    found = list(pods(installs[scenario]))
    assert len(found) >= 5
    problems = [p for where, pod, containers in found for p in restricted_problems(pod, containers, where)]
    assert not problems, "\n".join(problems)


def test_the_restricted_check_catches_a_loose_pod() -> None:
    pod = {"securityContext": {"runAsNonRoot": True}, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    problems = restricted_problems(pod, [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
                                   "pod")  # fmt: skip
    assert len(problems) == 5, problems


def test_the_namespace_is_labelled_for_the_restricted_standard(install: Callable[..., Install]) -> None:
    default = install("minimal")
    assert default.of_kind("Namespace") == []
    assert "pod-security.kubernetes.io/enforce=restricted" in default.notes
    labelled = install("minimal", {"podSecurity": {"createNamespace": True}})
    (namespace,) = labelled.of_kind("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert k8s_errors(namespace) is None


# -- network policy -----------------------------------------------------------------------------------------
def _egress(rendered: Install) -> list[dict[str, Any]]:
    return rendered.get("NetworkPolicy", f"{RELEASE}-workflow-egress")["spec"]["egress"]


def test_default_egress_is_dns_and_minio_only(install: Callable[..., Install]) -> None:
    rendered = install("minimal")
    rules = _egress(rendered)
    assert len(rules) == 2
    assert {p["port"] for p in rules[0]["ports"]} == {53}
    assert rules[1]["to"] == [{"podSelector": {"matchLabels": {"app": "minio", "release": RELEASE}}}]
    assert "ipBlock" not in yaml.safe_dump(rules)
    assert "networkPolicy.apiServer.cidrs" in rendered.notes


def test_the_api_server_address_comes_from_values(install: Callable[..., Install]) -> None:
    rendered = install("minimal", {"networkPolicy": {"apiServer": {"cidrs": ["172.18.0.2/32"]}}})
    rules = _egress(rendered)
    assert rules[-1]["to"] == [{"ipBlock": {"cidr": "172.18.0.2/32"}}]
    assert {p["port"] for p in rules[-1]["ports"]} == {443, 6443}
    assert "0.0.0.0/0" not in yaml.safe_dump(rules)


# -- security contexts cannot be loosened -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"containerSecurityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"containerSecurityContext": {"privileged": True}}, "privileged"),
        ({"containerSecurityContext": {"capabilities": {"drop": []}}}, "capabilities.drop must contain ALL"),
        ({"containerSecurityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}, "only NET_BIND_SERVICE"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"containerSecurityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}}, "RuntimeDefault or Localhost"),
    ],
)
def test_a_loosened_security_context_fails_the_render(full_chart: Any, extra: dict[str, Any], message: str) -> None:
    """The values schema or the chart's own check refuses it: a values file can tighten, never loosen."""
    with pytest.raises(Exception, match=re.escape(message)):
        full_chart.render(extra, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_root_and_step_credentials_cannot_share_a_secret(full_chart: Any) -> None:
    values = {"s3": {"credentials": {"rootSecretName": "nsbiflow-s3-credentials"}},
              "minio": {"existingSecret": "nsbiflow-s3-credentials"}}  # fmt: skip
    with pytest.raises(Exception, match="must be two Secrets"):
        full_chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


# -- image digests ------------------------------------------------------------------------------------------
def test_image_digests_pin_every_step_image(install: Callable[..., Install]) -> None:
    cpu, cuda = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    rendered = install("gpu", {"images": {"cpu": {"digest": cpu}, "cuda": {"digest": cuda}}})
    images = {t["container"]["image"] for wt in rendered.of_kind("WorkflowTemplate") for t in wt["spec"]["templates"]
              if "container" in t}  # fmt: skip
    assert images == {f"ghcr.io/nsbiflow/nsbiflow-cpu@{cpu}", f"ghcr.io/nsbiflow/nsbiflow-cuda@{cuda}"}
    profile = yaml.safe_load(rendered.get("ConfigMap", "nsbiflow-cluster-profile")["data"]["profile.yaml"])
    assert profile["images"] == {"cpu": f"ghcr.io/nsbiflow/nsbiflow-cpu@{cpu}",
                                 "cuda": f"ghcr.io/nsbiflow/nsbiflow-cuda@{cuda}"}  # fmt: skip
