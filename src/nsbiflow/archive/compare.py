"""New vs original results of a reinterpretation: read generic result documents, tabulate, export.

A result document is the JSON a statistics step writes (``results.json``). Its shape belongs to the physics, not
to this module, so it is read generically: a *method* is an entry of ``methods`` (when the document has one) or
a top-level object that holds at least one result quantity; a *quantity* is any number or ``[lo, hi]`` pair,
at any depth below the method, whose name says what it is: a best fit (``*_hat``, ``best_fit``, ``poi``), an
interval, an upper limit, a significance (``z0``, ``significance``), ``cls``. So new methods, new parameters of
interest and nested layouts (``{"poi": {"mu": {"hat": ...}}}``) all show, without changes here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsbiflow.archive.record import load_archive
from nsbiflow.errors import NsbiflowError, StoreError
from nsbiflow.physics.model.methods import ALL_METHODS
from nsbiflow.store import ArtifactRef, ArtifactStore

if TYPE_CHECKING:
    from nsbiflow.archive.reinterpret import ReinterpretResult

_QUANTITY = re.compile(r"(^|[._])(hat|best_?fit|poi|interval|upper|limit|ul|z0|significance|cls|pvalue|p0)", re.I)
_SKIP = re.compile(r"(^|[._])(scan|settings|comparison|width|n_events|support|closure|ensemble|histogram_)", re.I)
_MAX_DEPTH = 4

Value = float | tuple[float, float] | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = _number(value[0]), _number(value[1])
        if lo is not None and hi is not None:
            return (lo, hi)
    return None


def quantities(result: Any, prefix: str = "", depth: int = 0) -> dict[str, Value]:
    """Every result quantity of one method's entry, by dotted name (document order)."""
    found: dict[str, Value] = {}
    if not isinstance(result, dict) or depth > _MAX_DEPTH:
        return found
    for key, value in result.items():
        name = f"{prefix}{key}"
        if _SKIP.search(str(key)):
            continue
        if isinstance(value, dict):
            found.update(quantities(value, f"{name}.", depth + 1))
            continue
        number, pair = _number(value), _pair(value)
        if (number is not None or pair is not None) and (_QUANTITY.search(name) or prefix):
            found[name] = number if number is not None else pair
    if prefix and not any(_QUANTITY.search(n) for n in found):  # a nested block with no result quantity
        return {}
    return found


_ORDER = ("hat", "best", "poi", "interval_68", "interval_95", "interval", "upper", "limit", "cls", "z0", "signif")
_KNOWN_METHODS = ALL_METHODS


def _rank(name: str, order: tuple[str, ...]) -> int:
    return next((i for i, word in enumerate(order) if word in name.lower()), len(order))


def ordered(values: dict[str, Value]) -> dict[str, Value]:
    """Quantities in reading order: best fits (the parameter of interest first), intervals, limits, significance."""
    names = list(values)
    return {
        n: values[n]
        for n in sorted(names, key=lambda n: (_rank(n, _ORDER), not n.lower().startswith("mu"), names.index(n)))
    }


def methods(document: Any) -> dict[str, dict[str, Value] | None]:
    """The methods of a result document and their quantities; ``None`` for a method with no result."""
    if not isinstance(document, dict):
        return {}
    source: dict[str, Any] = document["methods"] if isinstance(document.get("methods"), dict) else document
    found: dict[str, dict[str, Value] | None] = {}
    for name, entry in source.items():
        if _SKIP.search(str(name)):
            continue
        if entry is None and source is not document:
            found[str(name)] = None
        elif isinstance(entry, dict):
            values = quantities(entry)
            if values:
                found[str(name)] = ordered(values)
    if source is document:  # a top-level null next to real methods: a method that did not run (e.g. exact)
        for name, entry in document.items():
            if entry is None and found and not _SKIP.search(str(name)) and _looks_like_method(str(name), found):
                found[str(name)] = None
    names = list(found)
    return {n: found[n] for n in sorted(names, key=lambda n: (_rank(n, _KNOWN_METHODS), names.index(n)))}


def _looks_like_method(name: str, found: dict[str, Any]) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9-]*$", name)) and len(found) > 0  # a null `exact`, not `mu_injected`


@dataclass
class Row:
    """One quantity of one method, before and after."""

    method: str
    quantity: str
    original: Value
    new: Value

    @property
    def change(self) -> Value:
        """new - original (per end for an interval), when both exist."""
        if isinstance(self.original, float) and isinstance(self.new, float):
            return self.new - self.original
        if isinstance(self.original, tuple) and isinstance(self.new, tuple):
            return (self.new[0] - self.original[0], self.new[1] - self.original[1])
        return None


