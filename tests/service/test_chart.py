"""The chart deploys the fit service: rendered by real Helm, validated by kubernetes-validate --strict."""

from __future__ import annotations

from typing import Any

import pytest

from ..deploy.conftest import k8s_errors, scenario_values

NAME = "nsbiflow-fitservice"


def _objects(rendered: Any) -> list[dict[str, Any]]:
    return [obj for path, obj in rendered.items if "fitservice" in path]


def test_off_by_default(render: Any) -> None:
    assert not _objects(render({}))


def test_the_scenario_renders_valid_strict_objects(render: Any, chart: Any) -> None:
    chart.validate_schema(scenario_values("fitservice"))
    objects = _objects(render(scenario="fitservice"))
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [("Deployment", NAME), ("NetworkPolicy", NAME), ("NetworkPolicy", f"{NAME.split('-')[0]}-workflow-"
                     "to-fitservice"), ("Service", NAME), ("ServiceAccount", NAME)]
    problems = [f"{o['kind']}/{o['metadata']['name']}: {e}" for o in objects if (e := k8s_errors(o))]
    assert not problems, "\n".join(problems)


def test_pods_are_non_root_read_only_with_probes_and_the_token_as_a_file(render: Any) -> None:
    rendered = render(scenario="fitservice")
    deployment = rendered.get("Deployment", NAME)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["command"] == ["nsbiflow", "serve"]
    assert "--token-file=/var/run/secrets/nsbiflow-fit/token" in container["args"]
    assert "--workers=4" in container["args"] and "--preload=toy-nsbi:workspace" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "nsbiflow-fit-token"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/run/secrets/nsbiflow-fit"]["readOnly"] is True
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]] and "emptyDir" in volumes[mounts["/dev/shm"]["name"]]
    env = {e["name"]: e for e in container["env"]}
    assert env["NSBIFLOW_STORE"]["value"] == "s3://nsbiflow/store"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"] and not any("TOKEN" in name for name in env)
    service = rendered.get("Service", NAME)
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 8700
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_gpu_pool_or_cpu_pool(render: Any) -> None:
    values = scenario_values("fitservice")
    gpu = render(scenario="fitservice").get("Deployment", NAME)["spec"]["template"]["spec"]
    (container,) = gpu["containers"]
    assert "-cuda:" in container["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["nodeSelector"] == values["nodePools"]["gpu"]["nodeSelector"]
    assert gpu["tolerations"] == values["nodePools"]["gpu"]["tolerations"]
    cpu = render({"fitService": {"enabled": True, "token": {"existingSecret": "t"}}}).get("Deployment", NAME)
    (container,) = cpu["spec"]["template"]["spec"]["containers"]
    assert "-cpu:" in container["image"] and "nvidia.com/gpu" not in str(container["resources"])
    assert "tolerations" not in cpu["spec"]["template"]["spec"]


def test_network_policy_lets_in_only_clients_and_lets_out_only_dns_and_s3(render: Any) -> None:
    rendered = render(scenario="fitservice")
    policy = rendered.get("NetworkPolicy", NAME)["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8700}]
    sources = ingress["from"]
    assert sources[0]["podSelector"]["matchExpressions"][0]["key"] == "workflows.argoproj.io/workflow"
    assert sources[1] == {"podSelector": {"matchLabels": {"nsbiflow.io/fit-client": "true"}}}
    assert sources[2]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "analysis-notebooks"}
    assert [{p["port"] for p in rule["ports"]} for rule in policy["egress"]] == [{53}, {9000}]
    to_service = rendered.get("NetworkPolicy", "nsbiflow-workflow-to-fitservice")["spec"]
    assert to_service["policyTypes"] == ["Egress"]
    assert to_service["egress"][0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "fitservice"
    closed = render(scenario="fitservice", extra={"fitService": {"networkPolicy": {"allowWorkflows": False}}})
    names = {p["metadata"]["name"] for p in closed.of_kind("NetworkPolicy")}
    assert NAME in names and "nsbiflow-workflow-to-fitservice" not in names


def test_enabled_without_a_token_secret_fails_in_one_line(render: Any, helm: Any) -> None:
    # the values schema names the field first (the template's own `fail` covers --skip-schema-validation)
    with pytest.raises(helm.HelmError, match=r"fitService[./]token[./]existingSecret"):
        render({"fitService": {"enabled": True}})


@pytest.mark.parametrize("bad", [
    {"fitService": {"port": "http"}},
    {"fitService": {"workers": -1}},
    {"fitService": {"preload": ["/etc/passwd"]}},
    {"fitService": {"resources": {"requests": {"memory": "lots"}}}},
    {"fitService": {"tokn": {}}},
    {"fitService": {"enabled": True, "token": {"existingSecret": "", "key": "token"}}},
])
def test_values_schema_rejects_bad_fit_service_values(chart: Any, helm: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        chart.validate_schema(bad)
