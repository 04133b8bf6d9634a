"""Turn a workflow into a plan: resolved parameters, expanded fan-out, edges and a topological order.

The plan is what every backend consumes: the local executor runs it, the Argo and yadage compilers
translate it. Problems are collected, not raised one at a time, so ``nsbiflow validate`` reports them all.
"""

from __future__ import annotations

import difflib
import fnmatch
import graphlib
import itertools
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsbiflow.engine.code import entry_problem
from nsbiflow.engine.expressions import ExpressionError, has_expression, render
from nsbiflow.engine.narrow import narrowed
from nsbiflow.errors import Problem, SpecError, UsageError
from nsbiflow.paths import UnsafePathError, canonical_name, check_input_file, safe_name
from nsbiflow.spec.catalog import StepCatalog
from nsbiflow.spec.loader import load_workflow_document
from nsbiflow.spec.models import (
    FileInput,
    MatrixSpec,
    ParameterSpec,
    RangeSpec,
    Resources,
    RetryPolicy,
    StepDefinition,
    Workflow,
    WorkflowStep,
    coerce_value,
)
from nsbiflow.spec.yaml_source import SourceDocument
from nsbiflow.store.digest import digest_json

MAX_FANOUT_ENV = "NSBIFLOW_MAX_FANOUT"
DEFAULT_MAX_FANOUT = 10_000
"""Most instances one step may fan out to (Argo controllers have fallen over at a few thousand items of one
``withItems``; a bigger analysis packs more work into each instance). ``$NSBIFLOW_MAX_FANOUT`` changes it."""

_PLAIN_KEY = re.compile(r"^[^\[\]\x00-\x1f\x7f]{1,63}$")

REFERENCE = re.compile(r"^(?P<step>[a-z0-9][a-z0-9_-]*)(\[(?P<key>[^\]]+)\])?\.(?P<output>[A-Za-z_][A-Za-z0-9_-]*)$")


@dataclass(frozen=True)
class InputSource:
    """Where one input artifact comes from: an upstream step's output, or a file outside the store."""

    step_id: str | None = None
    output: str | None = None
    path: Path | None = None

    def describe(self) -> str:
        """``step.output`` or the file path."""
        return f"{self.step_id}.{self.output}" if self.step_id else str(self.path)


@dataclass
class PlannedStep:
    """One step instance of the plan (a fanned-out step contributes one per item)."""

    id: str
    template: str
    definition: StepDefinition
    definition_path: Path | None
    parameters: dict[str, Any]
    inputs: dict[str, list[InputSource]]
    depends_on: list[str]
    resources: Resources
    retries: RetryPolicy
    timeout: float | None
    index: int | None = None
    item: Any = None
    fan_out: bool = False
    code_base: Path | None = None
    """Folder the ``code:`` globs of an inline step are relative to (the workflow file's folder)."""
    loop: Any = None
    """For a ``loop:`` step, its ``engine.loops.LoopPlan`` (backends run or compile it; see docs/workflows.md)."""


