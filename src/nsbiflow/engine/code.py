"""Code identity: which source files a step's ``code:`` entries stand for, and their digest.

Two kinds of entry:

- ``python:MODULE[:FUNCTION]``: Python source found by module name, without importing it.
  - a **module** (``nsbiflow.stepcli.training``) stands for its *import closure within its project*: the
    module, every module of the same top-level package it imports (at any depth, imports inside functions
    included), and the ``__init__.py`` of every package on the way. With ``:FUNCTION``, the entry module
    contributes only its module-level imports and those of that function (and of the module's functions
    and classes it refers to), so a stage depends on what it runs, not on its neighbours' imports.
  - a **package** (``nsbiflow.physics``) stands for every ``.py`` file under it (coarse, but exact).
- a file glob (``train.py``, ``src/**/*.py``), relative to the step definition's folder (for an inline
  step: the workflow file's folder), never absolute, never climbing out with ``..``.

A name that finds nothing, a glob that matches no file and an absolute glob are errors (``CodeError``), never
a constant digest: a stale cache hit is worse than a refusal.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from nsbiflow.errors import NsbiflowError
from nsbiflow.paths import UnsafePathError, safe_relative, within
from nsbiflow.store.digest import digest_file, digest_json

PYTHON_PREFIX = "python:"


class CodeError(NsbiflowError):
    """A ``code:`` entry does not identify any source (misspelt module, empty glob, absolute path)."""

    exit_code = 2


def _package_root(top: str) -> Path:
    """The folder of a top-level package (or namespace package), found without importing submodules."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise CodeError(f"python package {top!r} is not installed (check the spelling in code:)")
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin).parent  # a top-level single-file module: its folder is the "project"
    raise CodeError(f"python module {top!r} has no Python source to hash (built-in or compiled)")


def _module_file(root: Path, top: str, name: str) -> tuple[Path | None, bool]:
    """(source file, is package) of dotted ``name`` under ``root``; (None, True) for a namespace package."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    if not parts and (root.parent / f"{top}.py").is_file() and not root.joinpath("__init__.py").exists():
        return root.parent / f"{top}.py", False
    if base.is_dir():
        return None, True
    raise CodeError(f"python module {name!r} not found under {root} (check the spelling in code:)")


def _imports(nodes: list[ast.stmt], module: str, is_package: bool) -> set[str]:
    """Absolute module names imported anywhere in ``nodes`` (with ``from X import y``: X and X.y)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in (n for root in nodes for n in ast.walk(root)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            if base:
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _entry_nodes(tree: ast.Module, function: str, module: str) -> list[ast.stmt]:
    """Module-level statements (function bodies left out) plus ``function`` and what it refers to."""
    defined = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
    if function not in defined:
        raise CodeError(f"python:{module}:{function}: {module} defines no function or class {function!r}")
    top_level = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    chosen: dict[str, ast.stmt] = {}
    todo = [function]
    while todo:
        name = todo.pop()
        if name in chosen or name not in defined:
            continue
        chosen[name] = defined[name]
        todo.extend(n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name))
    return top_level + list(chosen.values())


@functools.lru_cache(maxsize=4096)
def _parsed(path: Path, mtime_ns: int, size: int) -> ast.Module:
    """A source file's syntax tree, cached by its modification time and size (planning a workflow asks for
    the same modules once per step definition: the toy's 14 closures parsed 305 files, 4.7 s under load)."""
    return ast.parse(path.read_bytes(), filename=str(path))


@functools.lru_cache(maxsize=4096)
def _module_imports(path: Path, mtime_ns: int, size: int, module: str, is_package: bool) -> frozenset[str]:
    """``_imports`` of a whole module, cached like ``_parsed``."""
    return frozenset(_imports(list(_parsed(path, mtime_ns, size).body), module, is_package))


def _closure(name: str, function: str | None) -> dict[str, Path]:
    top = name.split(".")[0]
    root = _package_root(top)
    files: dict[str, Path] = {}
    seen: set[str] = set()
    todo = [(name, function)]
    while todo:
        module, only = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append((".".join(parts[:i]), None))
        try:
            path, is_package = _module_file(root, top, module)
        except CodeError:
            if module == name:
                raise
            continue  # `from pkg import value` names a value, not a module; or an optional import
        if path is None:
            continue
        files[path.relative_to(root.parent).as_posix()] = path
        stat = path.stat()
        try:
            if only:
                tree = _parsed(path, stat.st_mtime_ns, stat.st_size)
                imported: Iterable[str] = _imports(_entry_nodes(tree, only, module), module, is_package)
            else:
                imported = _module_imports(path, stat.st_mtime_ns, stat.st_size, module, is_package)
        except (SyntaxError, ValueError) as exc:
            raise CodeError(f"python module {module!r} ({path}) does not parse: {exc}") from None
        todo.extend((m, None) for m in imported if m.split(".")[0] == top)
    return files


def python_files(entry: str) -> dict[str, Path]:
    """The source files a ``python:`` entry (without the prefix) stands for, by project-relative name."""
    name, _, function = entry.partition(":")
    if (
        not name
        or any(not part.isidentifier() for part in name.split("."))
        or (function and not function.isidentifier())
    ):
        raise CodeError(f"code entry 'python:{entry}' is not a module name (python:PACKAGE.MODULE[:FUNCTION])")
    top = name.split(".")[0]
    root = _package_root(top)
    path, is_package = _module_file(root, top, name)
    if is_package and not function:
        folder = root.joinpath(*name.split(".")[1:])
        found = {p.relative_to(root.parent).as_posix(): p for p in sorted(folder.rglob("*.py"))}
        if not found:
            raise CodeError(f"python package {name!r} contains no Python files ({folder})")
        return found
    del path
    return _closure(name, function or None)


def glob_files(pattern: str, base: Path) -> dict[str, Path]:
    """The files a glob matches under ``base`` (relative, never climbing out); at least one, or an error."""
    try:
        safe_relative(pattern, "code glob")
    except UnsafePathError as exc:
        raise CodeError(f"{exc} (code globs are relative to the step definition's folder)") from None
    try:
        matches = sorted(p for p in base.glob(pattern) if p.is_file() and within(base, p))
    except (ValueError, NotImplementedError, OSError) as exc:
        raise CodeError(f"code glob {pattern!r} is not usable: {exc}") from None
    if not matches:
        raise CodeError(f"code glob {pattern!r} matches no file under {base}")
    return {p.relative_to(base).as_posix(): p for p in matches}


def entry_digest(entry: str, base: Path) -> str:
    """The digest of one ``code:`` entry (``CodeError`` when it identifies nothing)."""
    if entry.startswith(PYTHON_PREFIX):
        files = python_files(entry.removeprefix(PYTHON_PREFIX))
    else:
        files = glob_files(entry, base)
    return digest_json({name: digest_file(path) for name, path in files.items()})


def entry_problem(entry: str, base: Path) -> str | None:
    """Why a ``code:`` entry identifies no source, or ``None`` (for ``nsbiflow validate``)."""
    try:
        if entry.startswith(PYTHON_PREFIX):
            python_files(entry.removeprefix(PYTHON_PREFIX))
        else:
            glob_files(entry, base)
    except CodeError as exc:
        return str(exc)
    return None
