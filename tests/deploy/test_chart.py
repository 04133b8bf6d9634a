"""The Helm chart renders offline with real Helm, lints, and every object it renders is valid and safe.

The upstream argo-workflows and minio dependencies are declared (pinned) in Chart.yaml but not vendored:
there is no network to their chart repositories here. Helm renders the parent chart without them (their
conditions stay on, so this chart's templates are exercised exactly as in a real install); on a machine
with network `helm dependency build charts/nsbiflow` fetches them.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, NAMESPACE, REPO, SCENARIOS, Rendered, k8s_errors, scenario_values

ARGO_KINDS = {"WorkflowTemplate", "Workflow", "ClusterWorkflowTemplate", "CronWorkflow"}
STEP_NAMES = sorted(p.stem for p in (CHART / "files" / "steps").glob("*.yaml"))
GPU = "nvidia.com/gpu"


def test_scenarios_exist() -> None:
    assert {"minimal", "gpu", "external-s3"} <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders_and_passes_values_schema(chart: Any, rendered_scenarios: dict[str, Rendered],
                                                  scenario: str) -> None:
    chart.validate_schema(scenario_values(scenario))
    rendered = rendered_scenarios[scenario]
    kinds = {o["kind"] for o in rendered.objects}
    assert {"ConfigMap", "Role", "RoleBinding", "ServiceAccount", "NetworkPolicy", "WorkflowTemplate"} <= kinds
    assert "nsbiflow submit" in rendered.notes


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_standard_object_passes_kubernetes_validate_strict(rendered_scenarios: dict[str, Rendered],
                                                                 scenario: str) -> None:
    problems = []
    for source, obj in rendered_scenarios[scenario].items:
        if obj["kind"] in ARGO_KINDS:
            continue
        error = k8s_errors(obj)
        if error:
            problems.append(f"{source}: {obj['kind']}/{obj['metadata']['name']}: {error}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_workflow_templates_pass_the_official_argo_schema(rendered_scenarios: dict[str, Rendered],
                                                          argo_validators: dict[str, Any], scenario: str) -> None:
    templates = rendered_scenarios[scenario].of_kind("WorkflowTemplate")
    assert templates
    problems = []
    for template in templates:
        for label, validator in argo_validators.items():
            for error in validator.iter_errors(template):
                where = "/".join(str(p) for p in error.absolute_path)
                problems.append(f"{label}: {template['metadata']['name']}: {where}: {error.message[:200]}")
    assert not problems, "\n".join(problems)


def test_strict_argo_schema_rejects_a_misspelt_field(rendered_scenarios: dict[str, Rendered],
                                                     argo_validators: dict[str, Any]) -> None:
    template = copy.deepcopy(rendered_scenarios["minimal"].of_kind("WorkflowTemplate")[0])
    template["spec"]["templates"][0]["retryStrateg"] = {"limit": 1}
    assert list(argo_validators["strict"].iter_errors(template))
    template = copy.deepcopy(rendered_scenarios["minimal"].of_kind("WorkflowTemplate")[0])
    template["spec"]["templates"][0]["container"]["resources"] = "lots"
    assert list(argo_validators["official"].iter_errors(template))


def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    bad = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automount": False}
    assert k8s_errors(bad)


def test_helm_lint_passes(helm: Any) -> None:
    for scenario in [None, *SCENARIOS]:
        values = scenario_values(scenario) if scenario else None
        report = helm.lint(str(CHART), values, namespace=NAMESPACE)
        assert not report["errors"], report
        serious = [m for m in report["messages"] if m["severity"] >= 2
                   and "missing these dependencies" not in m["error"]]  # not vendored: no network here
        assert not serious, f"{scenario}: {serious}"


def test_helm_lint_catches_a_broken_template(helm: Any, tmp_path: Path) -> None:
    broken = tmp_path / "nsbiflow"
    shutil.copytree(CHART, broken, ignore=shutil.ignore_patterns("charts"))
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata:\n  name: {{ .Values.nope.deeper }}\n")
    report = helm.lint(str(broken))
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])


def test_dependencies_are_pinned_and_switchable() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert set(deps) == {"argo-workflows", "minio"}
    for name, dep in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", dep["version"]), f"{name}: pin an exact version, not a range"
        assert dep["condition"] == f"{name}.enabled"
        assert dep["repository"].startswith("https://")


def test_every_value_is_documented() -> None:
    """helm-docs style: every value has a `# --` comment right above it, or sits inside a documented map/list."""
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    lines = (CHART / "values.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inherited = any(documented for _, documented in stack)
        if stripped.startswith("-"):
            if not inherited:
                undocumented.append(line)
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):(.*)$", stripped)
        if not match:
            continue
        documented = inherited or (index > 0 and lines[index - 1].strip().startswith("# --"))
        if match.group(2).strip() and not documented:
            undocumented.append(line)  # a leaf
        stack.append((indent, documented))
    assert not undocumented, "values without a `# --` comment:\n" + "\n".join(undocumented)


def test_values_schema_rejects_unsafe_or_misspelt_values(chart: Any, helm: Any) -> None:
    for bad in (
        {"podSecurityContext": {"runAsNonRoot": False}},
        {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
        {"nodePools": {"gpu": {"enabled": True, "gpusPerStep": 0}}},
        {"s3": {"endpoint": "http://minio:9000"}},  # host:port, no scheme
        {"stepTemplates": {"resourceOverrides": {"train-ratio": {"memory": "lots"}}}},
        {"imagesTypo": {}},
    ):
        with pytest.raises(helm.HelmError):
            chart.validate_schema(bad)


# ---------------------------------------------------------------- credentials


def _decoded_secret_values(rendered: Rendered) -> list[str]:
    return [base64.b64decode(v).decode() for s in rendered.of_kind("Secret") for v in s.get("data", {}).values()]


def test_no_secret_value_in_plain_text(render: Any) -> None:
    known = "Sup3r-S3cret-Value-0123456789"
    rendered = render({"s3": {"credentials": {"secretKey": known}}})
    assert known not in rendered.text, "a secret value appears in plain text in the rendered chart"
    secret = rendered.get("Secret", "nsbiflow-s3-credentials")
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["secretKey"]).decode() == known
    # every generated value (root password too) exists only base64-encoded in the Secret
    for value in _decoded_secret_values(rendered):
        if value != "nsbiflow":  # the access key id is an identifier, also named in minio.users
            assert value not in rendered.text


def test_generated_credentials_are_random_and_never_in_values(render: Any) -> None:
    values_text = (CHART / "values.yaml").read_text()
    assert re.search(r"^\s*secretKey:\s*\"\"\s*$", values_text, re.M), "secretKey must default to empty"
    first = render({}).get("Secret", "nsbiflow-s3-credentials")["data"]
    second = render({}).get("Secret", "nsbiflow-s3-credentials")["data"]
    assert first["secretKey"] != second["secretKey"]  # random (kept on upgrade through `lookup` on a cluster)
    assert len(base64.b64decode(first["secretKey"])) >= 32
    root = render({}).get("Secret", "nsbiflow-minio-root")["data"]
    assert set(first) == {"accessKey", "secretKey"} and set(root) == {"rootUser", "rootPassword"}
    assert len(base64.b64decode(root["rootPassword"])) >= 32


def test_existing_secret_is_referenced_not_generated(rendered_scenarios: dict[str, Rendered]) -> None:
    rendered = rendered_scenarios["external-s3"]
    assert not rendered.of_kind("Secret")
    repo = yaml.safe_load(rendered.get("ConfigMap", "artifact-repositories")["data"]["nsbiflow-s3"])
    assert repo["s3"]["accessKeySecret"] == {"name": "analysis-s3-credentials", "key": "accessKey"}
    assert repo["s3"]["secretKeySecret"] == {"name": "analysis-s3-credentials", "key": "secretKey"}
    assert repo["s3"]["insecure"] is False
    assert repo["s3"]["endpoint"] == "s3.eu-central-1.amazonaws.com"
    for template in rendered.of_kind("WorkflowTemplate"):
        env = template["spec"]["templates"][0]["container"]["env"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
        assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "analysis-s3-credentials", "key": "secretKey"}
        assert all("value" not in e for e in env if e["name"].startswith("AWS_") and "KEY" in e["name"])


def test_artifact_repository_configmap(rendered_scenarios: dict[str, Rendered]) -> None:
    cm = rendered_scenarios["minimal"].get("ConfigMap", "artifact-repositories")
    key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    repo = yaml.safe_load(cm["data"][key])
    s3 = repo["s3"]
    assert s3["endpoint"] == f"nsbiflow-minio.{NAMESPACE}.svc:9000"
    assert s3["bucket"] == "nsbiflow" and s3["insecure"] is True
    assert s3["keyFormat"] == "argo/{{workflow.namespace}}/{{workflow.name}}/{{pod.name}}"
    assert s3["accessKeySecret"] == {"name": "nsbiflow-s3-credentials", "key": "accessKey"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"minio": {"enabled": False}}, "set s3.endpoint"),
        ({"minio": {"enabled": False}, "s3": {"endpoint": "s3.example.org"}}, "s3.credentials.existingSecret"),
        ({"s3": {"bucket": "other-bucket"}}, "not in minio.buckets"),
        ({"s3": {"credentials": {"accessKey": "someone"}}}, "not one of minio.users"),
        ({"minio": {"existingSecret": "elsewhere"}}, "minio.existingSecret"),
    ],
)
def test_inconsistent_values_fail_with_one_clear_line(render: Any, helm: Any, values: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


# ---------------------------------------------------------------- RBAC, pods, network


def test_workflow_role_is_least_privilege(rendered_scenarios: dict[str, Rendered]) -> None:
    for rendered in rendered_scenarios.values():
        role = rendered.get("Role", "nsbiflow-executor")
        assert role["rules"] == [
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
        ]
        binding = rendered.get("RoleBinding", "nsbiflow-executor")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nsbiflow-workflow", "namespace": NAMESPACE}]
        assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")
        for role in rendered.of_kind("Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"]
                assert "secrets" not in rule["resources"] and "pods/exec" not in rule["resources"]


def _step_templates(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["labels"]["nsbiflow.io/step"]: t for t in rendered.of_kind("WorkflowTemplate")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_step_pods_are_non_root_read_only_and_unprivileged(rendered_scenarios: dict[str, Rendered],
                                                           scenario: str) -> None:
    templates = _step_templates(rendered_scenarios[scenario])
    assert sorted(templates) == STEP_NAMES
    for name, wt in templates.items():
        (tpl,) = wt["spec"]["templates"]
        pod, container = tpl["securityContext"], tpl["container"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert container["allowPrivilegeEscalation"] is False, name
        assert container["readOnlyRootFilesystem"] is True, name
        assert container.get("privileged", False) is False, name
        assert container["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in tpl["container"]["volumeMounts"]}
        volumes = {v["name"]: v for v in tpl["volumes"]}
        assert "emptyDir" in volumes[mounts["/work"]] and "emptyDir" in volumes[mounts["/tmp"]], name
        assert tpl["container"]["workingDir"] == "/work"
        assert wt["spec"]["serviceAccountName"] == tpl["serviceAccountName"] == "nsbiflow-workflow"


def test_step_template_matches_its_step_definition(rendered_scenarios: dict[str, Rendered]) -> None:
    templates = _step_templates(rendered_scenarios["minimal"])
    for path in sorted((CHART / "files" / "steps").glob("*.yaml")):
        step = yaml.safe_load(path.read_text())
        (tpl,) = templates[step["name"]]["spec"]["templates"]
        container = tpl["container"]
        assert container["command"] == ["nsbiflow", "pod-step", "--", *step["command"]]  # storeEnv: the wrapper
        args = container.get("args", [])
        for pname in step.get("parameters", {}):
            assert f"{pname}={{{{inputs.parameters.{pname}}}}}" in args
        inputs = {a["name"]: a for a in tpl.get("inputs", {}).get("artifacts", [])}
        assert set(inputs) == set(step.get("inputs", {}))
        for iname, spec in step.get("inputs", {}).items():
            assert f"{iname}=/work/in/{iname}" in args
            assert inputs[iname].get("optional", False) == bool((spec or {}).get("optional"))
        outputs = {a["name"] for a in tpl.get("outputs", {}).get("artifacts", [])}
        assert outputs == set(step.get("outputs", {}))
        retries = (step.get("retries") or {}).get("limit", 0)
        assert (tpl.get("retryStrategy", {}).get("limit", 0)) == retries
        if step.get("timeout"):
            assert tpl["activeDeadlineSeconds"] >= step["timeout"]
        params = {p["name"]: p for p in tpl.get("inputs", {}).get("parameters", [])}
        for pname, spec in step.get("parameters", {}).items():
            if spec.get("default") is not None:
                value, expected = params[pname]["value"], spec["default"]
                rendered = value if isinstance(expected, str) else yaml.safe_load(value)
                assert rendered == expected, (step["name"], pname)


def test_cpu_scenario_requests_no_gpu(rendered_scenarios: dict[str, Rendered]) -> None:
    for wt in rendered_scenarios["minimal"].of_kind("WorkflowTemplate"):
        (tpl,) = wt["spec"]["templates"]
        assert GPU not in str(tpl["container"]["resources"])
        assert "-cpu:" in tpl["container"]["image"]


def test_gpu_scenario_puts_gpu_steps_on_the_gpu_pool(rendered_scenarios: dict[str, Rendered]) -> None:
    values = scenario_values("gpu")
    gpu_pool = values["nodePools"]["gpu"]
    templates = _step_templates(rendered_scenarios["gpu"])
    asks_gpu = set()
    for path in (REPO / "steps").glob("*/step.yaml"):
        resources = (yaml.safe_load(path.read_text()) or {}).get("resources") or {}
        if resources.get("gpu") or resources.get("node_pool") == "gpu":
            asks_gpu.add(path.parent.name)
    on_gpu = set(gpu_pool["steps"]) | asks_gpu  # the values' list, and every step whose step.yaml asks for a GPU
    assert "train-ratio" in on_gpu
    for name, wt in templates.items():
        (tpl,) = wt["spec"]["templates"]
        resources = tpl["container"]["resources"]
        if name in on_gpu:
            assert resources["limits"][GPU] == str(gpu_pool["gpusPerStep"]), name
            assert tpl["nodeSelector"] == gpu_pool["nodeSelector"], name
            assert tpl["tolerations"] == gpu_pool["tolerations"], name
            assert "-cuda:" in tpl["container"]["image"], name
            assert wt["metadata"]["labels"]["nsbiflow.io/node-pool"] == "gpu"
        else:
            assert GPU not in resources.get("limits", {}), name
            assert tpl["nodeSelector"] == values["nodePools"]["cpu"]["nodeSelector"], name
            assert "tolerations" not in tpl, name
    train = templates["train-ratio"]["spec"]["templates"][0]["container"]["resources"]
    assert train["requests"]["cpu"] == "4" and train["requests"]["memory"] == "16Gi"  # resourceOverrides


def test_image_digest_pins_the_image(render: Any) -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render({"images": {"cpu": {"digest": digest}}})
    images = {t["spec"]["templates"][0]["container"]["image"] for t in rendered.of_kind("WorkflowTemplate")}
    assert images == {f"ghcr.io/nsbiflow/nsbiflow-cpu@{digest}"}


def test_network_policies_default_deny_then_dns_and_s3(rendered_scenarios: dict[str, Rendered]) -> None:
    for scenario, rendered in rendered_scenarios.items():
        policies = {p["metadata"]["name"]: p["spec"] for p in rendered.of_kind("NetworkPolicy")}
        deny = policies["nsbiflow-workflow-default-deny"]
        assert deny["podSelector"]["matchExpressions"][0]["key"] == "workflows.argoproj.io/workflow"
        assert set(deny["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in deny and "egress" not in deny
        egress = policies["nsbiflow-workflow-egress"]["egress"]
        ports = [{p["port"] for p in rule["ports"]} for rule in egress]
        assert {53} in ports, scenario
        if scenario == "external-s3":
            assert any(r["to"][0].get("ipBlock", {}).get("cidr") == "52.219.0.0/16" for r in egress)
        else:
            assert {9000} in ports, scenario
        assert not any("ingress" in spec for name, spec in policies.items() if "fitservice" not in name)


# ---------------------------------------------------------------- the step catalog


def test_chart_step_catalog_is_in_sync_with_steps() -> None:
    """charts/nsbiflow/files/steps/<name>.yaml are copies of steps/<name>/step.yaml (Helm reads only the chart).

    Regenerate with NSBIFLOW_UPDATE_CHART_STEPS=1 (refused in CI).
    """
    sources = {p.parent.name: p for p in sorted((REPO / "steps").glob("*/step.yaml"))}
    if not sources:
        pytest.skip("no steps/*/step.yaml in the repository yet; the chart ships its own catalog copy")
    target = CHART / "files" / "steps"
    if os.environ.get("NSBIFLOW_UPDATE_CHART_STEPS"):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("NSBIFLOW_UPDATE_CHART_STEPS is refused in CI")
        for old in target.glob("*.yaml"):
            old.unlink()
        for name, source in sources.items():
            shutil.copyfile(source, target / f"{name}.yaml")
    copies = {p.stem: p for p in sorted(target.glob("*.yaml"))}
    assert set(copies) == set(sources), (
        f"chart catalog {sorted(copies)} != steps/ {sorted(sources)}; "
        "run NSBIFLOW_UPDATE_CHART_STEPS=1 pytest tests/deploy"
    )
    stale = [n for n in sources if copies[n].read_bytes() != sources[n].read_bytes()]
    assert not stale, f"stale chart copies: {stale}; run NSBIFLOW_UPDATE_CHART_STEPS=1 pytest tests/deploy"


def test_chart_step_catalog_matches_the_step_model() -> None:
    models = pytest.importorskip("nsbiflow.spec.models")
    for path in sorted((CHART / "files" / "steps").glob("*.yaml")):
        step = models.StepDefinition.model_validate(yaml.safe_load(path.read_text()))
        assert step.name == path.stem


def test_step_templates_follow_the_step_contract(render: Any) -> None:
    """The chart's WorkflowTemplates are Helm's rendering of the contract: checked against its one owner."""
    from nsbiflow.backends.argo.wrapper import PodStep, parse_contract
    from nsbiflow.engine.contract import contract_environment
    from nsbiflow.spec.models import StepDefinition

    for scenario, extra in (("minimal", {}), ("gpu", {"stepTemplates": {"storeEnv": False}})):
        templates = _step_templates(render(scenario=scenario, extra=extra))
        for path in sorted((CHART / "files" / "steps").glob("*.yaml")):
            definition = StepDefinition.model_validate(yaml.safe_load(path.read_text()))
            (tpl,) = templates[definition.name]["spec"]["templates"]
            container = tpl["container"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            gpu = any(k.endswith("gpu") for k in container["resources"]["limits"])
            contract = contract_environment(cpu_cores=definition.resources.cpu_cores, gpu=int(gpu),
                                            step_id=definition.name, run_id="{{workflow.name}}",
                                            declared={k: v for k, v in definition.env.items() if v is not None})
            for name, value in contract.items():
                if name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NSBIFLOW_NUM_THREADS"):
                    assert int(env[name]) >= 1, (definition.name, name)
                else:
                    assert env.get(name) == value, (definition.name, name, env.get(name))
            if scenario == "minimal":
                step = PodStep.from_environment(container["command"][3:] + container.get("args", []),
                                                {k: v or "" for k, v in env.items()})  # fmt: skip
                assert step.definition == definition
                parse_contract(step.definition, step.argv)
                assert step.environment is not None and "AWS_SECRET_ACCESS_KEY" not in step.environment
            else:
                assert container["command"] == definition.command
                assert not [n for n in env if n.startswith("AWS_")], "no credentials without the wrapper"