@dataclass
class Plan:
    """A fully resolved workflow."""

    workflow: Workflow
    path: Path
    document: SourceDocument
    parameters: dict[str, Any]
    steps: dict[str, PlannedStep]
    order: list[str]
    outputs: dict[str, list[InputSource]]
    templates: dict[str, list[str]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Digest of the workflow content and every step definition it uses (key order irrelevant)."""
        definitions = {s.template: s.definition.model_dump(mode="json") for s in self.steps.values()}
        return digest_json(
            {"workflow": self.workflow.model_dump(mode="json", by_alias=True), "definitions": definitions}
        )

    def downstream_of(self, step_ids: set[str]) -> set[str]:
        """Every step that (transitively) depends on one of ``step_ids``, the steps themselves included."""
        result = set(step_ids)
        for step_id in self.order:
            if any(dep in result for dep in self.steps[step_id].depends_on):
                result.add(step_id)
        return result


def resolve_parameters(
    workflow: Workflow, overrides: dict[str, str], doc: SourceDocument | None = None
) -> dict[str, Any]:
    """Workflow parameters: defaults, then ``--set`` overrides (strings parsed to the declared type)."""
    values: dict[str, Any] = {}
    for name, raw in overrides.items():
        if name not in workflow.parameters:
            hint = difflib.get_close_matches(name, list(workflow.parameters), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            known = ", ".join(sorted(workflow.parameters)) or "none"
            raise UsageError(f"--set {name}: the workflow has no parameter {name!r}{suggestion}; parameters: {known}")
        try:
            values[name] = coerce_value(workflow.parameters[name].type, raw)
        except ValueError as exc:
            raise UsageError(f"--set {name}={raw[:80]}: {exc}") from None
        except RecursionError:
            raise UsageError(f"--set {name}: the value is nested too deeply") from None
        choices = workflow.parameters[name].choices
        if choices is not None and values[name] not in choices:
            raise UsageError(f"--set {name}={raw}: must be one of {choices}")
    problems = []
    for name, spec in workflow.parameters.items():
        if name in values:
            continue
        if spec.default is None:
            message = f"parameter {name!r} has no default: give it with --set {name}=VALUE"
            if doc is not None:
                problems.append(doc.problem(("parameters", name), message))
            else:
                raise UsageError(message)
        else:
            values[name] = spec.default
    if problems:
        raise SpecError(problems)
    return values


def _instance_key(item: Any, index: int) -> str:
    if isinstance(item, dict):
        return "-".join(str(v) for v in item.values())
    if isinstance(item, str | int | float | bool):
        return str(item)
    return str(index)


def instance_keys(items: list[Any]) -> list[str]:
    """Unique, path-safe keys for fan-out items (the ``KEY`` of ``step[KEY]``).

    A key is the item itself where it is short and plain; duplicates fall back to indices; a key with
    brackets or control characters becomes ``INDEX-DIGEST``; keys whose canonical forms collide (``a/b``,
    ``a_b``, ``a b``: one work directory, one yadage stage name) get a short digest of the key appended.
    """
    keys = [_instance_key(item, i) for i, item in enumerate(items)]
    if len(set(keys)) != len(keys):
        return [str(i) for i in range(len(items))]
    keys = [k if _PLAIN_KEY.match(k) else f"{i}-{digest_json(k)[7:13]}" for i, k in enumerate(keys)]
    forms = Counter(canonical_name(k) for k in keys)
    return [f"{k}-{digest_json(k)[7:13]}" if forms[canonical_name(k)] > 1 else k for k in keys]


def _file_input_problem(path: Path, kind: str) -> str | None:
    """Why a ``{path: ...}`` input cannot be used as a ``kind`` input (found now, not when a step hangs)."""
    try:
        check_input_file(path, "it")
    except UnsafePathError as exc:
        return str(exc).replace(f"it {path} is", "it is")
    if kind == "file" and path.is_dir():
        return f"is a directory ({path}), but the input is declared 'kind: file'"
    if kind == "dir" and not path.is_dir():
        return f"is a file ({path}), but the input is declared 'kind: dir'"
    return None


def max_fanout() -> int:
    """The fan-out limit: ``$NSBIFLOW_MAX_FANOUT`` or ``DEFAULT_MAX_FANOUT``."""
    text = os.environ.get(MAX_FANOUT_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_FANOUT
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"${MAX_FANOUT_ENV}={text!r} is not a whole number") from None
    if value < 1:
        raise UsageError(f"${MAX_FANOUT_ENV}={text!r} must be at least 1")
    return value


class _Planner:
    def __init__(
        self, workflow: Workflow, doc: SourceDocument, path: Path, catalog: StepCatalog, parameters: dict[str, Any]
    ) -> None:
        self.workflow = workflow
        self.doc = doc
        self.path = path
        self.catalog = catalog
        self.params = parameters
        self.problems: list[Problem] = []
        self.definitions: dict[str, tuple[StepDefinition, Path | None]] = {}
        self.items: dict[str, list[tuple[str, Any]] | None] = {}

    def scope(self) -> dict[str, Any]:
        """What ``${{ }}`` expressions see (a loop body's planner adds ``loop``)."""
        return {"params": self.params}

    def fail(self, loc: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        problem = self.doc.problem(loc, message, key=key)
        if str(problem) not in {str(p) for p in self.problems}:  # a fanned-out step's mistake: reported once
            self.problems.append(problem)

    # -- step definitions -----------------------------------------------------------------------------
    def check_code(self, name: str, definition: StepDefinition, def_path: Path | None) -> None:
        base = def_path.parent if def_path is not None else self.path.parent.resolve()
        for index, entry in enumerate(definition.code):
            problem = entry_problem(entry, base)
            if problem is None:
                continue
            if def_path is None:
                self.fail(("steps", name, "run", "code", index), f"code: {problem}")
            else:
                self.fail(("steps", name, "uses"), f"code of step definition {def_path}: {problem}")

    def resolve_definitions(self) -> None:
        for name, step in self.workflow.steps.items():
            if step.loop is not None:
                continue  # engine.loops plans it (after the steps it reads from)
            if step.run is not None:
                self.definitions[name] = (step.run.as_definition(name), None)
                self.check_code(name, self.definitions[name][0], None)
                continue
            assert step.uses is not None
            try:
                safe_name(step.uses, "uses:")
            except UnsafePathError as exc:
                self.fail(("steps", name, "uses"), f"{exc}: name a step definition (steps/<name>/step.yaml)")
                continue
            try:
                entry = self.catalog.find(step.uses)
            except SpecError as exc:
                self.problems.extend(exc.problems)
                continue
            if entry is None:
                names = self.catalog.names()
                hint = difflib.get_close_matches(step.uses, names, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                where = ", ".join(str(p) for p in self.catalog.search_path) or "no steps/ folder found"
                self.fail(
                    ("steps", name, "uses"), f"unknown step definition {step.uses!r}{suggestion} (searched: {where})"
                )
                continue
            self.definitions[name] = (entry.definition, entry.path)
            self.check_code(name, entry.definition, entry.path)

    # -- fan-out ----------------------------------------------------------------------------------------
    def too_wide(self, loc: tuple[Any, ...], count: int) -> bool:
        try:
            limit = max_fanout()
        except UsageError as exc:
            self.fail(loc, f"foreach: {exc}")
            return True
        if count > limit:
            self.fail(
                loc,
                f"foreach gives {count} instances; at most {limit} are allowed per step "
                f"(give each instance more work, or raise ${MAX_FANOUT_ENV})",
            )
            return True
        return False

    def expand_foreach(self, name: str, step: WorkflowStep) -> list[tuple[str, Any]] | None:
        loc = ("steps", name, "foreach")
        scope = self.scope()
        spec = step.foreach
        try:
            if spec is None:
                return None
            if isinstance(spec, RangeSpec):
                bounds = render(spec.range, scope)
                bounds = bounds if isinstance(bounds, list) else [bounds]
                if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) or not 1 <= len(bounds) <= 3:
                    self.fail(loc, f"range must be N or [start, stop, step] of integers, got {bounds!r}")
                    return []
                try:
                    span = range(*bounds)
                except ValueError as exc:
                    self.fail(loc, f"range {bounds!r}: {exc}")
                    return []
                if self.too_wide(loc, len(span)):
                    return []
                items: list[Any] = list(span)
            elif isinstance(spec, MatrixSpec):
                axes: dict[str, list[Any]] = {}
                # axes in name order: the expansion (and `index`) must not depend on YAML key order
                for axis, values in sorted(spec.matrix.items()):
                    rendered = render(values, scope)
                    if not isinstance(rendered, list):
                        self.fail((*loc, "matrix", axis), f"matrix axis {axis!r} must be a list, got {rendered!r}")
                        return []
                    axes[axis] = rendered
                if self.too_wide(loc, math.prod(len(v) for v in axes.values())):
                    return []
                items = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
            else:
                rendered = render(spec, scope)
                if not isinstance(rendered, list):
                    self.fail(
                        loc, f"foreach must give a list to fan out over, got {type(rendered).__name__} {rendered!r}"
                    )
                    return []
                items = rendered
        except ExpressionError as exc:
            self.fail(loc, f"foreach: {exc}")
            return []
        if not items:
            self.fail(loc, "foreach gives an empty list: nothing to run")
            return []
        if self.too_wide(loc, len(items)):
            return []
        return list(zip(instance_keys(items), items, strict=True))

    def instance_ids(self, name: str) -> list[str]:
        items = self.items.get(name)
        if items is None:
            return [name]
        return [f"{name}[{key}]" for key, _ in items]

    # -- references -----------------------------------------------------------------------------------
    def resolve_reference(
        self, text: Any, loc: tuple[Any, ...], scope: dict[str, Any], want_output: bool = True
    ) -> list[InputSource] | None:
        try:
            rendered = render(text, scope)
        except ExpressionError as exc:
            self.fail(loc, str(exc))
            return None
        if not isinstance(rendered, str):
            self.fail(loc, f"expected a reference 'step.output', got {rendered!r}")
            return None
        match = REFERENCE.match(rendered.strip())
        if not match:
            self.fail(loc, f"invalid reference {rendered!r}: expected 'step.output' or 'step[KEY].output'")
            return None
        step_name, key, output = match.group("step"), match.group("key"), match.group("output")
        if step_name not in self.workflow.steps:
            hint = difflib.get_close_matches(step_name, list(self.workflow.steps), n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            self.fail(loc, f"reference {rendered!r}: no step named {step_name!r}{suggestion}")
            return None
        if step_name in self.definitions:
            outputs = self.definitions[step_name][0].outputs
            if output not in outputs:
                known = ", ".join(sorted(outputs)) or "none"
                self.fail(
                    loc, f"reference {rendered!r}: step {step_name!r} has no output {output!r} (outputs: {known})"
                )
                return None
        ids = self.instance_ids(step_name)
        if key is not None:
            items = self.items.get(step_name)
            if items is None:
                self.fail(loc, f"reference {rendered!r}: step {step_name!r} is not fanned out; drop [{key}]")
                return None
            keys = [k for k, _ in items]
            if "*" in key:
                # a slice of a fan-out (step[llll-*-ggH].output): the instances whose key matches the glob
                picked = [i for i, k in enumerate(keys) if fnmatch.fnmatchcase(k, key)]
                if not picked:
                    self.fail(loc, f"reference {rendered!r}: no instance of {step_name!r} matches {key!r} "
                                   f"(instances: {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})")  # fmt: skip
                    return None
                ids = [ids[i] for i in picked]
            elif key in keys:
                ids = [ids[keys.index(key)]]
            elif key.isdigit() and int(key) < len(ids):
                ids = [ids[int(key)]]
            else:
                self.fail(
                    loc, f"reference {rendered!r}: {step_name!r} has no instance {key!r} (instances: {', '.join(keys)})"
                )
                return None
        return [InputSource(step_id=i, output=output) for i in ids]

    # -- one step instance -----------------------------------------------------------------------------
    def plan_instance(
        self,
        name: str,
        step: WorkflowStep,
        definition: StepDefinition,
        def_path: Path | None,
        index: int | None,
        key: str | None,
        item: Any,
    ) -> PlannedStep | None:
        base = ("steps", name)
        scope: dict[str, Any] = self.scope()
        if index is not None:
            scope.update(item=item, index=index, key=key)
        parameters: dict[str, Any] = {}
        for pname, raw in step.with_.items():
            if pname not in definition.parameters:
                hint = difflib.get_close_matches(pname, list(definition.parameters), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                known = ", ".join(sorted(definition.parameters)) or "none"
                self.fail(
                    (*base, "with", pname),
                    f"step {definition.name!r} has no parameter {pname!r}{suggestion} (parameters: {known})",
                    key=True,
                )
                continue
            try:
                value = render(raw, scope)
            except ExpressionError as exc:
                self.fail((*base, "with", pname), f"with.{pname}: {exc}")
                continue
            parameters[pname] = value
        for pname, pspec in definition.parameters.items():
            if pname not in parameters:
                if pspec.default is None:
                    self.fail(
                        (*base, "with"),
                        f"parameter {pname!r} of step {definition.name!r} has no default: bind it under with:",
                    )
                    continue
                parameters[pname] = pspec.default
            ok = self.check_type(pspec, parameters[pname], (*base, "with", pname), pname)
            if ok is not None:
                parameters[pname] = ok
        for pname, pspec in definition.parameters.items():
            if pname in parameters:
                parameters[pname] = narrowed(pspec, parameters[pname], parameters)
        inputs: dict[str, list[InputSource]] = {}
        for iname, binding in step.inputs.items():
            loc = (*base, "inputs", iname)
            if iname not in definition.inputs:
                known = ", ".join(sorted(definition.inputs)) or "none"
                self.fail(loc, f"step {definition.name!r} has no input {iname!r} (inputs: {known})", key=True)
                continue
            sources: list[InputSource] = []
            if isinstance(binding, FileInput):
                try:
                    rendered_path = str(render(binding.path, scope))  # ${{ }} interpolates in a path too
                except ExpressionError as exc:
                    self.fail((*loc, "path"), f"inputs.{iname}.path: {exc}")
                    continue
                file_path = (self.path.parent / rendered_path).resolve()
                if not file_path.exists():
                    self.fail((*loc, "path"), f"input file {rendered_path!r} does not exist (looked at {file_path})")
                    continue
                problem = _file_input_problem(file_path, definition.inputs[iname].kind)
                if problem is not None:
                    self.fail((*loc, "path"), f"input {binding.path!r}: {problem}")
                    continue
                sources = [InputSource(path=file_path)]
            else:
                refs = binding if isinstance(binding, list) else [binding]
                for i, ref in enumerate(refs):
                    resolved = self.resolve_reference(ref, (*loc, i) if isinstance(binding, list) else loc, scope)
                    if resolved is not None:
                        sources.extend(resolved)
            spec = definition.inputs[iname]
            if len(sources) > 1 and not spec.multiple:
                self.fail(
                    loc,
                    f"input {iname!r} takes one artifact but gets {len(sources)} "
                    f"(fan-in needs an input declared 'multiple: true'; pick one instance with "
                    f"step[KEY].output)",
                )
                continue
            inputs[iname] = sources
        for iname, spec in definition.inputs.items():
            if iname not in step.inputs and not spec.optional:
                self.fail(
                    (*base, "inputs") if step.inputs else base,
                    f"required input {iname!r} of step {definition.name!r} is not bound",
                )
        depends = sorted({s.step_id for srcs in inputs.values() for s in srcs if s.step_id})
        for need_index, need in enumerate(step.needs):
            if need not in self.workflow.steps:
                hint = difflib.get_close_matches(need, list(self.workflow.steps), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                self.fail((*base, "needs", need_index), f"needs: no step named {need!r}{suggestion}")
                continue
            depends = sorted(set(depends) | set(self.instance_ids(need)))
        step_id = name if index is None else f"{name}[{key}]"
        return PlannedStep(
            id=step_id,
            template=name,
            definition=definition,
            definition_path=def_path,
            parameters=parameters,
            inputs=inputs,
            depends_on=depends,
            resources=step.resources or definition.resources,
            retries=step.retries or definition.retries,
            timeout=step.timeout or definition.timeout,
            index=index,
            item=item,
            fan_out=index is not None,
            code_base=self.path.parent.resolve() if def_path is None else None,
        )

    def check_type(self, spec: ParameterSpec, value: Any, loc: tuple[Any, ...], name: str) -> Any:
        if has_expression(value):
            return value
        try:
            coerced = coerce_value(spec.type, value)
        except ValueError as exc:
            self.fail(loc, f"parameter {name!r}: {exc}")
            return None
        if spec.choices is not None and coerced not in spec.choices:
            self.fail(loc, f"parameter {name!r}: {coerced!r} is not one of {spec.choices}")
            return None
        return coerced

    # -- whole workflow --------------------------------------------------------------------------------
    def plan(self) -> Plan:
        from nsbiflow.engine.loops import plan_loops  # the loop planner builds on this one

        self.resolve_definitions()
        for name, step in self.workflow.steps.items():
            self.items[name] = self.expand_foreach(name, step)
        if not self.check_template_cycles():
            raise SpecError(self.problems)
        steps: dict[str, PlannedStep] = {}
        templates: dict[str, list[str]] = {}
        for name, placeholder in plan_loops(self).items():
            steps[name], templates[name] = placeholder, [name]
        for name, step in self.workflow.steps.items():
            if name not in self.definitions or name in steps:
                continue
            definition, def_path = self.definitions[name]
            items = self.items[name]
            instances = [(None, None, None)] if items is None else [(i, k, v) for i, (k, v) in enumerate(items)]
            for index, key, item in instances:
                planned = self.plan_instance(name, step, definition, def_path, index, key, item)
                if planned is not None:
                    steps[planned.id] = planned
                    templates.setdefault(name, []).append(planned.id)
        outputs: dict[str, list[InputSource]] = {}
        for oname, ref in self.workflow.outputs.items():
            resolved = self.resolve_reference(ref, ("outputs", oname), self.scope())
            if resolved is not None:
                outputs[oname] = resolved
        self.check_interface()
        self.check_unique_names(templates)
        if self.problems:
            raise SpecError(self.problems)
        sorter = graphlib.TopologicalSorter({sid: s.depends_on for sid, s in steps.items()})
        order = list(sorter.static_order())
        return Plan(
            workflow=self.workflow,
            path=self.path,
            document=self.doc,
            parameters=self.params,
            steps={sid: steps[sid] for sid in order},
            order=order,
            outputs=outputs,
            templates=templates,
        )

    def check_template_cycles(self) -> bool:
        from nsbiflow.engine.loops import body_bindings

        graph: dict[str, set[str]] = {}
        for name, step in self.workflow.steps.items():
            deps: set[str] = {n for n in step.needs if n in self.workflow.steps}
            for binding in [*step.inputs.values(), *body_bindings(step)]:
                refs = binding if isinstance(binding, list) else [binding] if isinstance(binding, str) else []
                for ref in refs:
                    match = re.match(r"^\s*([a-z0-9][a-z0-9_-]*)", ref)
                    if match and match.group(1) in self.workflow.steps:
                        deps.add(match.group(1))
            graph[name] = deps
        try:
            graphlib.TopologicalSorter(graph).prepare()
            return True
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])
            self.fail(
                ("steps", cycle[0]),
                key=True,
                message=f"dependency cycle: {' -> '.join(reversed(cycle))}; remove one of these references",
            )
            return False

    def check_unique_names(self, templates: dict[str, list[str]]) -> None:
        """Step instances whose names sanitise alike would share a work directory or a stage name."""
        seen: dict[str, tuple[str, str]] = {}
        for template, ids in templates.items():
            for step_id in ids:
                form = canonical_name(step_id)
                if form in seen and seen[form][1] != step_id:
                    _other_template, other = seen[form]
                    self.fail(
                        ("steps", template),
                        f"step instances {other!r} and {step_id!r} would share the name {form!r} on disk and on "
                        "other engines: rename one of the steps",
                        key=True,
                    )
                    continue
                seen[form] = (template, step_id)

    def check_interface_shared_files(self) -> None:
        """A file an interface input reads must be in the interface wherever it is read: a reinterpretation that
        points ``fit.model`` elsewhere would otherwise leave ``toys.model`` on the old model file."""
        listed = set(self.workflow.interface.inputs)
        readers: dict[str, list[str]] = {}
        for step_name, step in self.workflow.steps.items():
            for input_name, binding in step.inputs.items():
                if isinstance(binding, FileInput):
                    readers.setdefault(os.path.normpath(binding.path), []).append(f"{step_name}.{input_name}")
        for i, ref in enumerate(self.workflow.interface.inputs):
            step_name, _, input_name = ref.partition(".")
            owner = self.workflow.steps.get(step_name)
            bound = owner.inputs.get(input_name) if owner is not None else None
            if not isinstance(bound, FileInput):
                continue
            missing = [r for r in readers[os.path.normpath(bound.path)] if r not in listed]
            if missing:
                self.fail(
                    ("interface", "inputs", i),
                    f"interface input {ref!r} reads {bound.path!r}, which {', '.join(missing)} also read"
                    f"{'s' if len(missing) == 1 else ''}: list {'it' if len(missing) == 1 else 'them'} in "
                    "interface.inputs too, so a reinterpretation changes the file for every step that reads it",
                )

    def check_interface(self) -> None:
        interface = self.workflow.interface
        for i, pname in enumerate(interface.parameters):
            if pname not in self.workflow.parameters:
                self.fail(("interface", "parameters", i), f"interface parameter {pname!r} is not a workflow parameter")
        for i, ref in enumerate(interface.inputs):
            step_name, _, input_name = ref.partition(".")
            step = self.workflow.steps.get(step_name)
            if step is None or input_name not in step.inputs or not isinstance(step.inputs[input_name], FileInput):
                self.fail(
                    ("interface", "inputs", i),
                    f"interface input {ref!r} must name a file input 'step.input' bound with {{path: ...}}",
                )
        self.check_interface_shared_files()
        for i, result in enumerate(interface.results):
            if result not in self.workflow.outputs:
                self.fail(("interface", "results", i), f"interface result {result!r} is not a workflow output")


def build_plan(
    workflow: Workflow,
    doc: SourceDocument,
    path: Path,
    *,
    overrides: dict[str, str] | None = None,
    catalog: StepCatalog | None = None,
) -> Plan:
    """Plan an already loaded workflow."""
    params = resolve_parameters(workflow, overrides or {}, doc)
    catalog = catalog or StepCatalog.for_workflow(path)
    plan = _Planner(workflow, doc, path, catalog, params).plan()
    from nsbiflow.engine.checks import plan_problems  # checks installed packages contribute (entry points)

    problems = plan_problems(plan)
    if problems:
        raise SpecError(problems)
    return plan


def load_plan(
    path: str | Path, *, overrides: dict[str, str] | None = None, steps_dirs: list[Path] | None = None
) -> Plan:
    """Load, validate and plan a workflow file; every problem is reported as a located ``SpecError``."""
    workflow, doc = load_workflow_document(path)
    catalog = StepCatalog.for_workflow(path, steps_dirs)
    return build_plan(workflow, doc, Path(path), overrides=overrides, catalog=catalog)
