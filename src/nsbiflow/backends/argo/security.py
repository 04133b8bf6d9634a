"""Pod hardening of compiled step pods: non-root, no privilege escalation, read-only root filesystem.

Steps write only under the work directory and ``/tmp``, both ``emptyDir`` volumes; ``HOME`` points at
``/tmp``. S3 credentials reach the pod as ``secretKeyRef`` environment variables: the compiled Workflow
names the Secret, never its values.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import models as m

from nsbiflow.backends.argo.profile import ClusterProfile

RUN_AS_USER = 10001
WORK_VOLUME = "work"
TMP_VOLUME = "tmp"

DEFAULT_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_context(profile: ClusterProfile) -> m.PodSecurityContext:
    """The pod security context (the profile's, else the secure default)."""
    return m.PodSecurityContext.model_validate(profile.security_context.pod or DEFAULT_POD_SECURITY)


def container_security_context(profile: ClusterProfile) -> m.SecurityContext:
    """The step container's security context (the profile's, else the secure default)."""
    return m.SecurityContext.model_validate(profile.security_context.container or DEFAULT_CONTAINER_SECURITY)


def volumes(profile: ClusterProfile) -> list[m.Volume]:
    """The writable scratch space: the work directory and ``/tmp``."""
    return [
        m.Volume(name=WORK_VOLUME, empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity(profile.work_size_limit))),
        m.Volume(name=TMP_VOLUME, empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity(profile.tmp_size_limit))),
    ]


def volume_mounts(profile: ClusterProfile) -> list[m.VolumeMount]:
    """Where the scratch volumes are mounted in the step container."""
    return [m.VolumeMount(name=WORK_VOLUME, mount_path=profile.work_dir),
            m.VolumeMount(name=TMP_VOLUME, mount_path="/tmp")]  # fmt: skip


def store_environment(profile: ClusterProfile) -> list[m.EnvVar]:
    """Store location and S3 access for the step wrapper; credentials only as Secret references."""
    if not profile.store:
        return []
    secret = profile.s3.secret_name
    return [
        m.EnvVar(name="NSBIFLOW_STORE", value=profile.store),
        m.EnvVar(name="AWS_ENDPOINT_URL", value=profile.s3_endpoint()),
        m.EnvVar(name="AWS_DEFAULT_REGION", value=profile.s3.region),
        m.EnvVar(name="AWS_ACCESS_KEY_ID", value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(name=secret, key=profile.s3.access_key_key))),
        m.EnvVar(name="AWS_SECRET_ACCESS_KEY", value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(name=secret, key=profile.s3.secret_key_key))),
    ]  # fmt: skip
