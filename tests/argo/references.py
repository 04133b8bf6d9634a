"""A reference checker for compiled Workflows: what Argo's own linter checks on a cluster, offline.

Every ``{{...}}`` in a Workflow's spec must name something that exists where it is used:

- ``inputs.parameters.X`` / ``inputs.artifacts.X``: an input of the enclosing template;
- ``outputs.parameters.X`` / ``outputs.artifacts.X``: an output of the enclosing template;
- ``item`` / ``item.KEY``: inside a DAG task with ``withItems`` whose every item has ``KEY`` (or with
  ``withParam``, whose items are only known at run time);
- in a DAG task, ``inputs.parameters.X`` / ``inputs.artifacts.X``: an input of the DAG's own template;
- ``=EXPR`` (an expression template): every ``tasks.T.outputs...`` and ``inputs.parameters.X`` it names resolves
  as above;
- ``tasks.T.outputs.(parameters|artifacts).X`` (and ``tasks.T.status`` etc.): a task ``T`` of the same DAG
  that the referring task depends on, and an output ``X`` of ``T``'s template;
- ``workflow.name`` and the other global variables Argo documents.

and every DAG dependency must name a task of the same DAG.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
GLOBALS = {
    "workflow.name", "workflow.namespace", "workflow.uid", "workflow.serviceAccountName",
    "workflow.creationTimestamp", "workflow.duration", "workflow.status", "workflow.mainEntrypoint",
    "pod.name", "retries", "node.name", "steps.name", "tasks.name", "lastRetry.exitCode", "lastRetry.status",
}  # fmt: skip
TASK_FIELDS = {"status", "id", "startedAt", "finishedAt", "exitCode", "ip"}


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{path}.<key>")
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _names(section: dict[str, Any] | None, kind: str) -> set[str]:
    return {entry["name"] for entry in (section or {}).get(kind, []) or []}


def _check_template_scope(template: dict[str, Any], where: str, problems: list[str]) -> None:
    """References inside a template (not its DAG tasks): inputs, outputs, globals."""
    scope = {k: v for k, v in template.items() if k != "dag"}
    for path, text in _strings(scope, where):
        for ref in REFERENCE.findall(text):
            problem = _resolve_plain(ref, template)
            if problem:
                problems.append(f"{path}: {{{{{ref}}}}}: {problem}")


def _resolve_plain(ref: str, template: dict[str, Any]) -> str | None:
    if ref in GLOBALS or ref.startswith("workflow.parameters.") or ref.startswith("workflow.labels."):
        return None if not ref.startswith("workflow.parameters.") else "the workflow declares no parameters"
    parts = ref.split(".")
    if len(parts) == 3 and parts[0] in ("inputs", "outputs") and parts[1] in ("parameters", "artifacts"):
        declared = _names(template.get(parts[0]), parts[1])
        if parts[2] in declared:
            return None
        return f"template {template['name']!r} has no {parts[0]}.{parts[1]} {parts[2]!r}"
    return "not a reference Argo resolves here"


def check_workflow(workflow: dict[str, Any]) -> list[str]:
    """Every unresolved ``{{...}}`` reference and dangling dependency of a compiled Workflow, one line each."""
    problems: list[str] = []
    spec = workflow["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    if spec.get("entrypoint") not in templates:
        problems.append(f"spec.entrypoint: no template {spec.get('entrypoint')!r}")
    for path, text in _strings({k: v for k, v in spec.items() if k != "templates"}, "spec"):
        for ref in REFERENCE.findall(text):
            if ref not in GLOBALS:
                problems.append(f"{path}: {{{{{ref}}}}}: not a global variable")
    for name, template in templates.items():
        where = f"template {name}"
        _check_template_scope(template, where, problems)
        tasks = {t["name"]: t for t in (template.get("dag") or {}).get("tasks", [])}
        for task_name, task in tasks.items():
            twhere = f"{where} task {task_name}"
            if task.get("template") not in templates:
                problems.append(f"{twhere}: template {task.get('template')!r} does not exist")
            depends = task.get("dependencies") or []
            for dep in depends:
                if dep not in tasks:
                    problems.append(f"{twhere}: dependency {dep!r} is not a task of this DAG")
            items = task.get("withItems")
            if items is None and "withParam" in task:
                items = _RUNTIME_ITEMS
            for path, text in _strings({k: v for k, v in task.items() if k != "withItems"}, twhere):
                for ref in REFERENCE.findall(text):
                    problem = _resolve_task(ref, task, items, tasks, templates, set(depends), template)
                    if problem:
                        problems.append(f"{path}: {{{{{ref}}}}}: {problem}")
            target = templates.get(task.get("template", ""))
            if target is not None:
                given = _names(task.get("arguments"), "parameters")
                wanted = {p["name"] for p in (target.get("inputs") or {}).get("parameters", []) or []
                          if "value" not in p and "default" not in p}  # fmt: skip
                for missing in sorted(wanted - given):
                    problems.append(f"{twhere}: input parameter {missing!r} of {target['name']!r} is not given")
                for missing in sorted(given - _names(target.get("inputs"), "parameters")):
                    problems.append(f"{twhere}: argument {missing!r} is not an input of {target['name']!r}")
                artifacts = _names(task.get("arguments"), "artifacts")
                for missing in sorted(_names(target.get("inputs"), "artifacts") - artifacts):
                    problems.append(f"{twhere}: input artifact {missing!r} of {target['name']!r} is not given")
    return problems


_RUNTIME_ITEMS: list[Any] = []
"""Marks a ``withParam`` task: its items (and their keys) are only known at run time."""
_EXPRESSION_NAME = re.compile(r"(tasks\.[A-Za-z0-9_-]+\.outputs\.(?:parameters|artifacts)\.[A-Za-z0-9_-]+|"
                              r"inputs\.(?:parameters|artifacts)\.[A-Za-z0-9_-]+)")


def _resolve_task(
    ref: str,
    task: dict[str, Any],
    items: list[Any] | None,
    tasks: dict[str, dict[str, Any]],
    templates: dict[str, dict[str, Any]],
    depends: set[str],
    dag_template: dict[str, Any] | None = None,
) -> str | None:
    if ref in GLOBALS:
        return None
    if ref.startswith("="):
        for name in _EXPRESSION_NAME.findall(ref):
            problem = _resolve_task(name, task, items, tasks, templates, depends, dag_template)
            if problem:
                return f"{name}: {problem}"
        return None
    parts = ref.split(".")
    if len(parts) == 3 and parts[0] == "inputs" and parts[1] in ("parameters", "artifacts") and dag_template:
        declared = _names(dag_template.get("inputs"), parts[1])
        where = dag_template["name"]
        return None if parts[2] in declared else f"template {where!r} has no inputs.{parts[1]} {parts[2]!r}"
    if parts[0] == "item":
        if items is None:
            return "the task has no withItems"
        if len(parts) == 1 or items is _RUNTIME_ITEMS:
            return None
        missing = [i for i, item in enumerate(items) if not isinstance(item, dict) or parts[1] not in item]
        return f"items {missing[:3]} have no key {parts[1]!r}" if missing else None
    if parts[0] == "tasks" and len(parts) >= 3:
        other = tasks.get(parts[1])
        if other is None:
            return f"no task {parts[1]!r} in this DAG"
        if parts[1] not in depends:
            return f"task {parts[1]!r} is not a dependency of {task['name']!r}"
        if len(parts) == 3 and parts[2] in TASK_FIELDS:
            return None
        if len(parts) == 5 and parts[2] == "outputs" and parts[3] in ("parameters", "artifacts"):
            outputs = templates.get(other.get("template", ""), {}).get("outputs")
            return None if parts[4] in _names(outputs, parts[3]) else f"task {parts[1]!r} has no output {parts[4]!r}"
    return "not a reference Argo resolves in a DAG task"


def substitute(workflow: dict[str, Any], task_name: str, item: int | None = None) -> tuple[list[str], dict[str, str]]:
    """What Argo hands the container of one task (instance): the task's arguments resolved against its item,
    then the template's ``{{inputs.parameters.X}}`` and ``{{workflow.name}}`` replaced, one pass each as Argo does.

    A ``{{`` left in the result is what Argo would try to resolve again and fail on (or expand).
    """
    spec = workflow["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    dag = templates[spec["entrypoint"]]["dag"]["tasks"]
    task = next(t for t in dag if t["name"] == task_name)
    values = dict(task["withItems"][item]) if item is not None else {}

    def resolve_item(text: str) -> str:
        return REFERENCE.sub(lambda m: str(values[m.group(1)[5:]]) if m.group(1).startswith("item.") else m.group(0),
                             text)  # fmt: skip

    arguments = {p["name"]: resolve_item(p["value"]) for p in (task.get("arguments") or {}).get("parameters", [])}
    template = templates[task["template"]]

    def resolve(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref.startswith("inputs.parameters."):
                return arguments[ref.removeprefix("inputs.parameters.")]
            return "wf-test" if ref == "workflow.name" else m.group(0)

        return REFERENCE.sub(one, text)

    container = template["container"]
    argv = [resolve(a) for a in container["command"] + container.get("args", [])]
    env = {e["name"]: resolve(e["value"]) for e in container.get("env", []) if "value" in e}
    return argv, env
