"""Loops: a sub-DAG of steps repeated until an expression over its outputs says stop (or ``max_iterations``).

A ``loop:`` step is planned in two parts. At plan time (``plan_loops``) everything that can be checked
statically is: the body's step definitions, that the body is a DAG, that ``until``, ``loop.previous`` bindings,
``loop.current`` expressions and the loop's ``outputs`` name real body steps and outputs; the loop becomes one
*placeholder* step of the outer plan whose inputs are the outer artifacts the body reads and whose outputs are
the loop's outputs (from the last iteration) plus ``iterations`` (a JSON record of every iteration). At run time
(``LoopPlan.iteration``) a backend plans one iteration's body template by template, since a fan-out may read
an output of this iteration (``loop.current``) or of the previous one (``loop.previous``).

Body step instances are ordinary ``PlannedStep``s named ``LOOP.iN.STEP[KEY]``: their cache keys are the usual
step keys, so a re-run resumes at the iteration it reached and a second run is all cache hits.
"""

from __future__ import annotations

import ast
import graphlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsbiflow.engine.expressions import EXPRESSION, ExpressionError, evaluate, has_expression
from nsbiflow.engine.plan import InputSource, PlannedStep, _Planner
from nsbiflow.errors import SpecError
from nsbiflow.spec.models import IOSpec, LoopSpec, StepDefinition, WorkflowStep
from nsbiflow.store.digest import digest_json

LOOP_IMAGE = "nsbiflow/loop"
"""The placeholder's image: a loop is run by the backend itself, never as a container of its own."""

ITERATIONS_OUTPUT = "iterations"
"""The output every loop has besides its declared ones: ``iterations.json`` (per iteration: steps, keys, outputs)."""

PREVIOUS = re.compile(r"^\s*loop\.previous\.(?P<step>[a-z0-9][a-z0-9_-]*)\.(?P<output>[A-Za-z_][A-Za-z0-9_-]*)\s*$")
_HEAD = re.compile(r"^\s*([a-z0-9][a-z0-9_-]*)")


def is_loop_binding(text: Any) -> bool:
    """Whether an input binding is ``loop.previous.STEP.OUTPUT``."""
    return isinstance(text, str) and bool(PREVIOUS.match(text))


def body_bindings(step: WorkflowStep) -> list[str]:
    """The input bindings of a loop's body that reference outer steps (edges of the outer DAG)."""
    if step.loop is None:
        return []
    refs: list[str] = []
    for body in step.loop.steps.values():
        for binding in body.inputs.values():
            for ref in binding if isinstance(binding, list) else [binding] if isinstance(binding, str) else []:
                head = _HEAD.match(ref)
                if head and head.group(1) not in step.loop.steps and not is_loop_binding(ref):
                    refs.append(ref)
    return refs


def loop_references(text: Any) -> list[tuple[str, str, str]]:
    """``(current|previous, STEP, OUTPUT)`` for every ``loop.current.S.O`` / ``loop.previous.S.O`` in expressions."""
    found: list[tuple[str, str, str]] = []
    if isinstance(text, list):
        return [r for v in text for r in loop_references(v)]
    if isinstance(text, dict):
        return [r for v in text.values() for r in loop_references(v)]
    if not isinstance(text, str):
        return found
    for match in EXPRESSION.finditer(text):
        try:
            tree = ast.parse(match.group(1).strip(), mode="eval")
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            chain: list[str] = []
            cursor: ast.AST = node
            while isinstance(cursor, ast.Attribute):
                chain.append(cursor.attr)
                cursor = cursor.value
            if isinstance(cursor, ast.Name) and cursor.id == "loop":
                chain.reverse()
                if (
                    len(chain) >= 3
                    and chain[0] in ("current", "previous")
                    and chain[:3] not in [list(f) for f in found]
                ):
                    found.append((chain[0], chain[1], chain[2]))
    return found


