"""The one place that checks every name that becomes a path (catalog names, tree entries, archive paths).

A name coming from a workflow, a step definition, a tree manifest or an archive record is untrusted: it
must not climb out of the folder it is joined to (``..``, an absolute path, a symlink pointing outside),
and a file given as a file input must be a regular file (a directory or a FIFO would hang or fail late).
Every caller joins untrusted names through ``confined`` (or checks a single component with ``safe_name``)
so the rule lives here once.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from nsbiflow.errors import NsbiflowError


class UnsafePathError(NsbiflowError):
    """A name would become a path outside the folder it belongs to (or is not a usable path at all)."""

    exit_code = 2


_SANITISE = re.compile(r"[^A-Za-z0-9]+")


def safe_name(name: str, what: str) -> str:
    """``name`` if it is one plain path component (no separator, not ``.``/``..``, no NUL); else an error."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name) > 255
    ):
        raise UnsafePathError(f"{what} {name!r} is not a plain name: it must not contain '/', '..' or be empty")
    return name


def safe_relative(relative: str, what: str) -> PurePosixPath:
    """A relative POSIX path with no ``..``, no absolute start, no empty or ``.`` parts; else an error."""
    if not isinstance(relative, str) or not relative or "\0" in relative or "\\" in relative:
        raise UnsafePathError(f"{what} {relative!r} is not a relative path")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith("/"):
        raise UnsafePathError(f"{what} {relative!r} is absolute: it must be relative to its folder")
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"{what} {relative!r} climbs out of its folder or has empty parts")
    return pure


def confined(base: Path, relative: str, what: str) -> Path:
    """``base / relative``, refusing a name that would land outside ``base`` (symlinks on the way included)."""
    joined = base / safe_relative(relative, what)
    root = base.resolve()
    target = joined.resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(f"{what} {relative!r} resolves outside {base} (through a symbolic link)")
    return joined


def within(base: Path, path: Path) -> bool:
    """Whether ``path`` (resolved) lies inside ``base`` (resolved)."""
    root, target = base.resolve(), path.resolve()
    return target == root or root in target.parents


def check_input_file(path: Path, what: str) -> None:
    """Refuse a file input that is not a regular file or directory (a FIFO, a socket, a device)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UnsafePathError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
        raise UnsafePathError(f"{what} {path} is {kind}, not a regular file")


def canonical_name(text: str) -> str:
    """The form a name takes on the strictest engine (lower case, every run of non-alphanumerics as ``_``).

    Two names with the same canonical form would share a work directory or a yadage stage name, so the
    planner refuses (or disambiguates) them.
    """
    return _SANITISE.sub("_", text).strip("_").lower()
