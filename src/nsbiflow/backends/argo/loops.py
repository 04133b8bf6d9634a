"""Compile a ``loop:`` step to Argo: a recursive DAG template that calls itself while ``until`` is false.

One iteration is the DAG template ``LOOP-iteration`` (input parameters ``iteration`` and ``previous``): a task per
body step, then ``until`` (a script that evaluates the loop's ``until`` with nsbiflow's own expression evaluator
over this iteration's JSON outputs; its stdout is ``true`` or ``false``), then either ``next`` (the same template
with ``iteration + 1``, ``when`` until is false and ``max_iterations`` is not reached) or ``publish`` (copies the
loop's outputs to the keys the rest of the workflow reads). docs/argo.md argues this choice over one Workflow per
iteration submitted by a driver.

Artifacts are keyed like the rest of the compile, with the iteration in the key:
``<prefix>/{{workflow.name}}/LOOP/i<N>/STEP[/<pod>]/OUTPUT``; ``loop.previous.S.O`` reads ``i<N-1>`` (optional:
absent in iteration 0). A fan-out over ``loop.current.S.O.FIELD`` is a ``withParam`` over the JSON file exported
as an output parameter (so under Argo's 256 KiB parameter limit); a fanned-out step's outputs are keyed by pod
name and gathered through their common key prefix (a directory artifact), passed to the command one ``--in`` per
file in name order. Body steps run through the caching step wrapper (``nsbiflow pod-step``) like the outer steps
when the profile wraps: a resubmitted loop skips every body step whose key is in the store, iteration by
iteration, as the local executor does.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from hera.workflows import models as m

from nsbiflow.engine.contract import contract_environment, encode_parameter, output_path, step_variables
from nsbiflow.engine.expressions import EXPRESSION, ExpressionError, render
from nsbiflow.engine.loops import ITERATIONS_OUTPUT, PREVIOUS, LoopPlan, is_loop_binding, loop_references
from nsbiflow.engine.plan import PlannedStep
from nsbiflow.spec.models import IOSpec, StepDefinition

if TYPE_CHECKING:
    from nsbiflow.backends.argo.compiler import _Compiler

ITERATION = "iteration"
PREVIOUS_PARAM = "previous"
STOP = "{{tasks.until.outputs.parameters.stop}}"
_ITEM = re.compile(r"^\s*item(\.(?P<key>[A-Za-z_][A-Za-z0-9_]*))?\s*$")

# POSIX sh prelude of a body step: drops '--in NAME=PATH' whose PATH is absent (loop.previous in iteration 0)
# and expands '--in NAME=DIR/*' (a gathered fan-out) to one '--in' per file, in name order.
PRELUDE = (
    'n=$#; i=0; while [ "$i" -lt "$n" ]; do a=$1; shift; i=$((i+1)); '
    'if [ "$a" = --in ]; then v=$1; shift; i=$((i+1)); p=${v#*=}; '
    'case $p in *"/*") for f in "${p%/*}"/*/*; do [ -e "$f" ] && set -- "$@" --in "${v%%=*}=$f"; done;; '
    '*) if [ -e "$p" ]; then set -- "$@" --in "$v"; fi;; esac; '
    'else set -- "$@" "$a"; fi; done; exec "$@"'
)

UNTIL_SOURCE = """import json, pathlib, sys
from nsbiflow.engine.expressions import evaluate
values = {}
for path in sorted(pathlib.Path("/work/in").glob("*/*/*")):
    values.setdefault(path.parts[-3], {})[path.parts[-2]] = json.loads(path.read_text())
scope = {"params": json.loads(sys.argv[1]),
         "loop": {"iteration": int(sys.argv[2]), "first": sys.argv[2] == "0", "current": values}}