@dataclass
class Comparison:
    """The new-vs-original table of one result (e.g. ``results``)."""

    result: str
    original_label: str
    new_label: str
    rows: list[Row] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready form (intervals as lists)."""

        def out(value: Value) -> Any:
            return list(value) if isinstance(value, tuple) else value

        return {
            "result": self.result,
            "original": self.original_label,
            "new": self.new_label,
            "rows": [
                {"method": r.method, "quantity": r.quantity, "original": out(r.original), "new": out(r.new),
                 "change": out(r.change)}
                for r in self.rows
            ],
        }


def compare_documents(result: str, original: Any, new: Any, original_label: str, new_label: str) -> Comparison:
    """Row by row: every method and quantity found in either document (original's order first)."""
    before, after = methods(original), methods(new)
    comparison = Comparison(result, original_label, new_label)
    for method in [*before, *(m for m in after if m not in before)]:
        b, a = before.get(method) or {}, after.get(method) or {}
        if not b and not a:
            comparison.rows.append(Row(method, "(no result)", None, None))
        for quantity in [*b, *(q for q in a if q not in b)]:
            comparison.rows.append(Row(method, quantity, b.get(quantity), a.get(quantity)))
    return comparison


def format_value(value: Value, digits: int = 3) -> str:
    """``1.234``, ``[1.000, 2.000]``, ``-`` for missing, ``inf``/``nan`` as they are."""
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return f"[{format_value(value[0], digits)}, {format_value(value[1], digits)}]"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}f}"


