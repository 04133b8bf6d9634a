"""Where a reinterpretation runs: one small interface, one implementation per backend.

``ExecutionTarget.execute(store, plan)`` runs (or submits) a planned, patched workflow against the store that
holds the archive and returns an ``Execution``:

- ``LocalTarget``: the local executor, to completion; cached steps are reused, the rest re-run.
- ``ArgoTarget``: compiles the plan for Argo with a cluster profile whose store *is* this store, stores any
  input file the pods will read, submits it, and returns the workflow's name. The pods' step wrapper computes
  each step key exactly as the local executor does and skips every step whose key is in the store, so the
  steps a reinterpretation leaves unchanged are not recomputed. ``predict_cached`` says which those are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nsbiflow.engine.keys import step_key
from nsbiflow.engine.plan import Plan
from nsbiflow.errors import ExecutionError, UsageError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest


@dataclass
class Execution:
    """What a target did with a plan: a finished local run, or a submitted cluster workflow."""

    target: str
    run_id: str
    complete: bool
    reused: list[str] = field(default_factory=list)
    reran: list[str] = field(default_factory=list)
    manifest: RunManifest | None = None
    compiled: dict[str, Any] | None = None


class ExecutionTarget(Protocol):
    """Runs a plan against a store (the interface ``reinterpret`` uses)."""

    name: str

    def execute(self, store: ArtifactStore, plan: Plan) -> Execution:
        """Run or submit ``plan``; ``ExecutionError`` when it cannot."""
        ...


def predict_cached(store: ArtifactStore, plan: Plan) -> dict[str, str]:
    """Step id -> step key of every step whose outputs the store already has (walking the plan in order:
    a step is known when its file inputs and its upstream steps' outputs are). This is what the local
    executor would reuse, and what the Argo pods skip."""
    outputs: dict[str, dict[str, ArtifactRef]] = {}
    cached: dict[str, str] = {}
    files: dict[Path, str] = {}
    for step_id in plan.order:
        step = plan.steps[step_id]
        digests: dict[str, list[str]] = {}
        known = True
        for name, sources in step.inputs.items():
            values = []
            for source in sources:
                if source.path is not None:
                    if source.path not in files:
                        files[source.path] = store.put(source.path).digest
                    values.append(files[source.path])
                elif str(source.step_id) in outputs:
                    values.append(outputs[str(source.step_id)][str(source.output)].digest)
                else:
                    known = False
            digests[name] = values
        if not known:
            continue
        key = step_key(step, digests)
        hit = store.cache_lookup(key)
        if hit is not None and set(hit.outputs) >= set(step.definition.outputs):
            cached[step_id] = key
            outputs[step_id] = hit.outputs
    return cached


@dataclass
class LocalTarget:
    """Run on this machine with the local executor."""

    jobs: int | None = None
    progress: Any = None
    name: str = "local"

    def execute(self, store: ArtifactStore, plan: Plan) -> Execution:
        """Run the plan to completion; ``ExecutionError`` naming the failed steps."""
        from nsbiflow.backends.local.executor import LocalExecutor

        manifest = LocalExecutor(store, jobs=self.jobs, progress=self.progress).run(plan)
        if manifest.status != "succeeded":
            failed = [f"{sid}: {r.error}" for sid, r in manifest.steps.items() if r.status == "failed"]
            raise ExecutionError(f"reinterpretation run {manifest.run_id} failed: "
                                 f"{'; '.join(failed) or manifest.error}")  # fmt: skip
        reused = [sid for sid, r in manifest.steps.items() if r.status == "cached"]
        reran = [sid for sid, r in manifest.steps.items() if r.status == "succeeded"]
        return Execution(self.name, manifest.run_id, True, reused, reran, manifest)


@dataclass
class ArgoTarget:
    """Compile for Argo and submit (``submit=False``: compile only, e.g. to inspect the Workflow)."""

    profile: Path | None = None
    server: str | None = None
    namespace: str | None = None
    insecure: bool = False
    submit: bool = True
    name: str = "argo"

    def execute(self, store: ArtifactStore, plan: Plan) -> Execution:
        """Compile, check and submit the plan; the pods skip every step whose key the store holds."""
        from nsbiflow.backends.argo.compiler import CompileError, compile_workflow, to_dict
        from nsbiflow.backends.argo.profile import load_profile
        from nsbiflow.backends.argo.validate import strict_errors

        cluster = load_profile(self.profile)
        if not cluster.store or cluster.store.rstrip("/") != store.uri.rstrip("/"):
            raise UsageError(f"the archive is in {store.uri}, but the cluster profile's pods use the store "
                             f"{cluster.store or '(none)'}: reinterpret from the cluster's store "
                             "(--store) or point the profile's 'store' at it")  # fmt: skip
        cached = predict_cached(store, plan)  # also stores every input file the pods will read
        namespace = self.namespace or os.environ.get("ARGO_NAMESPACE") or cluster.namespace
        workflow = compile_workflow(plan, cluster, namespace)
        compiled = to_dict(workflow)
        problems = strict_errors(compiled)
        if problems:
            raise CompileError(f"the compiled workflow is not a valid Argo Workflow: {problems[0]}")
        reused = [sid for sid in plan.order if sid in cached]
        reran = [sid for sid in plan.order if sid not in cached]
        if not self.submit:
            return Execution(self.name, "", False, reused, reran, compiled=compiled)
        from nsbiflow.backends.argo.submit import ArgoClient, resolve_token

        insecure = self.insecure or os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() in ("1", "true")
        client = ArgoClient(self.server, namespace, token=resolve_token(), verify_ssl=not insecure)
        name = client.submit(workflow)
        return Execution(self.name, name, False, reused, reran, compiled=compiled)


__all__ = ["ArgoTarget", "Execution", "ExecutionTarget", "LocalTarget", "predict_cached"]
