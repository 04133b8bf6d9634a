"""Compile a plan into an Argo ``Workflow`` with hera's models (never hand-templated YAML).

Shape of the result:

- one DAG task per step *template*; a fanned-out step is one task with ``withItems``, one item per plan
  instance (so the fan-out count on the cluster is the plan's); values that differ between instances
  (parameters, input artifact keys, the instance id) travel in the items, the rest are literal arguments;
- every output is an S3 artifact with an explicit key under ``<artifactPrefix>/{{workflow.name}}/``,
  key-only, resolved through the profile's ``artifactRepositoryRef``; inputs name the same keys, which
  makes fan-in (``multiple`` inputs) and ``step[KEY].output`` references work without ``from``;
- per-template resources, node pool (nodeSelector + tolerations), ``retryStrategy`` and
  ``activeDeadlineSeconds``; the pod hardening of ``security.py``; provenance as labels/annotations;
- the container runs ``nsbiflow pod-step -- <step contract command>`` (see ``wrapper.py``), which skips
  the step when its step key is already in the store.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hera.workflows import models as m

from nsbiflow import __version__
from nsbiflow.backends.argo.profile import ClusterProfile, NodePool, ProfileError, load_profile
from nsbiflow.backends.argo.security import (
    container_security_context,
    pod_security_context,
    store_environment,
    volume_mounts,
    volumes,
)
from nsbiflow.backends.argo.sharding import check_limits, shard_tasks
from nsbiflow.engine.contract import (
    command_line,
    contract_environment,
    encode_parameter,
    escape_templating,
    input_path,
    needs_escape,
    output_path,
    step_variables,
)
from nsbiflow.engine.keys import code_identity, definition_identity
from nsbiflow.engine.plan import InputSource, Plan, PlannedStep
from nsbiflow.errors import NsbiflowError
from nsbiflow.spec.models import Resources, StepDefinition
from nsbiflow.store.artifacts import blob_key
from nsbiflow.store.digest import canonical_json, digest_file, digest_json

ARGO_API_VERSION = "argoproj.io/v1alpha1"
ENTRYPOINT = "main"
WRAPPER_COMMAND = ["nsbiflow", "pod-step", "--"]
STEP_PARAM = "nsbiflow-step"
SLUG_PARAM = "nsbiflow-slug"
STATE_DIR = ".nsbiflow"
"""Folder under the work directory where the wrapper leaves the step key (an output parameter)."""
LABEL = "nsbiflow.io"


class CompileError(NsbiflowError):
    """The plan cannot be expressed as an Argo Workflow."""


@dataclass(frozen=True)
class _Slot:
    """One input artifact of a template: ``name`` (``name-i`` for a fan-in input) staged at ``path``."""

    input: str
    artifact: str
    path: str


def task_name(template: str) -> str:
    """A DAG task / template name Argo accepts (DNS-label-like: no underscores)."""
    return template.replace("_", "-")


def slugify(text: str) -> str:
    """An instance key as one S3 key segment."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def cpu_quantity(resources: Resources) -> str:
    """CPU as a Kubernetes quantity string (``2``, ``500m``)."""
    if isinstance(resources.cpu, str):
        return resources.cpu
    cores = float(resources.cpu)
    return str(int(cores)) if cores.is_integer() else f"{round(cores * 1000)}m"


def resolve_pool(profile: ClusterProfile, template: str, resources: Resources) -> tuple[str, NodePool]:
    """The node pool of a step; ``ProfileError`` (one line) when the profile cannot host it."""
    name = resources.node_pool or (profile.gpu_pool if resources.gpu > 0 else profile.default_pool)
    known = ", ".join(sorted(profile.node_pools)) or "none"
    if name not in profile.node_pools:
        why = f"asks for node pool {name!r}"
        if resources.gpu > 0:
            why = f"asks for {resources.gpu} GPU(s) on node pool {name!r}"
        raise ProfileError(f"step {template!r} {why}, but the cluster profile has no node pool {name!r} "
                           f"(pools: {known}); add it under nodePools in the profile")  # fmt: skip
    pool = profile.node_pools[name]
    if resources.gpu > 0 and not pool.gpu_resource:
        raise ProfileError(f"step {template!r} asks for {resources.gpu} GPU(s), but node pool {name!r} of the "
                           f"cluster profile has no GPUs (set nodePools.{name}.gpuResource, "
                           "e.g. nvidia.com/gpu)")  # fmt: skip
    return name, pool


