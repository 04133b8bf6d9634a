"""RFC 6902 JSON Patches restricted to a workflow's declared reinterpretation interface.

The patch target is the archived workflow document (the workflow YAML as JSON, with the run's resolved
parameters as defaults). A patch may only touch:

- ``/parameters/<name>/default`` (and below it) for every parameter listed in ``interface.parameters``;
- ``/steps/<step>/inputs/<input>/path`` for every ``step.input`` listed in ``interface.inputs``.

Operations are checked one by one against the document as patched so far: a pointer that does not exist
is refused as such, one that exists but lies outside the interface is refused as not reinterpretable.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer

from nsbiflow.archive.errors import PatchError

OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")
_MISSING = object()


def interface_pointers(interface: dict[str, list[str]]) -> list[str]:
    """The JSON pointers a reinterpretation patch may touch (and anything below them)."""
    pointers = [f"/parameters/{_escape(name)}/default" for name in interface.get("parameters", [])]
    pointers.extend(_input_pointer(ref) for ref in interface.get("inputs", []))
    return pointers


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _exists(document: Any, pointer: str) -> bool:
    try:
        return jsonpointer.resolve_pointer(document, pointer, _MISSING) is not _MISSING
    except jsonpointer.JsonPointerException:
        return False


def _parent(pointer: str) -> str:
    return pointer.rsplit("/", 1)[0]


def _within(pointer: str, allowed: list[str]) -> bool:
    return any(pointer == a or pointer.startswith(a + "/") for a in allowed)


def load_patch(path: Path) -> Any:
    """Read a patch file (JSON); a file that cannot be read or parsed is one clear error."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PatchError(f"patch file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchError(f"cannot read patch file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PatchError(f"patch file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise PatchError(f"patch file {path} is nested too deeply") from None


def apply_interface_patch(document: Any, operations: Any, interface: dict[str, list[str]]) -> Any:
    """Apply ``operations`` to a copy of ``document``, refusing anything outside the interface."""
    if not isinstance(operations, list) or not operations:
        raise PatchError("a patch must be a non-empty JSON array of RFC 6902 operations ({op, path, ...})")
    allowed = interface_pointers(interface)
    where = ", ".join(allowed) or "nothing: the workflow declares no interface"
    patched = copy.deepcopy(document)
    for index, op in enumerate(operations):
        label = f"patch operation {index}"
        if not isinstance(op, dict) or op.get("op") not in OPERATIONS or not isinstance(op.get("path"), str):
            raise PatchError(f"{label} is not an RFC 6902 operation: expected {{op: add|replace|..., path: ...}}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"{label} ({kind} {path}) needs a 'value'")
        checks = [(path, _parent(path) if kind == "add" else path)]
        if kind in ("move", "copy"):
            source = op.get("from")
            if not isinstance(source, str):
                raise PatchError(f"{label} ({kind}) needs a 'from' pointer")
            checks = [(source, source), (path, _parent(path))]
        for pointer, must_exist in checks:
            if not _exists(patched, must_exist):
                raise PatchError(
                    f"{label} ({kind} {pointer}): path does not exist in the archived workflow; "
                    f"a patch may change: {where}"
                )
            if not _within(pointer, allowed):
                raise PatchError(
                    f"{label} ({kind} {pointer}) touches a field outside the reinterpretation interface; "
                    f"a patch may change: {where}"
                )
        removed = path if kind == "remove" else op.get("from") if kind == "move" else None
        if removed in allowed:
            raise PatchError(f"{label} ({kind} {removed}): an interface value can be replaced, not removed")
        try:
            patched = jsonpatch.apply_patch(patched, [op])
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise PatchError(f"{label} ({kind} {path}) failed: {exc}") from None
    _check_shared_files(document, patched, interface)
    return patched


def _check_shared_files(before: Any, after: Any, interface: dict[str, list[str]]) -> None:
    """Interface inputs that read one file in the archived workflow must still read one file after the patch
    (a model read by ``fit``, ``toys`` and ``bias-gate``: pointing only ``fit.model`` elsewhere would mix models)."""
    readers: dict[Any, list[str]] = {}
    for ref in interface.get("inputs", []):
        readers.setdefault(jsonpointer.resolve_pointer(before, _input_pointer(ref), None), []).append(ref)
    for old, refs in readers.items():
        new = {ref: jsonpointer.resolve_pointer(after, _input_pointer(ref), None) for ref in refs}
        if len(set(map(repr, new.values()))) > 1:
            moved = [ref for ref in refs if new[ref] != old]
            raise PatchError(
                f"the patch points {', '.join(moved)} elsewhere, but {', '.join(refs)} all read {old!r} in the "
                f"archived workflow: give every one of them the same new path ({', '.join(map(_input_pointer, refs))})"
            )


def _input_pointer(ref: str) -> str:
    step, _, input_name = ref.partition(".")
    return f"/steps/{_escape(step)}/inputs/{_escape(input_name)}/path"


def changed_values(before: Any, after: Any, interface: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Interface values that differ after patching: pointer -> {from, to}."""
    changes = {}
    for pointer in interface_pointers(interface):
        old = jsonpointer.resolve_pointer(before, pointer, None)
        new = jsonpointer.resolve_pointer(after, pointer, None)
        if old != new:
            changes[pointer] = {"from": old, "to": new}
    return changes
