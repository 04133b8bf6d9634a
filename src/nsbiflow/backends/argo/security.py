"""Pod hardening of compiled step pods: non-root, no privilege escalation, read-only root filesystem.

A cluster profile's security contexts are merged over these defaults and checked against the restricted
Pod Security Standard (``security_contexts``): a profile can tighten them, never loosen them.

Steps write only under the work directory and ``/tmp``, both ``emptyDir`` volumes; ``HOME`` points at
``/tmp``. S3 credentials reach the pod as ``secretKeyRef`` environment variables: the compiled Workflow
names the Secret, never its values.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import models as m

from nsbiflow.backends.argo.profile import ClusterProfile, ProfileError

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


def restricted_problems(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Where pod and container security contexts fall short of the restricted Pod Security Standard."""
    problems = []
    if pod.get("runAsNonRoot") is not True and container.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot must be true")
    if 0 in (pod.get("runAsUser"), container.get("runAsUser")):
        problems.append("runAsUser must not be 0")
    seccomp = (container.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile.type must be RuntimeDefault or Localhost")
    if container.get("allowPrivilegeEscalation") is not False:
        problems.append("container allowPrivilegeEscalation must be false")
    if container.get("privileged"):
        problems.append("container privileged must not be true")
    capabilities = container.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("container capabilities.drop must contain ALL")
    added = sorted(set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"})
    if added:
        problems.append(f"container capabilities.add may hold only NET_BIND_SERVICE, not {', '.join(added)}")
    return problems


def security_contexts(profile: ClusterProfile) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step pods' (pod, container) security contexts: the profile's fields over the secure defaults,
    checked against the restricted Pod Security Standard (a profile may tighten them, never loosen them)."""
    pod = {**DEFAULT_POD_SECURITY, **profile.security_context.pod}
    container = {**DEFAULT_CONTAINER_SECURITY, **profile.security_context.container}
    problems = restricted_problems(pod, container)
    if problems:
        raise ProfileError(f"cluster profile securityContext: {problems[0]} (the restricted Pod Security Standard; "
                           "step pods may not run with less)")  # fmt: skip
    return pod, container


def pod_security_context(profile: ClusterProfile) -> m.PodSecurityContext:
    """The pod security context (the profile's over the secure default, checked)."""
    return m.PodSecurityContext.model_validate(security_contexts(profile)[0])


def container_security_context(profile: ClusterProfile) -> m.SecurityContext:
    """The step container's security context (the profile's over the secure default, checked)."""
    return m.SecurityContext.model_validate(security_contexts(profile)[1])


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