class _Values(Mapping[str, Any]):
    """``loop.current`` / ``loop.previous``: body step -> output -> parsed JSON, read only when used."""

    def __init__(self, outputs: dict[str, list[str]], read: Callable[[str, str], Any]) -> None:
        self._outputs = outputs  # template -> instance ids of that iteration
        self._read = read

    def __getitem__(self, step: str) -> Any:
        ids = self._outputs[step]
        return _StepValues(ids, self._read, step)

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


class _StepValues(Mapping[str, Any]):
    def __init__(self, ids: list[str], read: Callable[[str, str], Any], step: str) -> None:
        self._ids, self._read, self._step = ids, read, step

    def __getitem__(self, output: str) -> Any:
        values = [self._read(i, output) for i in self._ids]
        return values[0] if len(self._ids) == 1 and "[" not in self._ids[0] else values

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, output: object) -> bool:
        return isinstance(output, str)


@dataclass
class Iteration:
    """The state a backend keeps while it runs one iteration (instance ids per body template)."""

    index: int
    ids: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class LoopPlan:
    """A planned loop: what the static checks established, and how to plan each iteration."""

    name: str
    spec: LoopSpec
    definitions: dict[str, tuple[StepDefinition, Path | None]]
    generations: list[list[str]]
    outer: dict[str, list[InputSource]]
    """Placeholder input name -> the outer sources behind it (what the body reads from outside the loop)."""
    parent: _Planner

    def step_prefix(self, index: int) -> str:
        """``LOOP.iN.``: the prefix of iteration ``index``'s step ids."""
        return f"{self.name}.i{index}."

    def plan_template(
        self,
        template: str,
        iteration: Iteration,
        previous: Iteration | None,
        read: Callable[[str, str], Any],
    ) -> list[PlannedStep]:
        """The instances of body step ``template`` in ``iteration`` (everything it reads has finished).

        ``read(step_id, output)`` returns the parsed JSON of a finished instance's file output.
        Raises ``SpecError`` (located in the workflow file) when the body cannot be planned.
        """
        planner = _BodyPlanner(self, iteration, previous, read)
        step = self.spec.steps[template]
        planner.items[template] = planner.expand_foreach(template, step)
        definition, def_path = self.definitions[template]
        instances = planner.items[template]
        planned: list[PlannedStep] = []
        rows = [(None, None, None)] if instances is None else [(i, k, v) for i, (k, v) in enumerate(instances)]
        for index, key, item in rows:
            result = planner.plan_instance(template, step, definition, def_path, index, key, item)
            if result is not None:
                result.id = self.step_prefix(iteration.index) + result.id
                planned.append(result)
        if planner.problems:
            raise SpecError(planner.problems)
        iteration.ids[template] = [p.id for p in planned]
        return planned

    def should_stop(self, iteration: Iteration, read: Callable[[str, str], Any]) -> bool:
        """Evaluate ``until`` after ``iteration``; a problem is a located ``SpecError``."""
        expression = EXPRESSION.fullmatch(self.spec.until.strip())
        assert expression is not None  # the model's pattern
        try:
            return bool(evaluate(expression.group(1), _loop_scope(self.parent, iteration, None, read)))
        except ExpressionError as exc:
            loc = ("steps", self.name, "loop", "until")
            raise SpecError([self.parent.doc.problem(loc, f"until: {exc}")]) from None

    def output_source(self, name: str, iteration: Iteration) -> str:
        """The instance id whose output is the loop's output ``name`` after ``iteration``."""
        step, _, _ = self.spec.outputs[name].partition(".")
        return iteration.ids[step][0]


def _loop_scope(
    parent: _Planner, iteration: Iteration, previous: Iteration | None, read: Callable[[str, str], Any]
) -> dict[str, Any]:
    loop: dict[str, Any] = {
        "iteration": iteration.index,
        "first": iteration.index == 0,
        "current": _Values(iteration.ids, read),
        "previous": _Values(previous.ids if previous else {}, read),
    }
    return {**parent.scope(), "loop": loop}


