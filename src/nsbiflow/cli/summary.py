"""What a finished run prints: the JSON summary (``--json``) and the human table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from nsbiflow.errors import StoreError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest


def export_outputs(store: ArtifactStore, manifest: RunManifest, target: Path) -> dict[str, list[Path]]:
    """Copy the workflow outputs out of the store into ``target/<name>`` (a convenience copy)."""
    exported: dict[str, list[Path]] = {}
    for name, refs in manifest.outputs.items():
        items = refs if isinstance(refs, list) else [refs]
        paths = []
        for index, ref in enumerate(items):
            base = target / name if len(items) == 1 else target / name / str(index)
            destination = base if ref.kind == "dir" else base / (ref.filename or name)
            try:
                paths.append(store.export(ref, destination))
            except StoreError as exc:
                click.echo(f"warning: could not export output {name!r}: {exc}", err=True)
        exported[name] = paths
    return exported


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
    counts: dict[str, int] = {}
    for record in manifest.steps.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    click.echo(f"{manifest.status}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), err=err)
    for step_id, record in manifest.steps.items():
        if record.status == "failed":
            click.echo(f"  {step_id} failed: {record.error}", err=err)
    for name, paths in exported.items():
        for path in paths:
            click.echo(f"  output {name}: {path}", err=err)
            if path.is_file() and path.name == "results.json":
                table = results_table(path)
                if table:
                    click.echo(table, err=err)


def _number(value: Any) -> float:
    """A reported number, NaN when absent or null (e.g. a CLs limit that was not bracketed)."""
    return float(value) if isinstance(value, int | float) else float("nan")


def results_table(path: Path) -> str:
    """A fixed-width table of a limits ``results.json`` (exact vs NSBI vs histogram), if it has that form."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    methods = [m for m in ("exact", "nsbi", "histogram") if isinstance(data.get(m), dict)]
    if not methods:
        return ""

    def fmt_interval(value: Any) -> str:
        if isinstance(value, list) and len(value) == 2:
            return f"[{value[0]:.3f}, {value[1]:.3f}]"
        return "-"

    lines = [f"  {'method':<10} {'mu_hat':>8} {'68% interval':>18} {'95% interval':>18} {'CLs UL95':>9} {'Z0':>6}"]
    for method in methods:
        r = data[method]
        lines.append(
            f"  {method:<10} {r.get('mu_hat', float('nan')):>8.3f} {fmt_interval(r.get('interval_68')):>18} "
            f"{fmt_interval(r.get('interval_95')):>18} {_number(r.get('cls_upper_limit_95')):>9.3f} "
            f"{r.get('z0', float('nan')):>6.2f}"
        )
    return "\n".join(lines)
