"""Sharded fan-outs: no Argo list over the safe size, the object under its byte limit, the same expansion."""

from __future__ import annotations

import itertools
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsbiflow.backends.argo import compile_to_dict
from nsbiflow.backends.argo.sharding import (
    FanOutError,
    check_limits,
    largest_lists,
    members_per_pod,
    object_bytes,
    shard_bounds,
)
from nsbiflow.backends.argo.validate import official_errors, official_schema_path, strict_errors
from nsbiflow.engine.plan import load_plan
from tests.argo.conftest import WORKFLOWS, templates

ATLAS = WORKFLOWS / "examples" / "atlas-scale.yaml"
MiB = 1024 * 1024

FANOUT = textwrap.dedent("""
    apiVersion: nsbiflow/v1
    kind: Workflow
    metadata: {name: wide}
    parameters:
      n: {type: int, default: 50}
      groups: {type: list, default: [a, b, c]}
    steps:
      numbers:
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
          command: [python, -m, nsbiflow.demo, numbers]
          parameters: {count: {type: int, default: 10}, seed: {type: int, default: 0}}
          outputs: {numbers: {kind: file, filename: numbers.txt}}
        foreach: ${{ params.groups }}
        with: {seed: "${{ index }}"}
      square:
        foreach: {matrix: {group: "${{ params.groups }}", chunk: "${{ range(params.n) }}"}}
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
          command: [python, -m, nsbiflow.demo, square]
          parameters: {chunk: {type: int}, chunks: {type: int}, power: {type: int, default: 2}}
          inputs: {numbers: {kind: file}}
          outputs: {partial: {kind: dir}}
        with: {chunk: "${{ item.chunk }}", chunks: "${{ params.n }}", power: "${{ 2 + index % 3 }}"}
        inputs: {numbers: "numbers[${{ item.group }}].numbers"}
      total:
        foreach: ${{ params.groups }}
        run:
          image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
          command: [python, -m, nsbiflow.demo, total]
          inputs: {partials: {kind: dir, multiple: true}}
          outputs: {total: {kind: file, filename: total.json}}
        inputs: {partials: "square[*-${{ item }}].partial"}
""")


def _profile(tmp_path: Path, **fan_out: int) -> Path:
    path = tmp_path / "profile.yaml"
    pools = {"cpu": {}, "gpu": {"gpuResource": "nvidia.com/gpu", "gpuMemory": "80Gi"}}
    path.write_text(yaml.safe_dump({"nodePools": pools, "fanOut": fan_out}))
    return path


def _sub(text: str, item: Any) -> str:
    if not isinstance(item, dict):
        return text
    return re.sub(r"\{\{item\.([A-Za-z0-9_]+)\}\}", lambda mt: str(item[mt.group(1)]), text)


def expand(workflow: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    """What the controller would run: per pod (by its nsbiflow step id), its parameters and input keys."""
    by_name = templates(workflow)
    pods: dict[str, tuple[tuple[str, str], ...]] = {}

    def visit(template: dict[str, Any]) -> None:
        for task in template["dag"]["tasks"]:
            target = by_name[task["template"]]
            if "dag" in target:
                assert "withItems" not in task and "arguments" not in task
                visit(target)
                continue
            for item in task.get("withItems", [None]):
                args = task.get("arguments", {})
                values = [(p["name"], _sub(p["value"], item)) for p in args.get("parameters", [])]
                values += [(a["name"], _sub(a["s3"]["key"], item)) for a in args.get("artifacts", [])]
                step = dict(values).get("nsbiflow-step", task["name"])
                assert step not in pods, f"pod {step} expanded twice"
                pods[step] = tuple(sorted(values))

    visit(by_name[workflow["spec"]["entrypoint"]])
    return pods


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    path = tmp_path / "wide.yaml"
    path.write_text(FANOUT)
    return path


def test_shard_bounds_are_balanced_and_cover_everything() -> None:
    for count, limit in [(1, 1000), (1000, 1000), (1001, 1000), (2400, 1000), (10_000, 1000), (17, 4)]:
        bounds = shard_bounds(count, limit)
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) <= limit and max(sizes) - min(sizes) <= 1


