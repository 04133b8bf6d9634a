"""The backends import only downward: no backend imports another backend, and the contract sits below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "nsbiflow"
BACKENDS = sorted(p.name for p in (SRC / "backends").iterdir() if p.is_dir() and (p / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(), str(path))
    inside = path.is_relative_to(SRC.parent)
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1]) if inside else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def offending(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for every import under ``folder`` of a module in (or under) ``forbidden``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(SRC.parent)}: {module}")
    return found


def test_there_are_three_backends() -> None:
    assert BACKENDS == ["argo", "local", "yadage"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_imports_no_other_backend(backend: str) -> None:
    others = tuple(f"nsbiflow.backends.{b}" for b in BACKENDS if b != backend)
    assert offending(SRC / "backends" / backend, others) == []


def test_the_engine_and_the_stage_programs_import_no_backend() -> None:
    forbidden = ("nsbiflow.backends", "nsbiflow.archive", "nsbiflow.cli")
    assert offending(SRC / "engine", (*forbidden, "nsbiflow.physics", "nsbiflow.stepcli")) == []
    assert offending(SRC / "stepcli", forbidden) == []


def test_the_checker_sees_a_cross_backend_import(tmp_path: Path) -> None:
    fake = SRC / "backends" / "yadage"
    probe = tmp_path / "probe.py"
    probe.write_text("from nsbiflow.backends.local.task import run_task\nimport nsbiflow.backends.argo.compiler\n")
    modules = imported_modules(probe)
    assert "nsbiflow.backends.local.task" in modules and "nsbiflow.backends.argo.compiler" in modules
    assert fake.exists()


def test_backends_use_the_one_contract() -> None:
    for backend in BACKENDS:
        modules = set().union(*(imported_modules(p) for p in (SRC / "backends" / backend).rglob("*.py")))
        assert "nsbiflow.engine.contract" in modules, f"backend {backend} does not use nsbiflow.engine.contract"
    stepcli = set().union(*(imported_modules(p) for p in (SRC / "stepcli").rglob("*.py")))
    assert "nsbiflow.engine.contract" in stepcli
