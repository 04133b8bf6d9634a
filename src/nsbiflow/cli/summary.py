"""What a finished run prints: the JSON summary (``--json``) and the human table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nsbiflow.errors import StoreError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest
from nsbiflow.store.records import shown_status

if TYPE_CHECKING:
    from nsbiflow.engine.plan import Plan

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def instance_names(plan: Plan) -> dict[str, list[str]]:
    """Per gathered workflow output, a folder name per instance: the fan-out key (``calibrate[signal]`` ->
    ``signal``) where it is a safe, unique name, else the index."""
    names: dict[str, list[str]] = {}
    for output, sources in plan.outputs.items():
        keys = []
        for index, source in enumerate(sources):
            step_id = str(source.step_id or "")
            key = step_id[step_id.find("[") + 1 : -1] if step_id.endswith("]") and "[" in step_id else ""
            keys.append(key if _SAFE.match(key) else str(index))
        names[output] = keys if len(set(keys)) == len(keys) else [str(i) for i in range(len(keys))]
    return names


def export_outputs(
    store: ArtifactStore, manifest: RunManifest, target: Path, names: dict[str, list[str]] | None = None
) -> tuple[dict[str, list[Path]], list[str]]:
    """Copy the workflow outputs out of the store into ``target/<name>`` (a convenience copy).

    Returns the exported paths and one line per output that could not be exported (a corrupted or missing
    blob); such an output's old copy is removed first, so a stale file is never left looking current.
    """
    exported: dict[str, list[Path]] = {}
    problems: list[str] = []
    for name, refs in manifest.outputs.items():
        items = refs if isinstance(refs, list) else [refs]
        folders = (names or {}).get(name) or [str(i) for i in range(len(items))]
        paths = []
        if (target / name).exists():  # the previous run's copy: replaced as a whole, never left stale
            shutil.rmtree(target / name) if (target / name).is_dir() else (target / name).unlink()
        for index, ref in enumerate(items):
            base = target / name if len(items) == 1 else target / name / folders[index]
            destination = base if ref.kind == "dir" else base / (ref.filename or name)
            try:
                paths.append(store.export(ref, destination))
            except StoreError as exc:
                problems.append(f"could not export output {name!r}: {exc}")
                if destination.exists():
                    shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
        exported[name] = paths
    return exported, problems


def step_statuses(store: ArtifactStore, manifest: RunManifest) -> dict[str, str]:
    """Each step's status as shown: in an interrupted run, a step still marked running is ``succeeded`` when its
    outputs reached the cache (the runner died before recording it), else ``interrupted``."""
    interrupted = shown_status(manifest) == "interrupted"
    statuses: dict[str, str] = {}
    for step_id, record in manifest.steps.items():
        status: str = record.status
        if interrupted and status == "running":
            try:
                hit = record.key is not None and store.cache_lookup(record.key) is not None
            except StoreError:
                hit = False
            status = "succeeded" if hit else "interrupted"
        statuses[step_id] = status
    return statuses


def status_counts(statuses: dict[str, str]) -> dict[str, int]:
    """How many steps have each status."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def _ref_json(store: ArtifactStore, ref: ArtifactRef, path: Path | None) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": ref.kind, "digest": ref.digest, "store_location": store.blob_location(ref.digest)}
    if path is not None:
        data["path"] = str(path.resolve())
    return data


def run_summary(store: ArtifactStore, manifest: RunManifest, exported: dict[str, list[Path]]) -> dict[str, Any]:
    """The ``--json`` object: run id, status, per-step status, and where each output is."""
    steps = [
        {"name": step_id, "status": r.status, "cached": r.cached, "seconds": r.seconds}
        | ({"error": r.error} if r.error else {})
        for step_id, r in manifest.steps.items()
    ]
    outputs: dict[str, Any] = {}
    for name, refs in manifest.outputs.items():
        paths = exported.get(name, [])
        items = refs if isinstance(refs, list) else [refs]
        rendered = [_ref_json(store, ref, paths[i] if i < len(paths) else None) for i, ref in enumerate(items)]
        outputs[name] = rendered if isinstance(refs, list) else rendered[0]
    return {
        "run_id": manifest.run_id,
        "status": manifest.status,
        "store": manifest.store,
        "steps": steps,
        "outputs": outputs,
    }


def print_summary(manifest: RunManifest, exported: dict[str, list[Path]], *, err: bool) -> None:
    """A short human summary: counts, failures, outputs and, when present, the results table."""
    counts = status_counts({sid: r.status for sid, r in manifest.steps.items()})
    click.echo(f"{manifest.status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), err=err)
    for step_id, record in manifest.steps.items():
        if record.status == "failed":
            click.echo(f"  {step_id} failed: {record.error}", err=err)
    for name, paths in exported.items():
        for path in paths:
            click.echo(f"  output {name}: {path}", err=err)
            if path.is_file() and path.name == "summary.md":  # the run's summary of checks
                click.echo(path.read_text(errors="replace").rstrip(), err=err)
            if path.is_file() and path.name == "results.json":
                table = results_table(path)
                if table:
                    click.echo(table, err=err)


def results_table(path: Path) -> str:
    """A fixed-width table of a results document: one row per method, one column per result quantity (read
    generically, so new methods and parameters of interest show too)."""
    from nsbiflow.archive.compare import format_value, methods

    try:
        found = methods(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError):
        return ""
    if not found:
        return ""
    columns: list[str] = []
    for values in found.values():
        columns += [q for q in values or {} if q not in columns]
    cells = [["method", *columns]]
    for method, values in found.items():
        cells.append([method, *(format_value((values or {}).get(q)) if values else "n/a" for q in columns)])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                      strict=True))).rstrip() for row in cells)
