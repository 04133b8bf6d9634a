"""Argo Workflows backend: compile a plan with hera, submit and monitor it, and the in-pod step wrapper."""

from __future__ import annotations

from nsbiflow.backends.argo.compiler import CompileError, compile_to_dict, compile_to_yaml, compile_workflow
from nsbiflow.backends.argo.profile import ClusterProfile, ProfileError, default_profile, load_profile

__all__ = [
    "ClusterProfile",
    "CompileError",
    "ProfileError",
    "compile_to_dict",
    "compile_to_yaml",
    "compile_workflow",
    "default_profile",
    "load_profile",
]
