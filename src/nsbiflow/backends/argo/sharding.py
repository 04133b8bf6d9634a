"""Fan-outs at ATLAS scale on Argo: sharded loops, compact items, an object-size guard, and pod packing.

Argo limits this module designs around: a ``withItems``/``withParam`` list of a few thousand items has taken
controllers down (OOM reports at ~6.6k items), and the Workflow object must fit in etcd (~1 MiB). So:

- **compact items** (fan-outs over ``FanOutLimits.compact_over`` instances or ``compact_bytes``): the constant
  prefix and suffix of every item value (``nsbiflow/{{workflow.name}}/simulate/`` ... ``/events/events.parquet``)
  move into the task's argument template, and columns equal to another column are dropped; the per-instance payload is
  the part that differs (typically 60-120 bytes instead of 300-400);
- **sharded loops** (fan-outs over ``FanOutLimits.max_items``): the task calls a small DAG template
  ``<task>-shards`` whose tasks loop over consecutive slices of at most ``max_items`` items each (balanced),
  so no list the controller expands exceeds the safe size; downstream tasks still depend on ``<task>``, so
  the DAG keeps the plan's shape;
- **size guard**: the compiled object's JSON (what the API server stores) must stay under
  ``max_object_bytes``, and no list of the object may exceed ``max_items`` (a fan-in of more artifacts
  than that is refused with a hint to gather in stages).

``members_per_pod`` is the packing rule: how many ensemble members one GPU of a node pool trains together
as one batched model.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from hera.workflows import models as m
from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.errors import NsbiflowError
from nsbiflow.spec.models import parse_quantity

SHARD_SUFFIX = "-shards"
ITEM_REF = re.compile(r"\{\{item\.([A-Za-z0-9_]+)\}\}")


class FanOutError(NsbiflowError):
    """The compiled Workflow would break one of Argo's size limits."""