def test_sharded_and_compact_compile_expands_to_the_same_pods(wide: Path, tmp_path: Path) -> None:
    plan = load_plan(wide)
    plain = compile_to_dict(plan, profile_path=_profile(tmp_path, maxItems=10_000, compactOver=10_000))
    sharded = compile_to_dict(plan, profile_path=_profile(tmp_path, maxItems=60, compactOver=8))
    assert max(n for n, path in largest_lists(plain) if path.endswith("withItems")) == 150
    assert max(n for n, path in largest_lists(sharded) if path.endswith("withItems")) <= 60
    shard_template = templates(sharded)["square-shards"]
    assert len(shard_template["dag"]["tasks"]) == 3  # 150 items in 3 balanced shards of 50
    # downstream tasks still depend on the step, not on its shards
    main = {t["name"]: t for t in templates(sharded)["main"]["dag"]["tasks"]}
    assert main["total"]["dependencies"] == ["square"] and main["square"]["template"] == "square-shards"
    # compact items are smaller, and the controller's expansion is unchanged pod for pod
    assert object_bytes(sharded) < object_bytes(plain)
    pods = expand(sharded)
    assert pods == expand(plain)
    assert len(pods) == len(plan.steps)
    for step_id, step in plan.steps.items():
        values = dict(pods[step_id])
        for name, value in step.parameters.items():
            assert values[name] == str(value), (step_id, name)
    assert not strict_errors(sharded)


def test_atlas_example_compiles_under_argo_limits() -> None:
    plan = load_plan(ATLAS)
    networks = sum(s.parameters["members"] for s in plan.steps.values() if s.definition.name == "train-ratio")
    assert networks == 14_000
    workflow = compile_to_dict(plan)
    longest, where = max(largest_lists(workflow))
    assert longest <= 1000, where
    assert object_bytes(workflow) < MiB / 2
    assert len(expand(workflow)) == len(plan.steps) == 2646
    assert not strict_errors(workflow)
    if official_schema_path().exists():
        assert not official_errors(workflow)


def test_fan_in_over_the_safe_size_is_refused_with_a_hint(wide: Path, tmp_path: Path) -> None:
    plan = load_plan(wide)
    with pytest.raises(FanOutError, match=r"list of 50 entries at .*artifacts.*gather in stages"):
        compile_to_dict(plan, profile_path=_profile(tmp_path, maxItems=40))


def test_object_over_the_byte_limit_is_refused_in_one_line(wide: Path, tmp_path: Path) -> None:
    plan = load_plan(wide)
    with pytest.raises(FanOutError, match=r"KiB, over fanOut.maxObjectBytes=8 KiB") as info:
        compile_to_dict(plan, profile_path=_profile(tmp_path, maxObjectBytes=8192))
    assert "\n" not in str(info.value)
    check_limits({"spec": {"withItems": list(range(5)), "args": list(range(9))}}, _limits(max_items=5))
    with pytest.raises(FanOutError, match="list of 6 entries at /spec/withItems"):
        check_limits({"spec": {"withItems": list(range(6))}}, _limits(max_items=5))


def _limits(**values: int) -> Any:
    from nsbiflow.backends.argo.sharding import FanOutLimits

    return FanOutLimits(**values)


def test_shard_template_name_clash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clash.yaml"
    path.write_text(FANOUT.replace("\n  total:\n", "\n  square-shards:\n"))
    with pytest.raises(FanOutError, match="square-shards"):
        compile_to_dict(load_plan(path), profile_path=_profile(tmp_path, maxItems=60))


def test_members_per_pod_follows_gpu_memory() -> None:
    small = members_per_pod("16Gi", 5, [64, 64, 64], 8192, 200_000)
    big = members_per_pod("80Gi", 5, [64, 64, 64], 8192, 200_000)
    wide = members_per_pod("80Gi", 5, [1000] * 4, 8192, 200_000)
    assert 1 <= wide < small <= big <= 256
    assert members_per_pod("3Gi", 5, [1000] * 4, 8192, 200_000) == 1
