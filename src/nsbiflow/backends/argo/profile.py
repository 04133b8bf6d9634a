"""The cluster profile: what the Argo compiler needs to know about one Kubernetes installation.

A profile is a small YAML file (or the ``profile.yaml`` key of the ``nsbiflow-cluster-profile`` ConfigMap
the Helm chart renders): node pools (nodeSelector, tolerations, GPU resource name), the artifact
repository, the store, the S3 endpoint and the *name* of the Secret with the credentials (never the
credentials themselves), images, and the pod security context. Without ``--profile`` the built-in
default applies: a ``cpu`` pool and a ``gpu`` pool (NVIDIA), matching the chart's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nsbiflow.backends.argo.sharding import FanOutLimits
from nsbiflow.errors import NsbiflowError
from nsbiflow.spec.models import parse_quantity


class ProfileError(NsbiflowError):
    """The cluster profile is invalid, or the workflow asks for something the profile lacks."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodePool(_Model):
    """One node pool: how pods are steered onto it and whether it has GPUs."""

    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    gpu_resource: str | None = Field(None, alias="gpuResource", description="extended resource of one GPU; "
                                     "unset: the pool has no GPUs")  # fmt: skip
    gpu_memory: str | None = Field(None, alias="gpuMemory", description="memory of one GPU (e.g. 80Gi): "
                                   "sizes the members trained per pod (sharding.members_per_pod)")  # fmt: skip


class ArtifactRepositoryRef(_Model):
    """Argo's ``artifactRepositoryRef``: a key in a ConfigMap of artifact repositories."""

    config_map: str = Field("artifact-repositories", alias="configMap")
    key: str = "nsbiflow-s3"


class S3Access(_Model):
    """How step pods reach the store: the endpoint and the *name* of the credentials Secret."""

    endpoint: str | None = Field(None, description="http(s)://host:port; default: the chart's MinIO service")
    region: str = "us-east-1"
    secret_name: str = Field("nsbiflow-s3-credentials", alias="secretName")
    access_key_key: str = Field("accessKey", alias="accessKeyKey")
    secret_key_key: str = Field("secretKey", alias="secretKeyKey")


class Images(_Model):
    """Cluster step images; when set they replace the image of every nsbiflow step image (CUDA on GPU steps)."""

    cpu: str | None = None
    cuda: str | None = None


class SecurityContexts(_Model):
    """Pod and container security contexts (Kubernetes field names); empty means the secure default."""

    pod: dict[str, Any] = Field(default_factory=dict)
    container: dict[str, Any] = Field(default_factory=dict)


class ClusterProfile(_Model):
    """Everything cluster-specific the compiled Workflow depends on."""

    namespace: str = "nsbiflow"
    service_account_name: str | None = Field("nsbiflow-workflow", alias="serviceAccountName")
    artifact_repository_ref: ArtifactRepositoryRef = Field(default_factory=ArtifactRepositoryRef,
                                                           alias="artifactRepositoryRef")  # fmt: skip
    artifact_prefix: str = Field("nsbiflow", alias="artifactPrefix",
                                 description="key prefix of the step artifacts in the artifact repository")  # fmt: skip
    store: str | None = Field("s3://nsbiflow/store", description="NSBIFLOW_STORE of step pods (step-key cache)")
    s3: S3Access = Field(default_factory=S3Access)
    images: Images = Field(default_factory=Images)
    image_map: dict[str, str] = Field(default_factory=dict, alias="imageMap",
                                      description="exact replacements: definition image -> cluster image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, alias="imagePullPolicy")
    image_pull_secrets: list[str] = Field(default_factory=list, alias="imagePullSecrets")
    step_template_prefix: str | None = Field(None, alias="stepTemplatePrefix",
                                             description="the chart's WorkflowTemplate prefix (informational)")
    node_pools: dict[str, NodePool] = Field(default_factory=dict, alias="nodePools")
    default_pool: str = Field("cpu", alias="defaultPool", description="pool of steps that name none and need no GPU")
    gpu_pool: str = Field("gpu", alias="gpuPool", description="pool of steps that ask for a GPU and name no pool")
    security_context: SecurityContexts = Field(default_factory=SecurityContexts, alias="securityContext")
    work_dir: str = Field("/work", alias="workDir", pattern=r"^/[A-Za-z0-9._/-]*$")
    work_size_limit: str = Field("20Gi", alias="workSizeLimit")
    tmp_size_limit: str = Field("2Gi", alias="tmpSizeLimit")
    pod_gc_strategy: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"] = Field(
        "OnPodSuccess", alias="podGCStrategy")  # fmt: skip
    ttl_seconds_after_completion: int | None = Field(7 * 24 * 3600, ge=0, alias="ttlSecondsAfterCompletion")
    wrap: bool = Field(True, description="run steps through `nsbiflow pod-step` (step-key cache on the cluster)")
    fan_out: FanOutLimits = Field(default_factory=FanOutLimits, alias="fanOut",
                                  description="Argo list and object size limits (sharded fan-outs)")  # fmt: skip
    retry_policy: Literal["Always", "OnFailure", "OnError", "OnTransientError"] = Field("Always", alias="retryPolicy")

    @field_validator("work_size_limit", "tmp_size_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value

    def s3_endpoint(self) -> str:
        """The S3 endpoint URL step pods use (the chart's MinIO service unless the profile names one)."""
        return self.s3.endpoint or f"http://nsbiflow-minio.{self.namespace}.svc:9000"


DEFAULT_POOLS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "gpuResource": "nvidia.com/gpu",
    },
}


def default_profile() -> ClusterProfile:
    """The built-in profile: namespace ``nsbiflow``, a ``cpu`` pool and an NVIDIA ``gpu`` pool."""
    return ClusterProfile.model_validate({"nodePools": DEFAULT_POOLS})


def load_profile(path: str | Path | None) -> ClusterProfile:
    """Read a profile YAML file (or a ConfigMap holding ``profile.yaml``); ``None`` gives the default.

    Raises ``ProfileError`` with one line naming the file and the offending field.
    """
    if path is None:
        return default_profile()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"cannot read cluster profile {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if isinstance(data, dict) and data.get("kind") == "ConfigMap":
        text = (data.get("data") or {}).get("profile.yaml")
        if not isinstance(text, str):
            raise ProfileError(f"{path}: a ConfigMap without a 'profile.yaml' key is not a cluster profile")
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a cluster profile must be a mapping")
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        raise ProfileError(f"{path}: {where}: {error['msg']}") from None