def _change(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"[{value[0]:+.3f}, {value[1]:+.3f}]"
    return f"{value:+.3f}"


def text_table(comparison: Comparison) -> str:
    """A fixed-width table for the terminal."""
    header = ("method", "quantity", "original", "new", "change")
    cells = [header] + [
        (r.method, r.quantity, format_value(r.original), format_value(r.new), _change(r.change))
        for r in comparison.rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"  {comparison.result}: original ({comparison.original_label}) vs new ({comparison.new_label})"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def markdown_table(comparison: Comparison) -> str:
    """The same table in Markdown (exported beside the results)."""
    lines = [
        f"### {comparison.result}",
        "",
        f"original: {comparison.original_label}  ",
        f"new: {comparison.new_label}",
        "",
        "| method | quantity | original | new | change |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in comparison.rows:
        lines.append(
            f"| {r.method} | {r.quantity} | {format_value(r.original)} | {format_value(r.new)} | {_change(r.change)} |"
        )
    return "\n".join(lines)


def tree_files(store: ArtifactStore, ref: ArtifactRef) -> dict[str, str]:
    """A directory artifact's files: relative path -> blob digest (empty for a file or an unreadable tree)."""
    if ref.kind != "dir":
        return {}
    try:
        manifest = store.tree_manifest(ref.digest)
    except StoreError:
        return {}
    return {str(e["path"]): str(e["digest"]) for e in manifest.get("entries", [])}


def read_result_document(store: ArtifactStore, ref: ArtifactRef) -> Any:
    """The JSON document of a result artifact: the file itself, or ``results.json`` (else the only ``*.json``) in
    a directory. ``None`` when it is not JSON or cannot be read."""
    digest: str | None = ref.digest
    if ref.kind == "dir":
        files = tree_files(store, ref)
        names = [n for n in files if n.endswith(".json")]
        chosen = next((n for n in names if Path(n).name == "results.json"), names[0] if len(names) == 1 else None)
        digest = files.get(chosen) if chosen else None
    if digest is None:
        return None
    try:
        return json.loads(store.read_blob(digest))
    except (StoreError, ValueError):
        return None


def hypothesis_labels(parameters: dict[str, Any], interface: list[str], changed: dict[str, Any]) -> tuple[str, str]:
    """``signal_mean=1.0, nu_s=100.0`` before and after the patch (the interface parameters, changed ones first)."""
    new = dict(parameters)
    names: list[str] = []
    for pointer, change in changed.items():
        parts = pointer.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "parameters" and parts[2] == "default":
            new[parts[1]] = change.get("to") if len(parts) == 3 else new.get(parts[1])
            names.append(parts[1])
        else:
            names.append(pointer)
            new[pointer] = change.get("to")
    names += [n for n in interface if n not in names]

    def label(values: dict[str, Any], fallback: dict[str, Any]) -> str:
        return ", ".join(f"{n}={json.dumps(values.get(n, fallback.get(n)))}" for n in names) or "as archived"

    original = {p: parameters.get(p) for p in names}
    for pointer, change in changed.items():
        if not pointer.startswith("/parameters/"):
            original[pointer] = change.get("from")
    return label(original, parameters), label(new, parameters)


def export_comparison(comparisons: list[Comparison], target: Path) -> dict[str, Path]:
    """Write ``comparison.json`` and ``comparison.md`` under ``target``; returns their paths."""
    target.mkdir(parents=True, exist_ok=True)
    as_json, as_md = target / "comparison.json", target / "comparison.md"
    as_json.write_text(json.dumps([c.as_json() for c in comparisons], indent=2) + "\n")
    as_md.write_text("\n\n".join(markdown_table(c) for c in comparisons) + "\n")
    return {"json": as_json, "markdown": as_md}


def _document(store: ArtifactStore, value: Any, name: str) -> Any:
    """A recorded result value as a document: an artifact reference is read, a plain JSON value is itself."""
    if isinstance(value, dict) and {"kind", "digest"} <= set(value):
        return read_result_document(store, ArtifactRef.model_validate(value))
    if isinstance(value, dict) and not methods(value):
        return {name: value}  # one method's quantities recorded inline (e.g. a patchset's CLs)
    return value


def compare_results(store: ArtifactStore, result: ReinterpretResult) -> list[Comparison]:
    """One comparison per recorded result whose new or original value is a result document."""
    record = result.record
    try:
        _, archived = load_archive(store, f"{result.archive}@{result.archive_digest.split(':', 1)[-1][:12]}")
        parameters, interface = archived.parameters, list(archived.interface.get("parameters", []))
    except NsbiflowError:
        parameters, interface = {}, []
    original_label, new_label = hypothesis_labels(parameters, interface, record.changed)
    comparisons = []
    for name in [*record.original_results, *(n for n in record.results if n not in record.original_results)]:
        original = _document(store, record.original_results.get(name), name)
        new = _document(store, record.results.get(name), name)
        comparison = compare_documents(name, original, new, original_label, new_label)
        if comparison.rows:
            comparisons.append(comparison)
    return comparisons


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def instance_folders(producers: dict[str, str], refs: list[ArtifactRef]) -> list[str]:
    """A folder name per gathered artifact: the fan-out key of the step that made it (``calibrate[signal]`` ->
    ``signal``; ``producers`` maps output digests to step ids), else its index when keys are missing or clash."""
    keys = []
    for ref in refs:
        step_id = producers.get(ref.digest, "")
        keys.append(step_id[step_id.find("[") + 1 : -1] if step_id.endswith("]") and "[" in step_id else "")
    if all(_SAFE_NAME.match(k) for k in keys) and len(set(keys)) == len(keys):
        return keys
    return [str(i) for i in range(len(refs))]


def _producers(manifest: Any) -> dict[str, str]:
    steps = manifest.get("steps", {}) if isinstance(manifest, dict) else {}
    found: dict[str, str] = {}
    for step_id, record in steps.items():
        for ref in (record.get("outputs") or {}).values() if isinstance(record, dict) else []:
            if isinstance(ref, dict) and "digest" in ref:
                found.setdefault(str(ref["digest"]), str(step_id))
    return found


def _export_refs(store: ArtifactStore, outputs: dict[str, Any], target: Path, producers: dict[str, str]) -> None:
    for name, value in outputs.items():
        items = [
            item if isinstance(item, ArtifactRef) else ArtifactRef.model_validate(item)
            for item in (value if isinstance(value, list) else [value])
            if isinstance(item, ArtifactRef) or (isinstance(item, dict) and {"kind", "digest"} <= set(item))
        ]
        folders = instance_folders(producers, items)
        for ref, folder in zip(items, folders, strict=True):
            base = target / name if len(items) == 1 else target / name / folder
            store.export(ref, base if ref.kind == "dir" else base / (ref.filename or name))


def export_reinterpretation(
    store: ArtifactStore, result: ReinterpretResult, comparisons: list[Comparison], target: Path
) -> dict[str, Path]:
    """The comparison tables, and the original and new outputs (plots included) under ``original/`` and ``new/``,
    each with a ``hypothesis.txt`` naming the parameter values its plots show."""
    if target.exists():  # never leave a stale copy of an earlier reinterpretation beside this one
        shutil.rmtree(target)
    paths = export_comparison(comparisons, target) if comparisons else {}
    original_label, new_label = (
        (comparisons[0].original_label, comparisons[0].new_label) if comparisons else ("as archived", "patched")
    )
    try:
        _, archived = load_archive(store, f"{result.archive}@{result.archive_digest.split(':', 1)[-1][:12]}")
        original_outputs: dict[str, Any] = dict(archived.results)
        original_manifest: Any = archived.manifest
    except NsbiflowError:
        original_outputs, original_manifest = {}, {}
    new_outputs: dict[str, Any] = dict(result.manifest.outputs) if result.manifest is not None else {}
    new_manifest = result.manifest.model_dump(mode="json") if result.manifest is not None else {}
    for folder, outputs, label, manifest in (
        ("original", original_outputs, original_label, original_manifest),
        ("new", new_outputs, new_label, new_manifest),
    ):
        if not outputs:
            continue
        _export_refs(store, outputs, target / folder, _producers(manifest))
        (target / folder / "hypothesis.txt").write_text(label + "\n")
        paths[folder] = target / folder
    return paths