print("true" if evaluate(sys.argv[3], scope) else "false")
"""


def _compile_error(message: str) -> Exception:
    from nsbiflow.backends.argo.compiler import CompileError

    return CompileError(message)


class _LoopCompiler:
    def __init__(self, compiler: _Compiler, step: PlannedStep) -> None:
        self.c = compiler
        self.step = step
        self.loop: LoopPlan = step.loop
        self.name = compiler_task_name(step.template)
        self.iteration_template = f"{self.name}-iteration"

    # -- keys ----------------------------------------------------------------------------------------------
    def key(self, template: str, output: str, *, iteration: str, fanned: bool) -> str:
        spec = self.loop.definitions[template][0].outputs[output]
        suffix = ".tgz" if spec.kind == "dir" else f"/{spec.filename or output}"
        base = f"{self.c._prefix(self.step.template)}/i{iteration}/{compiler_task_name(template)}"
        return f"{base}/{{{{pod.name}}}}/{output}{suffix}" if fanned else f"{base}/{output}{suffix}"

    def gathered_key(self, template: str) -> str:
        base = f"{self.c._prefix(self.step.template)}/i{{{{inputs.parameters.{ITERATION}}}}}"
        return f"{base}/{compiler_task_name(template)}"

    # -- parameters ------------------------------------------------------------------------------------------
    def parameter_value(self, template: str, name: str, raw: Any) -> str:
        if isinstance(raw, str):
            whole = EXPRESSION.fullmatch(raw.strip())
            if whole:
                text = whole.group(1).strip()
                item = _ITEM.match(text)
                if item:
                    return f"{{{{item.{item.group('key')}}}}}" if item.group("key") else "{{item}}"
                if text == "loop.iteration":
                    return f"{{{{inputs.parameters.{ITERATION}}}}}"
        try:
            value = render(raw, {"params": self.c.plan.parameters})
        except ExpressionError as exc:
            raise _compile_error(
                f"loop {self.step.id!r}: with.{name} of {template!r} cannot be compiled to Argo "
                f"({exc}); use params, item, item.KEY or loop.iteration"
            ) from None
        return self.c.literal(encode_parameter(value), f"parameter {name!r} of loop step {template!r}")

    def fan_out(self, template: str) -> str | None:
        foreach = self.loop.spec.steps[template].foreach
        if foreach is None:
            return None
        text = foreach if isinstance(foreach, str) else ""
        whole = EXPRESSION.fullmatch(text.strip())
        refs = loop_references(text)
        match = (
            re.fullmatch(
                r"\s*loop\.current\.([a-z0-9_-]+)\.([A-Za-z0-9_-]+)((\.[A-Za-z_][A-Za-z0-9_]*)*)\s*", whole.group(1)
            )
            if whole
            else None
        )
        if match is None or len(refs) != 1:
            raise _compile_error(
                f"loop {self.step.id!r}: foreach of {template!r} must be "
                "${{ loop.current.STEP.OUTPUT[.FIELD...] }} to compile to Argo"
            )
        source, output, fields = match.group(1), match.group(2), match.group(3)
        path = "$" + (fields or "")
        return f"{{{{=jsonpath(tasks.{compiler_task_name(source)}.outputs.parameters.{output}, '{path}')}}}}"

    # -- one body step -------------------------------------------------------------------------------------
    def body(self, template: str) -> tuple[m.Template, m.DAGTask]:
        definition, _ = self.loop.definitions[template]
        step = self.loop.spec.steps[template]
        fanned = step.foreach is not None
        work = self.c.work
        params = [m.Parameter(name=ITERATION), m.Parameter(name=PREVIOUS_PARAM)]
        params += [m.Parameter(name=p) for p in definition.parameters]
        arguments = [
            m.Parameter(name=ITERATION, value=f"{{{{inputs.parameters.{ITERATION}}}}}"),
            m.Parameter(name=PREVIOUS_PARAM, value=f"{{{{inputs.parameters.{PREVIOUS_PARAM}}}}}"),
        ]
        for pname, pspec in definition.parameters.items():
            raw = step.with_.get(pname, pspec.default)
            if raw is None:
                raise _compile_error(f"loop {self.step.id!r}: parameter {pname!r} of {template!r} is not bound")
            arguments.append(m.Parameter(name=pname, value=self.parameter_value(template, pname, raw)))
        inputs: list[m.Artifact] = []
        given: list[m.Artifact] = []
        staged: dict[str, list[str]] = {}
        depends: set[str] = {compiler_task_name(n) for n in step.needs}
        for which, src, _ in [*loop_references(step.foreach), *loop_references(step.with_)]:
            if which == "current":  # a fan-out over (or a value of) this iteration's output waits for it
                depends.add(compiler_task_name(src))
        for iname, binding in step.inputs.items():
            spec = definition.inputs[iname]
            refs = binding if isinstance(binding, list) else [binding] if isinstance(binding, str) else []
            if not refs:
                raise _compile_error(
                    f"loop {self.step.id!r}: {template}.inputs.{iname}: file inputs ({{path: ...}}) "
                    "of a loop body do not compile to Argo yet; produce the file in a step"
                )
            for index, ref in enumerate(refs):
                artifact = f"{iname}-{index}"
                target = f"{work}/in/{iname}/{index}"
                previous = PREVIOUS.match(ref)
                head = ref.split(".")[0].split("[")[0]
                if previous is not None:
                    src = previous.group("step")
                    key = self.key(
                        src,
                        previous.group("output"),
                        iteration=f"{{{{inputs.parameters.{PREVIOUS_PARAM}}}}}",
                        fanned=False,
                    )
                    optional = True
                elif head in self.loop.spec.steps:
                    src, _, out = ref.partition(".")
                    depends.add(compiler_task_name(src))
                    if self.loop.spec.steps[src].foreach is not None:
                        key, target = self.gathered_key(src), f"{work}/in/{iname}"
                    else:
                        key = self.key(src, out, iteration=f"{{{{inputs.parameters.{ITERATION}}}}}", fanned=False)
                    optional = False
                else:
                    sources = [
                        s for srcs in self.loop.outer.values() for s in srcs if f"{s.step_id}.{s.output}" == ref.strip()
                    ]
                    if not sources:
                        raise _compile_error(
                            f"loop {self.step.id!r}: {template}.inputs.{iname}: {ref!r} does not "
                            "compile to Argo (name an outer step's output, without [KEY])"
                        )
                    key, optional = self.c.source_key(sources[0]), False
                if target == f"{work}/in/{iname}":
                    staged.setdefault(iname, []).append(f"{target}/*")
                else:
                    filename = self._filename(ref, previous)
                    target = f"{target}/{filename}" if spec.kind == "file" else target
                    staged.setdefault(iname, []).append(target)
                inputs.append(m.Artifact(name=artifact, path=target, optional=optional or None))
                given.append(m.Artifact(name=artifact, s3=m.S3Artifact(key=key)))
        out_paths = {o: output_path(work, o, s) for o, s in definition.outputs.items()}
        argv = [*definition.command]
        for pname in definition.parameters:
            argv += ["--param", f"{pname}={{{{inputs.parameters.{pname}}}}}"]
        for iname, paths in staged.items():
            for path in paths:
                argv += ["--in", f"{iname}={path}"]
        for oname, out_path in out_paths.items():
            argv += ["--out", f"{oname}={out_path}"]
        outputs = [
            m.Artifact(
                name=o,
                path=str(out_paths[o]),
                s3=m.S3Artifact(
                    key=self.key(template, o, iteration=f"{{{{inputs.parameters.{ITERATION}}}}}", fanned=fanned)
                ),
                archive=m.ArchiveStrategy(none=m.NoneStrategy()) if s.kind == "file" else None,
            )
            for o, s in definition.outputs.items()
        ]
        exported = self.exported_parameters(template)
        out_params = [m.Parameter(name=o, value_from=m.ValueFrom(path=str(out_paths[o]))) for o in exported]
        out_params += self.c.wrapper_outputs()
        resources = step.resources or definition.resources
        declared, passthrough = step_variables(definition.env)
        if passthrough:
            raise _compile_error(
                f"loop step {template!r} passes {passthrough[0]} through from the runner's "
                "environment, which a pod does not have; give it a value"
            )
        env = contract_environment(
            cpu_cores=resources.cpu_cores,
            gpu=resources.gpu,
            step_id=f"{self.step.id}.{template}",
            run_id="{{workflow.name}}",
            declared=declared,
        )
        wrapper_env = self.c.wrapper_environment(definition, self.loop.definitions[template][1])
        command = ["sh", "-c", PRELUDE, "sh", *self.c.wrapped(argv)]
        container = self.container(definition, resources, command, env, wrapper_env)
        tpl = m.Template(
            name=f"{self.name}-{compiler_task_name(template)}",
            metadata=m.Metadata(
                labels={
                    "nsbiflow.io/template": f"{self.name}-{compiler_task_name(template)}",
                    "nsbiflow.io/loop": self.name,
                }
            ),
            inputs=m.Inputs(parameters=params, artifacts=inputs or None),
            outputs=m.Outputs(artifacts=outputs or None, parameters=out_params or None),
            container=container,
        )
        task = m.DAGTask(
            name=compiler_task_name(template),
            template=tpl.name,
            dependencies=sorted(depends) or None,
            arguments=m.Arguments(parameters=arguments, artifacts=given or None),
            with_param=self.fan_out(template),
        )
        return tpl, task

    def _filename(self, ref: str, previous: re.Match[str] | None) -> str:
        if previous is not None:
            spec = self.loop.definitions[previous.group("step")][0].outputs[previous.group("output")]
            return spec.filename or previous.group("output")
        src, _, out = ref.partition(".")
        if src in self.loop.definitions:
            spec = self.loop.definitions[src][0].outputs[out]
            return spec.filename or out
        sources = [s for srcs in self.loop.outer.values() for s in srcs if f"{s.step_id}.{s.output}" == ref.strip()]
        return self.c.source_filename(sources[0])

    def exported_parameters(self, template: str) -> list[str]:
        """Outputs another body step fans out over (``withParam`` reads them as output parameters)."""
        names = []
        for other in self.loop.spec.steps.values():
            for which, src, out in loop_references(other.foreach):
                if which == "current" and src == template and out not in names:
                    names.append(out)
        return names

    def container(
        self,
        definition: StepDefinition | None,
        resources: Any,
        command: list[str],
        env: dict[str, str],
        extra_env: list[m.EnvVar] | None = None,
    ) -> m.Container:
        from nsbiflow.backends.argo.compiler import cpu_quantity, step_image
        from nsbiflow.backends.argo.security import container_security_context, volume_mounts

        quantities = {"cpu": m.Quantity(cpu_quantity(resources)), "memory": m.Quantity(str(resources.memory))}
        image = step_image(self.c.profile, definition, 0) if definition is not None else self.nsbiflow_image()
        return m.Container(
            image=image,
            image_pull_policy=self.c.profile.image_pull_policy,
            command=command[:1],
            args=command[1:],
            working_dir=str(self.c.work),
            env=[
                m.EnvVar(name="HOME", value="/tmp"),
                *(m.EnvVar(name=k, value=v) for k, v in env.items()),
                *(extra_env or []),
            ],
            resources=m.ResourceRequirements(requests=dict(quantities), limits=dict(quantities)),
            security_context=container_security_context(self.c.profile),
            volume_mounts=volume_mounts(self.c.profile),
        )

    def nsbiflow_image(self) -> str:
        images = sorted({d.image for d, _ in self.loop.definitions.values()})
        return images[0]

    # -- until, next, publish --------------------------------------------------------------------------------
    def until(self) -> tuple[m.Template, m.DAGTask]:
        from nsbiflow.spec.models import Resources

        expression = EXPRESSION.fullmatch(self.loop.spec.until.strip())
        assert expression is not None
        refs = [(s, o) for which, s, o in loop_references(self.loop.spec.until) if which == "current"]
        artifacts, given, args = [], [], []
        for src, out in refs:
            spec = self.loop.definitions[src][0].outputs[out]
            name = f"{compiler_task_name(src)}-{out}"
            artifacts.append(m.Artifact(name=name, path=f"{self.c.work}/in/{src}/{out}/{spec.filename or out}"))
            given.append(
                m.Artifact(
                    name=name,
                    s3=m.S3Artifact(
                        key=self.key(src, out, fanned=False, iteration=f"{{{{inputs.parameters.{ITERATION}}}}}")
                    ),
                )
            )
            args.append(compiler_task_name(src))
        params_json = self.c.literal(json.dumps(self.c.plan.parameters, sort_keys=True), "workflow parameters")
        command = [
            "python",
            "-c",
            UNTIL_SOURCE.replace("/work/in", f"{self.c.work}/in"),
            params_json,
            f"{{{{inputs.parameters.{ITERATION}}}}}",
            self.c.literal(expression.group(1).strip(), "the loop's until"),
        ]
        resources = Resources(cpu="250m", memory="256Mi")
        tpl = m.Template(
            name=f"{self.name}-until",
            inputs=m.Inputs(parameters=[m.Parameter(name=ITERATION)], artifacts=artifacts or None),
            outputs=m.Outputs(parameters=[m.Parameter(name="stop", value_from=m.ValueFrom(path="/tmp/stop"))]),
            container=self.container(None, resources, ["sh", "-c", '"$@" > /tmp/stop', "sh", *command], {}),
        )
        task = m.DAGTask(
            name="until",
            template=tpl.name,
            dependencies=sorted(set(args)) or None,
            arguments=m.Arguments(
                parameters=[m.Parameter(name=ITERATION, value=f"{{{{inputs.parameters.{ITERATION}}}}}")],
                artifacts=given or None,
            ),
        )
        return tpl, task

    def publish(self) -> tuple[m.Template, m.DAGTask]:
        from nsbiflow.spec.models import Resources

        inputs, given, outputs, copies = [], [], [], []
        for oname, ref in self.loop.spec.outputs.items():
            src, _, out = ref.partition(".")
            spec = self.loop.definitions[src][0].outputs[out]
            staged = (
                f"{self.c.work}/in/{oname}/{spec.filename or out}"
                if spec.kind == "file"
                else f"{self.c.work}/in/{oname}"
            )
            inputs.append(m.Artifact(name=oname, path=staged))
            given.append(
                m.Artifact(
                    name=oname,
                    s3=m.S3Artifact(
                        key=self.key(src, out, iteration=f"{{{{inputs.parameters.{ITERATION}}}}}", fanned=False)
                    ),
                )
            )
            target = output_path(self.c.work, oname, self.step.definition.outputs[oname])
            copies.append(f"mkdir -p {target.parent} && cp -r {staged} {target}")
            outputs.append(
                m.Artifact(
                    name=oname,
                    path=str(target),
                    s3=m.S3Artifact(key=self.c.output_key(self.step, oname, literal=True)),
                    archive=m.ArchiveStrategy(none=m.NoneStrategy()) if spec.kind == "file" else None,
                )
            )
        record = output_path(self.c.work, ITERATIONS_OUTPUT, self.step.definition.outputs[ITERATIONS_OUTPUT])
        copies.append(
            f'mkdir -p {record.parent} && printf \'%s\\n\' \'{{"loop": "{self.step.id}", "iterations": '
            f"{{{{inputs.parameters.{ITERATION}}}}}}}' > {record}"
        )
        outputs.append(
            m.Artifact(
                name=ITERATIONS_OUTPUT,
                path=str(record),
                s3=m.S3Artifact(key=self.c.output_key(self.step, ITERATIONS_OUTPUT, literal=True)),
                archive=m.ArchiveStrategy(none=m.NoneStrategy()),
            )
        )
        resources = Resources(cpu="250m", memory="256Mi")
        tpl = m.Template(
            name=f"{self.name}-publish",
            inputs=m.Inputs(parameters=[m.Parameter(name=ITERATION)], artifacts=inputs),
            outputs=m.Outputs(artifacts=outputs),
            container=self.container(None, resources, ["sh", "-c", " && ".join(copies)], {}),
        )
        last = self.loop.spec.max_iterations - 1
        task = _after_until(
            "publish",
            f"{self.name}-publish",
            f"{STOP} == true || {{{{inputs.parameters.{ITERATION}}}}} >= {last}",
            [m.Parameter(name=ITERATION, value=f"{{{{inputs.parameters.{ITERATION}}}}}")],
            given,
        )
        return tpl, task

    def templates(self) -> tuple[list[m.Template], m.DAGTask]:
        """The loop's templates and the outer DAG's task that starts iteration 0."""
        templates: list[m.Template] = []
        tasks: list[m.DAGTask] = []
        for generation in self.loop.generations:
            for template in generation:
                tpl, task = self.body(template)
                templates.append(tpl)
                tasks.append(task)
        until_tpl, until_task = self.until()
        publish_tpl, publish_task = self.publish()
        last = self.loop.spec.max_iterations - 1
        next_task = _after_until(
            "next",
            self.iteration_template,
            f"{STOP} == false && {{{{inputs.parameters.{ITERATION}}}}} < {last}",
            [
                m.Parameter(name=ITERATION, value=f"{{{{=asInt(inputs.parameters.{ITERATION}) + 1}}}}"),
                m.Parameter(name=PREVIOUS_PARAM, value=f"{{{{inputs.parameters.{ITERATION}}}}}"),
            ],
        )
        iteration = m.Template(
            name=self.iteration_template,
            inputs=m.Inputs(parameters=[m.Parameter(name=ITERATION), m.Parameter(name=PREVIOUS_PARAM)]),
            dag=m.DAGTemplate(tasks=[*tasks, until_task, next_task, publish_task]),
        )
        dependencies = sorted({compiler_task_name(self.c.plan.steps[d].template) for d in self.step.depends_on})
        start = m.DAGTask(
            name=self.name,
            template=self.iteration_template,
            dependencies=dependencies or None,
            arguments=m.Arguments(
                parameters=[m.Parameter(name=ITERATION, value="0"), m.Parameter(name=PREVIOUS_PARAM, value="none")]
            ),
        )
        return [iteration, *templates, until_tpl, publish_tpl], start


def _after_until(
    name: str, template: str, when: str, parameters: list[m.Parameter], artifacts: list[m.Artifact] | None = None
) -> m.DAGTask:
    """A task of the iteration DAG that runs after ``until`` when ``when`` holds (``next`` or ``publish``)."""
    return m.DAGTask(
        name=name,
        template=template,
        dependencies=["until"],
        when=when,
        arguments=m.Arguments(parameters=parameters, artifacts=artifacts or None),
    )


def compiler_task_name(template: str) -> str:
    """A DAG task / template name Argo accepts (the compiler's rule)."""
    return template.replace("_", "-")


def compile_loop(compiler: _Compiler, step: PlannedStep) -> tuple[list[m.Template], m.DAGTask]:
    """The templates of loop ``step`` and the task of the outer DAG that runs it."""
    return _LoopCompiler(compiler, step).templates()


__all__ = ["IOSpec", "compile_loop", "is_loop_binding"]