class FanOutLimits(BaseModel):
    """Limits of the compiled Workflow (the cluster profile's ``fanOut``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    max_items: int = Field(1000, ge=2, alias="maxItems", description="largest list (loop items, artifacts) "
                           "one Argo object may hold; bigger fan-outs are sharded")  # fmt: skip
    compact_over: int = Field(100, ge=1, alias="compactOver",
                              description="fan-outs with more instances get compact items")  # fmt: skip
    compact_bytes: int = Field(32 * 1024, ge=0, alias="compactBytes",
                               description="fan-outs with larger items (JSON bytes) get compact items")  # fmt: skip
    max_object_bytes: int = Field(1024 * 1024, ge=1024, alias="maxObjectBytes",
                                  description="largest compiled Workflow (JSON bytes; etcd: ~1 MiB)")  # fmt: skip


# -- compact items -------------------------------------------------------------------------------------
def _common_prefix(values: list[str]) -> str:
    low, high = min(values), max(values)
    size = 0
    while size < min(len(low), len(high)) and low[size] == high[size]:
        size += 1
    prefix = low[:size]
    # never split an Argo placeholder: "{{workflow.na" + "me}}" would not be substituted
    opened = prefix.rfind("{{")
    if opened > prefix.rfind("}}"):
        prefix = prefix[:opened]
    return prefix


def _common_suffix(values: list[str]) -> str:
    suffix = _common_prefix([v[::-1] for v in values])[::-1]
    closed = suffix.find("}}")
    if closed != -1 and (suffix.find("{{") == -1 or closed < suffix.find("{{")):
        suffix = suffix[closed + 2 :]
    return suffix


def _rewrite(value: str | None, mapping: dict[str, str]) -> str | None:
    if value is None:
        return None
    return ITEM_REF.sub(lambda match: mapping.get(match.group(1), match.group(0)), value)


def compact_items(task: m.DAGTask) -> m.DAGTask:
    """The task with its items reduced to what differs between them (same expansion on the cluster)."""
    raw = [item.root for item in task.with_items or []]
    if not raw or not all(isinstance(row, dict) for row in raw):
        return task
    columns = list(raw[0])
    mapping: dict[str, str] = {}
    kept: dict[str, list[str]] = {}
    seen: dict[tuple[str, ...], str] = {}
    for column in columns:
        values = [str(row[column]) for row in raw]
        prefix = _common_prefix(values)
        suffix = _common_suffix([v[len(prefix) :] for v in values])  # of the rests: the two never overlap
        cut = [v[len(prefix) : len(v) - len(suffix)] for v in values]
        key = tuple(cut)
        target = seen.setdefault(key, column)
        if target == column:
            kept[column] = cut
        mapping[column] = f"{prefix}{{{{item.{target}}}}}{suffix}"
    items = [m.Item({c: kept[c][i] for c in kept}) for i in range(len(raw))]
    arguments = task.arguments
    if arguments is not None:
        params = [p.model_copy(update={"value": _rewrite(p.value, mapping)}) for p in arguments.parameters or []]
        artifacts = []
        for artifact in arguments.artifacts or []:
            s3 = artifact.s3
            if s3 is not None:
                s3 = s3.model_copy(update={"key": _rewrite(s3.key, mapping)})
            artifacts.append(artifact.model_copy(update={"s3": s3}))
        arguments = m.Arguments(parameters=params or None, artifacts=artifacts or None)
    return task.model_copy(update={"with_items": items, "arguments": arguments})


# -- sharded loops -------------------------------------------------------------------------------------
def shard_bounds(count: int, max_items: int) -> list[tuple[int, int]]:
    """Balanced consecutive slices ``[lo, hi)`` of ``count`` items, none longer than ``max_items``."""
    shards = max(1, math.ceil(count / max_items))
    size, extra = divmod(count, shards)
    edges = [n * size + min(n, extra) for n in range(shards + 1)]
    return list(itertools.pairwise(edges))


def shard_task(task: m.DAGTask, limits: FanOutLimits) -> tuple[m.DAGTask, list[m.Template]]:
    """A task looping over more than ``max_items`` items as a call of a DAG template of shard tasks."""
    items = task.with_items or []
    if len(items) <= limits.max_items:
        return task, []
    bounds = shard_bounds(len(items), limits.max_items)
    if len(bounds) > limits.max_items:
        raise FanOutError(f"step {task.name!r} fans out {len(items)} instances: more than "
                          f"{limits.max_items}^2 cannot be sharded in two levels; split the step "
                          "(e.g. one step per process) or raise fanOut.maxItems in the cluster profile")  # fmt: skip
    inner = [
        task.model_copy(update={"name": f"{task.name}-{n}", "dependencies": None, "with_items": items[lo:hi]})
        for n, (lo, hi) in enumerate(bounds)
    ]
    name = f"{task.name}{SHARD_SUFFIX}"
    template = m.Template(
        name=name,
        metadata=m.Metadata(annotations={"nsbiflow.io/instances": str(len(items)),
                                         "nsbiflow.io/shards": str(len(bounds))}),
        dag=m.DAGTemplate(tasks=inner),
    )
    outer = m.DAGTask(name=task.name, template=name, dependencies=task.dependencies)
    return outer, [template]


def shard_tasks(
    tasks: list[m.DAGTask], limits: FanOutLimits, reserved: set[str]
) -> tuple[list[m.DAGTask], list[m.Template]]:
    """Compact and shard every large fan-out of a DAG; returns the tasks and the shard templates to add."""
    result: list[m.DAGTask] = []
    extra: list[m.Template] = []
    for task in tasks:
        count = len(task.with_items or [])
        payload = sum(len(json.dumps(item.root)) for item in task.with_items or [])
        if count > limits.compact_over or payload > limits.compact_bytes:
            task = compact_items(task)
        task, templates = shard_task(task, limits)
        for template in templates:
            if template.name in reserved:
                raise FanOutError(f"step {task.name!r} is sharded into template {template.name!r}, but a step "
                                  "already has that name: rename the step")  # fmt: skip
        result.append(task)
        extra += templates
    return result, extra


# -- size guard ----------------------------------------------------------------------------------------
def largest_lists(node: Any, path: str = "") -> Iterator[tuple[int, str]]:
    """Every list of a JSON document with its length and path (``spec/templates/dag/tasks/withItems``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from largest_lists(value, f"{path}/{key}")
    elif isinstance(node, list):
        yield len(node), path
        for value in node:
            yield from largest_lists(value, path)


def object_bytes(document: dict[str, Any]) -> int:
    """Size of the object as the API server stores it (compact JSON)."""
    return len(json.dumps(document, separators=(",", ":")).encode())


CHECKED_LISTS = ("withItems", "artifacts", "parameters", "tasks", "templates")
"""Lists the controller expands into nodes or per-node state (a container's ``args`` is not one of them)."""


def check_limits(document: dict[str, Any], limits: FanOutLimits) -> None:
    """``FanOutError`` when the compiled object holds a list over ``max_items`` or exceeds its byte limit."""
    checked = (entry for entry in largest_lists(document) if entry[1].rsplit("/", 1)[-1] in CHECKED_LISTS)
    longest, where = max(checked, default=(0, ""))
    if longest > limits.max_items:
        hint = ("gather in stages (e.g. one gather per process, then one over those)" if "artifacts" in where
                else "raise fanOut.maxItems or split the step")  # fmt: skip
        raise FanOutError(f"the compiled Workflow has a list of {longest} entries at {where}, over the safe size "
                          f"fanOut.maxItems={limits.max_items} of the cluster profile: {hint}")  # fmt: skip
    size = object_bytes(document)
    if size > limits.max_object_bytes:
        raise FanOutError(f"the compiled Workflow is {size / 1024:.0f} KiB, over fanOut.maxObjectBytes="
                          f"{limits.max_object_bytes / 1024:.0f} KiB (etcd stores objects up to ~1 MiB): split the "
                          "workflow, or pack more members per pod to shrink the fan-outs")  # fmt: skip


# -- pod packing ---------------------------------------------------------------------------------------
MAX_MEMBERS_PER_POD = 256
"""Past a few hundred small members the batched kernels are saturated; more per pod only lengthens pods."""


def member_training_bytes(n_inputs: int, hidden: list[int], batch_size: int) -> int:
    """GPU memory one member needs while training: fp32 weights, gradients and two Adam moments, plus
    the activations of one batch kept for the backward pass (forward value and gradient per unit), with
    a factor 2 of head room for the allocator and autocast copies."""
    sizes = [n_inputs, *hidden, 1]
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    activations = batch_size * sum(sizes[1:]) * 2
    return 2 * 4 * (4 * params + activations)


def members_per_pod(
    gpu_memory: str | int, n_inputs: int, hidden: list[int], batch_size: int, events: int, *, reserve: str = "2Gi"
) -> int:
    """K: how many members one GPU with ``gpu_memory`` trains together as one batched model.

    ``events`` training events of ``n_inputs`` features stay on the device once (shared by all members) with
    per-member weights (K x events floats); ``reserve`` covers the CUDA context and workspace.
    """
    total = parse_quantity(str(gpu_memory)) if isinstance(gpu_memory, str) else float(gpu_memory)
    free = total - parse_quantity(reserve) - events * (n_inputs + 2) * 4
    per_member = member_training_bytes(n_inputs, hidden, batch_size) + events * 4 * 2
    if free < per_member:
        return 1
    return int(max(1, min(MAX_MEMBERS_PER_POD, free // per_member)))