def step_image(profile: ClusterProfile, definition: StepDefinition, gpu: int) -> str:
    """The image a step runs in on this cluster (the profile may map nsbiflow images to its own)."""
    image = definition.image
    if image in profile.image_map:
        return profile.image_map[image]
    repository = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@")[0]
    if repository.rsplit("/", 1)[-1].startswith("nsbiflow"):
        replacement = profile.images.cuda if gpu > 0 else profile.images.cpu
        if replacement:
            return replacement
    return image


def code_files(definition: StepDefinition, definition_path: Path | None) -> dict[str, str]:
    """Digests of the code files a step declares (``python:`` packages are hashed in the pod instead)."""
    files = [entry for entry in definition.code if not entry.startswith("python:")]
    if not files:
        return {}
    identity = code_identity(definition.model_copy(update={"code": files}), definition_path)
    return {k: v for k, v in identity.items() if k in files}


class _Compiler:
    def __init__(self, plan: Plan, profile: ClusterProfile) -> None:
        self.plan = plan
        self.profile = profile
        self.work = Path(profile.work_dir)
        self.keys: dict[tuple[str, str], str] = {}
        self.slugs: dict[str, str] = {}
        for ids in plan.templates.values():
            raw = [slugify(plan.steps[i].id.partition("[")[2][:-1]) for i in ids]
            unique = raw if len(set(raw)) == len(raw) else [str(i) for i in range(len(ids))]
            fanned = plan.steps[ids[0]].fan_out
            for step_id, slug in zip(ids, unique, strict=True):
                self.slugs[step_id] = slug if fanned else ""

    # -- artifact keys -----------------------------------------------------------------------------
    def _prefix(self, template: str) -> str:
        return f"{self.profile.artifact_prefix}/{{{{workflow.name}}}}/{task_name(template)}"

    def output_key(self, step: PlannedStep, output: str, *, literal: bool) -> str:
        """Key of one output artifact (``literal``: for a given instance; else templated for the task)."""
        spec = step.definition.outputs[output]
        suffix = ".tgz" if spec.kind == "dir" else f"/{spec.filename or output}"
        if not step.fan_out:
            return f"{self._prefix(step.template)}/{output}{suffix}"
        slug = self.slugs[step.id] if literal else f"{{{{inputs.parameters.{SLUG_PARAM}}}}}"
        return f"{self._prefix(step.template)}/{slug}/{output}{suffix}"

    def source_key(self, source: InputSource) -> str:
        if source.path is not None:
            if not self.profile.store or not self.profile.store.startswith("s3://"):
                raise CompileError(f"input file {source.path} must be in the store on the cluster, but the "
                                   "cluster profile names no s3:// store")  # fmt: skip
            prefix = self.profile.store.removeprefix("s3://").partition("/")[2].strip("/")
            key = blob_key(digest_file(source.path))
            return f"{prefix}/{key}" if prefix else key
        upstream = self.plan.steps[str(source.step_id)]
        return self.output_key(upstream, str(source.output), literal=True)

    def literal(self, text: str, what: str) -> str:
        """A value that must reach the pod verbatim: escaped when it holds ``{{`` (Argo would template it)."""
        escaped = escape_templating(text)
        if escaped != text and not self.profile.wrap:
            raise CompileError(f"{what} contains '{{{{', which Argo would read as a template reference; "
                               "compile with the step wrapper (profile wrap: true) to pass it escaped")  # fmt: skip
        return escaped

    def source_filename(self, source: InputSource) -> str:
        if source.path is not None:  # a name Argo would template is staged under a neutral one
            return slugify(source.path.name) if needs_escape(source.path.name) else source.path.name
        spec = self.plan.steps[str(source.step_id)].definition.outputs[str(source.output)]
        return spec.filename or str(source.output)

    # -- one template --------------------------------------------------------------------------------
    def slots(self, step: PlannedStep) -> list[tuple[_Slot, InputSource]]:
        result = []
        for name, spec in step.definition.inputs.items():
            sources = step.inputs.get(name, [])
            for index, source in enumerate(sources):
                path = input_path(self.work, name, spec, index, self.source_filename(source))
                artifact = f"{name}-{index}" if spec.multiple else name
                result.append((_Slot(name, artifact, str(path)), source))
        return result

    def wrapper_environment(self, definition: StepDefinition, definition_path: Path | None) -> list[m.EnvVar]:
        """What ``nsbiflow pod-step`` reads to compute the step key (none when the profile does not wrap)."""
        if not self.profile.wrap:
            return []
        definition_json = canonical_json(definition.model_dump(mode="json", by_alias=True)).decode()
        env = [m.EnvVar(name="NSBIFLOW_STEP_DEFINITION", value=escape_templating(definition_json))]
        files = code_files(definition, definition_path)
        if files:
            env.append(m.EnvVar(name="NSBIFLOW_CODE_FILES", value=escape_templating(canonical_json(files).decode())))
        return env + store_environment(self.profile)

    def wrapper_outputs(self) -> list[m.Parameter]:
        """The wrapper's step key and cache-hit flag as output parameters (none when the profile does not wrap)."""
        if not self.profile.wrap:
            return []
        return [
            m.Parameter(name=name, value_from=m.ValueFrom(path=str(self.work / STATE_DIR / name), default=""))
            for name in ("step-key", "cached")
        ]

    def wrapped(self, command: list[str]) -> list[str]:
        """``command`` run through the caching step wrapper when the profile wraps."""
        return [*WRAPPER_COMMAND, *command] if self.profile.wrap else command

    def template_and_task(self, template: str, instances: list[PlannedStep]) -> tuple[m.Template, m.DAGTask]:
        first = instances[0]
        definition = first.definition
        shapes = {tuple(slot for slot, _ in self.slots(s)) for s in instances}
        if len(shapes) != 1:
            raise CompileError(f"step {template!r}: its fan-out instances stage different input artifacts "
                               "(count or file names); Argo needs the same inputs in every instance "
                               "of a task")  # fmt: skip
        slots = [slot for slot, _ in self.slots(first)]
        pool_name, pool = resolve_pool(self.profile, template, first.resources)

        # values per instance: parameters and input keys; constant ones become literal arguments
        columns: dict[str, list[str]] = {}
        for pname in definition.parameters:
            columns[f"p_{pname}"] = [self.literal(encode_parameter(s.parameters[pname]), f"parameter {pname!r} of "
                                                  f"step {s.id!r}") for s in instances]  # fmt: skip
        sources = [[source for _, source in self.slots(s)] for s in instances]
        for n in range(len(slots)):
            columns[f"in_{n}"] = [self.source_key(row[n]) for row in sources]
        varying = {c for c, values in columns.items() if len(set(values)) > 1}
        fanned = first.fan_out

        def argument(column: str) -> str:
            return f"{{{{item.{column}}}}}" if column in varying else columns[column][0]

        task_params = [m.Parameter(name=p, value=argument(f"p_{p}")) for p in definition.parameters]
        if fanned:
            task_params += [m.Parameter(name=STEP_PARAM, value="{{item.step}}"),
                            m.Parameter(name=SLUG_PARAM, value="{{item.slug}}")]  # fmt: skip
        task_artifacts = [m.Artifact(name=slot.artifact, s3=m.S3Artifact(key=argument(f"in_{n}")))
                          for n, slot in enumerate(slots)]  # fmt: skip
        items = None
        if fanned:
            items = [m.Item({"step": self.literal(s.id, f"step id {s.id!r}"), "slug": self.slugs[s.id],
                             **{c: columns[c][i] for c in columns if c in varying}})
                     for i, s in enumerate(instances)]  # fmt: skip
        dependencies = sorted({task_name(self.plan.steps[d].template) for s in instances for d in s.depends_on})
        task = m.DAGTask(
            name=task_name(template), template=task_name(template), dependencies=dependencies or None,
            arguments=m.Arguments(parameters=task_params or None, artifacts=task_artifacts or None),
            with_items=items,
        )  # fmt: skip

        # the template
        work = self.work
        staged: dict[str, list[str]] = {}
        for slot in slots:
            staged.setdefault(slot.input, []).append(slot.path)
        out_paths = {oname: output_path(work, oname, spec) for oname, spec in definition.outputs.items()}
        command = command_line(definition.command, {p: f"{{{{inputs.parameters.{p}}}}}" for p in definition.parameters},
                               staged, out_paths, encoded=True)  # fmt: skip
        outputs: list[m.Artifact] = []
        for oname, spec in definition.outputs.items():
            path = out_paths[oname]
            outputs.append(m.Artifact(
                name=oname, path=str(path), s3=m.S3Artifact(key=self.output_key(first, oname, literal=False)),
                archive=m.ArchiveStrategy(none=m.NoneStrategy()) if spec.kind == "file" else None,
            ))  # fmt: skip
        out_params = self.wrapper_outputs() or None
        step_id = f"{{{{inputs.parameters.{STEP_PARAM}}}}}" if fanned else first.id
        resources = first.resources
        declared, passthrough = step_variables(definition.env)
        if passthrough:
            raise CompileError(f"step {template!r} passes {passthrough[0]} through from the runner's environment "
                               "(env: {NAME: null}), which a pod does not have; give it a value")  # fmt: skip
        contract = contract_environment(cpu_cores=resources.cpu_cores, gpu=resources.gpu, step_id=step_id,
                                        run_id="{{workflow.name}}",
                                        declared={k: self.literal(v, f"env {k} of step {template!r}")
                                                  for k, v in declared.items()})  # fmt: skip
        env = [m.EnvVar(name="HOME", value="/tmp"), *(m.EnvVar(name=k, value=v) for k, v in contract.items())]
        env += self.wrapper_environment(definition, first.definition_path)
        quantities = {"cpu": m.Quantity(cpu_quantity(resources)), "memory": m.Quantity(str(resources.memory))}
        if resources.gpu > 0:
            quantities[str(pool.gpu_resource)] = m.Quantity(str(resources.gpu))
        container = m.Container(
            image=step_image(self.profile, definition, resources.gpu),
            image_pull_policy=self.profile.image_pull_policy,
            command=WRAPPER_COMMAND if self.profile.wrap else command[:1],
            args=command if self.profile.wrap else command[1:],
            working_dir=str(work), env=env,
            resources=m.ResourceRequirements(requests=dict(quantities), limits=dict(quantities)),
            security_context=container_security_context(self.profile),
            volume_mounts=volume_mounts(self.profile),
        )  # fmt: skip
        retry = None
        if first.retries.limit > 0:
            retry = m.RetryStrategy(
                limit=m.IntOrString(str(first.retries.limit)), retry_policy=self.profile.retry_policy,
                backoff=m.Backoff(duration=f"{first.retries.backoff_seconds:g}s",
                                  factor=m.IntOrString(f"{first.retries.backoff_factor:g}")),
            )  # fmt: skip
        deadline = m.IntOrString(str(int(-(-first.timeout // 1)))) if first.timeout else None
        labels = {f"{LABEL}/template": task_name(template), f"{LABEL}/node-pool": pool_name}
        annotations = {
            f"{LABEL}/step-definition": digest_json(definition_identity(definition)),
            f"{LABEL}/instances": str(len(instances)),
        }
        if not fanned:
            annotations[f"{LABEL}/step"] = first.id
        params = [m.Parameter(name=p) for p in definition.parameters]
        if fanned:
            params += [m.Parameter(name=STEP_PARAM), m.Parameter(name=SLUG_PARAM)]
        tpl = m.Template(
            name=task_name(template),
            metadata=m.Metadata(labels=labels, annotations=annotations),
            inputs=m.Inputs(parameters=params or None,
                            artifacts=[m.Artifact(name=s.artifact, path=s.path) for s in slots] or None),
            outputs=m.Outputs(artifacts=outputs or None, parameters=out_params) if outputs or out_params else None,
            container=container, node_selector=pool.node_selector or None,
            tolerations=[m.Toleration.model_validate(t) for t in pool.tolerations] or None,
            retry_strategy=retry, active_deadline_seconds=deadline,
        )  # fmt: skip
        return tpl, task

    # -- whole workflow ------------------------------------------------------------------------------
    def workflow(self, namespace: str | None) -> m.Workflow:
        names = [task_name(t) for t in self.plan.templates]
        clash = {n for n in names if names.count(n) > 1} | ({ENTRYPOINT} & set(names))
        if clash:
            raise CompileError(f"step name(s) {', '.join(sorted(clash))} clash on Argo (underscores become hyphens; "
                               f"{ENTRYPOINT!r} is reserved): rename the step")  # fmt: skip
        templates: list[m.Template] = []
        tasks: list[m.DAGTask] = []
        for template, ids in self.plan.templates.items():
            if self.plan.steps[ids[0]].loop is not None:  # a recursive template (backends/argo/loops.py)
                from nsbiflow.backends.argo.loops import compile_loop

                loop_templates, task = compile_loop(self, self.plan.steps[ids[0]])
                templates.extend(loop_templates)
                tasks.append(task)
                continue
            tpl, task = self.template_and_task(template, [self.plan.steps[i] for i in ids])
            templates.append(tpl)
            tasks.append(task)
        tasks, shard_templates = shard_tasks(tasks, self.profile.fan_out, {ENTRYPOINT, *names})
        templates += shard_templates
        meta = self.plan.workflow.metadata
        digest = self.plan.digest
        labels = {**{k: v for k, v in meta.labels.items()}, "app.kubernetes.io/managed-by": "nsbiflow",
                  f"{LABEL}/workflow": meta.name, f"{LABEL}/workflow-digest": digest.split(":")[1][:32]}  # fmt: skip
        annotations = {
            f"{LABEL}/workflow-digest": digest,
            f"{LABEL}/workflow-version": meta.version,
            f"{LABEL}/parameters": escape_templating(canonical_json(self.plan.parameters).decode()),
            f"{LABEL}/compiled-by": f"nsbiflow {__version__}",
        }
        if meta.description:
            annotations["workflows.argoproj.io/description"] = meta.description
        profile = self.profile
        spec = m.WorkflowSpec(
            entrypoint=ENTRYPOINT,
            templates=[m.Template(name=ENTRYPOINT, dag=m.DAGTemplate(tasks=tasks)), *templates],
            service_account_name=profile.service_account_name,
            artifact_repository_ref=m.ArtifactRepositoryRef(config_map=profile.artifact_repository_ref.config_map,
                                                            key=profile.artifact_repository_ref.key),
            pod_gc=m.PodGC(strategy=profile.pod_gc_strategy),
            ttl_strategy=m.TTLStrategy(seconds_after_completion=profile.ttl_seconds_after_completion)
            if profile.ttl_seconds_after_completion is not None else None,
            security_context=pod_security_context(profile),
            volumes=volumes(profile),
            image_pull_secrets=[m.LocalObjectReference(name=n) for n in profile.image_pull_secrets] or None,
            pod_metadata=m.Metadata(labels={f"{LABEL}/workflow": meta.name}),
        )  # fmt: skip
        return m.Workflow(
            api_version=ARGO_API_VERSION, kind="Workflow",
            metadata=m.ObjectMeta(generate_name=f"{meta.name}-", namespace=namespace or profile.namespace,
                                  labels=labels, annotations=annotations),
            spec=spec,
        )  # fmt: skip


def compile_workflow(plan: Plan, profile: ClusterProfile | None = None, namespace: str | None = None) -> m.Workflow:
    """The plan as a hera ``Workflow`` model (``ProfileError``/``CompileError``/``FanOutError`` on what cannot be
    compiled; large fan-outs are sharded, see ``sharding.py``)."""
    profile = profile or load_profile(None)
    workflow = _Compiler(plan, profile).workflow(namespace)
    check_limits(to_dict(workflow), profile.fan_out)
    return workflow


def to_dict(workflow: m.Workflow) -> dict[str, Any]:
    """The wire form of a hera ``Workflow`` model (camelCase, no nulls)."""
    data: dict[str, Any] = json.loads(workflow.model_dump_json(by_alias=True, exclude_none=True))
    return data


def compile_to_dict(plan: Plan, profile_path: Path | None = None, namespace: str | None = None) -> dict[str, Any]:
    """Compile a plan with the profile at ``profile_path`` (default profile if ``None``) to a dict."""
    return to_dict(compile_workflow(plan, load_profile(profile_path), namespace))


def compile_to_yaml(plan: Plan, profile_path: Path | None = None, namespace: str | None = None) -> str:
    """Compile a plan to Argo Workflow YAML (what ``nsbiflow compile --target argo`` prints)."""
    data = compile_to_dict(plan, profile_path, namespace)
    header = f"# Compiled by nsbiflow {__version__} from {plan.workflow.metadata.name}; do not edit.\n"
    return header + yaml.safe_dump(data, sort_keys=False, width=120, allow_unicode=True)