class _BodyPlanner(_Planner):
    """Plans body steps of one iteration with the outer planner's definitions and fan-outs."""

    def __init__(
        self,
        loop: LoopPlan,
        iteration: Iteration | None,
        previous: Iteration | None,
        read: Callable[[str, str], Any] | None,
    ) -> None:
        parent = loop.parent
        steps = {**parent.workflow.steps, **loop.spec.steps}
        super().__init__(
            parent.workflow.model_copy(update={"steps": steps}), parent.doc, parent.path, parent.catalog, parent.params
        )
        self.loop = loop
        self.iteration = iteration
        self.previous = previous
        self.read = read or (lambda step_id, output: None)
        self.definitions = {**parent.definitions, **loop.definitions}
        self.items = dict(parent.items)

    def fail(self, loc: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        if len(loc) >= 2 and loc[0] == "steps" and loc[1] in self.loop.spec.steps:
            loc = ("steps", self.loop.name, "loop", *loc)
        super().fail(loc, message, key=key)

    def scope(self) -> dict[str, Any]:
        iteration = self.iteration or Iteration(0)
        return _loop_scope(self.loop.parent, iteration, self.previous, self.read)

    def instance_ids(self, name: str) -> list[str]:
        if name in self.loop.spec.steps:
            assert self.iteration is not None
            return self.iteration.ids.get(name, [])
        return list(super().instance_ids(name))

    def resolve_reference(
        self, text: Any, loc: tuple[Any, ...], scope: dict[str, Any], want_output: bool = True
    ) -> list[InputSource] | None:
        match = PREVIOUS.match(text) if isinstance(text, str) else None
        if match is None:
            return super().resolve_reference(text, loc, scope, want_output)
        if self.previous is None:
            return []  # the first iteration: the input stays unbound (it is optional: checked statically)
        ids = self.previous.ids.get(match.group("step"), [])
        return [InputSource(step_id=i, output=match.group("output")) for i in ids]


# -- static planning ---------------------------------------------------------------------------------------------
def plan_loops(planner: _Planner) -> dict[str, PlannedStep]:
    """Check every ``loop:`` step of the workflow and return its placeholder step (problems go to the planner)."""
    placeholders: dict[str, PlannedStep] = {}
    for name, step in planner.workflow.steps.items():
        if step.loop is not None:
            placeholder = _plan_loop(planner, name, step.loop)
            if placeholder is not None:
                placeholders[name] = placeholder
    return placeholders


def _plan_loop(planner: _Planner, name: str, spec: LoopSpec) -> PlannedStep | None:
    from nsbiflow.engine.keys import code_identity, definition_identity  # keys imports the planner

    base = ("steps", name, "loop")
    before = len(planner.problems)
    for body_name in spec.steps:
        if body_name in planner.workflow.steps:
            planner.fail(
                (*base, "steps", body_name),
                f"loop body step {body_name!r} has the name of a workflow step; rename one of them",
                key=True,
            )
    definitions = _body_definitions(planner, name, spec)
    if len(planner.problems) > before or len(definitions) < len(spec.steps):
        return None

    # the body's DAG: data edges, needs, and loop.current reads in foreach/with
    graph: dict[str, set[str]] = {}
    for body_name, body in spec.steps.items():
        deps = {n for n in body.needs if n in spec.steps}
        for iname, binding in body.inputs.items():
            for ref in binding if isinstance(binding, list) else [binding] if isinstance(binding, str) else []:
                if is_loop_binding(ref):
                    _check_previous(planner, name, spec, definitions, body_name, iname, ref)
                    continue
                head = _HEAD.match(ref)
                if head and head.group(1) in spec.steps:
                    deps.add(head.group(1))
        for where, value in (("foreach", body.foreach), ("with", body.with_)):
            if isinstance(value, str | list | dict):
                for which, ref_step, output in loop_references(value):
                    _check_value_ref(
                        planner, (*base, "steps", body_name, where), spec, definitions, which, ref_step, output
                    )
                    if which == "current":
                        deps.add(ref_step)
        graph[body_name] = deps - {body_name} if body_name not in deps else deps
    sorter = graphlib.TopologicalSorter(graph)
    generations: list[list[str]] = []
    try:
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            generations.append(ready)
            sorter.done(*ready)
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
        planner.fail(
            (*base, "steps", cycle[0]),
            f"loop body: dependency cycle {' -> '.join(reversed(cycle))}; "
            "a loop body must be a DAG (read the previous iteration with loop.previous.STEP.OUTPUT)",
            key=True,
        )
        return None
    for which, ref_step, output in loop_references(spec.until):
        _check_value_ref(planner, (*base, "until"), spec, definitions, which, ref_step, output)
    if not loop_references(spec.until) and "loop." not in spec.until:
        planner.fail(
            (*base, "until"),
            "until must read an output of the body (loop.current.STEP.OUTPUT) or "
            "loop.iteration; otherwise it never changes",
        )
    outputs: dict[str, IOSpec] = {}
    for oname, ref in spec.outputs.items():
        ostep, _, out = ref.partition(".")
        if ostep not in spec.steps or out not in definitions[ostep][0].outputs:
            planner.fail(
                (*base, "outputs", oname),
                f"loop output {oname!r}: {ref!r} is not 'STEP.OUTPUT' of a "
                f"step of the loop's body (steps: {', '.join(spec.steps)})",
            )
            continue
        if spec.steps[ostep].foreach is not None:
            planner.fail(
                (*base, "outputs", oname),
                f"loop output {oname!r}: {ostep!r} is fanned out; name a step that gathers its instances",
            )
            continue
        outputs[oname] = definitions[ostep][0].outputs[out]
    if ITERATIONS_OUTPUT in spec.outputs:
        planner.fail(
            (*base, "outputs", ITERATIONS_OUTPUT),
            f"loop output name {ITERATIONS_OUTPUT!r} is reserved (the record of the iterations)",
            key=True,
        )
    outputs[ITERATIONS_OUTPUT] = IOSpec(kind="file", filename="iterations.json")

    # the outer artifacts the body reads become the placeholder's inputs
    outer: dict[str, list[InputSource]] = {}
    for body_name, body in spec.steps.items():
        for iname, binding in body.inputs.items():
            refs = binding if isinstance(binding, list) else [binding] if isinstance(binding, str) else []
            for index, ref in enumerate(refs):
                head = _HEAD.match(ref)
                if head is None or head.group(1) in spec.steps or is_loop_binding(ref):
                    continue
                loc = (*base, "steps", body_name, "inputs", iname, *((index,) if isinstance(binding, list) else ()))
                resolved = planner.resolve_reference(ref, loc, planner.scope())
                if resolved:
                    outer[f"outer{len(outer)}"] = resolved
            if not isinstance(binding, str | list):  # {path: ...}: hashed into the store by the backend
                rendered = str(binding.path)
                if has_expression(rendered):
                    continue
                outer[f"outer{len(outer)}"] = [InputSource(path=(planner.path.parent / rendered).resolve())]
    if len(planner.problems) > before:
        return None

    identity = {
        "loop": spec.model_dump(mode="json", by_alias=True),
        "definitions": {n: definition_identity(d) for n, (d, _) in sorted(definitions.items())},
        "code": {n: code_identity(d, p) for n, (d, p) in sorted(definitions.items())},
    }
    definition = StepDefinition.model_validate(
        {
            "name": name,
            "description": f"loop of {', '.join(spec.steps)} (at most {spec.max_iterations} iterations)",
            "image": LOOP_IMAGE,
            "command": ["nsbiflow-loop", digest_json(identity)],
            "inputs": {n: {"kind": "file", "multiple": True} for n in outer},
            "outputs": {n: o.model_dump() for n, o in outputs.items()},
        }
    )
    planner.definitions[name] = (definition, None)
    loop_plan = LoopPlan(name, spec, definitions, generations, outer, planner)
    depends = sorted({s.step_id for sources in outer.values() for s in sources if s.step_id})
    _static_body_checks(loop_plan)
    if len(planner.problems) > before:
        return None
    return PlannedStep(
        id=name,
        template=name,
        definition=definition,
        definition_path=None,
        parameters=dict(planner.params),  # in the placeholder's key: `until` and the body read them
        inputs=outer,
        depends_on=depends,
        resources=definition.resources,
        retries=definition.retries,
        timeout=None,
        loop=loop_plan,
    )


def _body_definitions(planner: _Planner, name: str, spec: LoopSpec) -> dict[str, tuple[StepDefinition, Path | None]]:
    """The body's step definitions through the outer planner's catalog, problems located under the loop."""
    saved_fail = planner.fail
    sub = planner.workflow.model_copy(update={"steps": spec.steps})

    def fail(loc: tuple[Any, ...], message: str, *, key: bool = False) -> None:
        if len(loc) >= 2 and loc[0] == "steps":
            loc = ("steps", name, "loop", *loc)
        saved_fail(loc, message, key=key)

    saved, saved_defs = planner.workflow, planner.definitions
    planner.workflow, planner.definitions = sub, {}
    planner.fail = fail  # type: ignore[method-assign]
    try:
        planner.resolve_definitions()
        return planner.definitions
    finally:
        planner.workflow, planner.definitions = saved, saved_defs
        del planner.fail


def _check_previous(
    planner: _Planner,
    name: str,
    spec: LoopSpec,
    definitions: dict[str, tuple[StepDefinition, Path | None]],
    body_name: str,
    iname: str,
    ref: str,
) -> None:
    loc = ("steps", name, "loop", "steps", body_name, "inputs", iname)
    match = PREVIOUS.match(ref)
    assert match is not None
    _check_value_ref(
        planner, loc, spec, definitions, "previous", match.group("step"), match.group("output"), file_only=False
    )
    spec_in = definitions[body_name][0].inputs.get(iname)
    if spec_in is not None and not spec_in.optional:
        planner.fail(
            loc,
            f"input {iname!r} reads {ref.strip()!r}, which the first iteration does not have; "
            "declare the input 'optional: true'",
        )


def _check_value_ref(
    planner: _Planner,
    loc: tuple[Any, ...],
    spec: LoopSpec,
    definitions: dict[str, tuple[StepDefinition, Path | None]],
    which: str,
    step: str,
    output: str,
    *,
    file_only: bool = True,
) -> None:
    if step not in spec.steps:
        planner.fail(loc, f"loop.{which}.{step}: no step {step!r} in the loop's body (steps: {', '.join(spec.steps)})")
        return
    outputs = definitions[step][0].outputs
    if output not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        planner.fail(loc, f"loop.{which}.{step}.{output}: step {step!r} has no output {output!r} (outputs: {known})")
        return
    if file_only and outputs[output].kind != "file":
        planner.fail(loc, f"loop.{which}.{step}.{output}: expressions read JSON files; {output!r} is a directory")


def _static_body_checks(loop: LoopPlan) -> None:
    """Plan the body steps whose fan-out and parameters do not read loop outputs (iteration 0)."""
    iteration = Iteration(0)
    planner = _BodyPlanner(loop, iteration, None, None)
    for generation in loop.generations:
        for template in generation:
            step = loop.spec.steps[template]
            if loop_references(step.foreach) or loop_references(step.with_) or _reads_loop(step):
                iteration.ids[template] = [f"{loop.step_prefix(0)}{template}[?]"]
                continue
            planner.items[template] = planner.expand_foreach(template, step)
            definition, def_path = loop.definitions[template]
            instances = planner.items[template]
            rows = [(None, None, None)] if instances is None else [(i, k, v) for i, (k, v) in enumerate(instances)]
            ids = []
            for index, key, item in rows:
                result = planner.plan_instance(template, step, definition, def_path, index, key, item)
                if result is not None:
                    ids.append(loop.step_prefix(0) + result.id)
            iteration.ids[template] = ids
    for problem in planner.problems:
        if str(problem) not in {str(p) for p in loop.parent.problems}:
            loop.parent.problems.append(problem)


def _reads_loop(step: WorkflowStep) -> bool:
    text = json.dumps([step.foreach if not hasattr(step.foreach, "model_dump") else None, step.with_], default=str)
    return "loop." in text and "${{" in text
