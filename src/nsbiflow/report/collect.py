"""What a report shows, read from the store: steps and their edges, results, plots, diagnostics, provenance."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from nsbiflow.archive.compare import methods, read_result_document, tree_files
from nsbiflow.archive.record import list_reinterpretations, load_archive
from nsbiflow.errors import StoreError
from nsbiflow.store import ArtifactRef, ArtifactStore, RunManifest

MAX_PLOT_BYTES = 4 * 1024 * 1024
"""Plots larger than this are listed, not embedded (the page stays small enough to open anywhere)."""


@dataclass
class Plot:
    """One PNG among the outputs."""

    output: str
    path: str
    digest: str
    data: bytes | None


@dataclass
class Gate:
    """A diagnostic with a pass/fail verdict (a ``metrics.json`` with ``passed``), or a failed step."""

    name: str
    passed: bool
    details: dict[str, Any]
    source: str


@dataclass
class ReportData:
    """Everything the page shows."""

    title: str
    manifest: RunManifest
    status: str
    statuses: dict[str, str]
    edges: list[tuple[str, str]]
    results: dict[str, dict[str, dict[str, Any] | None]]
    plots: list[Plot]
    gates: list[Gate]
    hypothesis: str
    archive: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    summaries: dict[str, str] = field(default_factory=dict)
    """Output name -> the text of a ``summary.md`` (the run's checks, written by the summarize step)."""


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time, or ``None``."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def step_edges(manifest: RunManifest) -> list[tuple[str, str]]:
    """(producer, consumer) pairs: a step consumes a digest another step of the run produced."""
    producers: dict[str, str] = {}
    for step_id, record in manifest.steps.items():
        for ref in record.outputs.values():
            producers.setdefault(ref.digest, step_id)
    edges = set()
    for step_id, record in manifest.steps.items():
        for digests in record.inputs.values():
            for digest in digests:
                producer = producers.get(digest)
                if producer is not None and producer != step_id:
                    edges.add((producer, step_id))
    return sorted(edges)


def _refs(manifest: RunManifest) -> list[tuple[str, ArtifactRef]]:
    found = []
    for name, value in manifest.outputs.items():
        for ref in value if isinstance(value, list) else [value]:
            found.append((name, ref))
    return found


def _hypothesis(store: ArtifactStore, manifest: RunManifest) -> str:
    """The interface parameters' values (what a reinterpretation may change), else every parameter."""
    names: list[str] = []
    try:
        document = yaml.safe_load(store.read_blob(manifest.workflow["file"]))
        names = list((document.get("interface") or {}).get("parameters") or [])
    except (KeyError, StoreError, yaml.YAMLError, AttributeError):
        pass
    shown = names or list(manifest.parameters)
    return ", ".join(f"{n}={json.dumps(manifest.parameters.get(n))}" for n in shown if n in manifest.parameters)


def _read_json(store: ArtifactStore, digest: str) -> Any:
    try:
        return json.loads(store.read_blob(digest))
    except (StoreError, ValueError):
        return None


def collect_run(store: ArtifactStore, manifest: RunManifest, statuses: dict[str, str], status: str) -> ReportData:
    """The report of one run (``statuses``: each step's status as shown, see ``cli.summary.step_statuses``)."""
    results: dict[str, dict[str, dict[str, Any] | None]] = {}
    plots: list[Plot] = []
    gates: list[Gate] = []
    problems: list[str] = []
    summaries: dict[str, str] = {}
    seen: set[str] = set()
    for name, ref in _refs(manifest):
        try:
            if ref.kind == "file":
                if ref.filename == "summary.md":
                    summaries[name] = store.read_blob(ref.digest).decode(errors="replace")
                if (ref.filename or "").endswith(".json"):
                    found = methods(read_result_document(store, ref))
                    if found:
                        results[f"{name} ({ref.filename})"] = found
                continue
            files = tree_files(store, ref)
        except StoreError as exc:
            problems.append(f"output {name}: {exc}")
            continue
        for relative, digest in files.items():
            if relative.lower().endswith(".png") and digest not in seen:
                seen.add(digest)
                data = None
                try:
                    data = store.read_blob(digest)
                except StoreError as exc:
                    problems.append(f"plot {name}/{relative}: {exc}")
                if data is not None and len(data) > MAX_PLOT_BYTES:
                    data = None
                plots.append(Plot(name, relative, digest, data))
            elif PurePosixPath(relative).name == "metrics.json":
                metrics = _read_json(store, digest)
                if isinstance(metrics, dict) and isinstance(metrics.get("passed"), bool):
                    details = {
                        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
                    }
                    label = str(metrics.get("label") or relative)
                    gates.append(Gate(label, metrics["passed"], details, f"{name}/{relative}"))
            elif relative.endswith(".json") and PurePosixPath(relative).name == "results.json":
                found = methods(_read_json(store, digest))
                if found:
                    results[f"{name}/{relative}"] = found
    for step_id, record in manifest.steps.items():
        if statuses.get(step_id) == "failed":
            gates.append(Gate(step_id, False, {}, f"step failed: {record.error or ''}"))
    plots.sort(key=lambda p: ("scan" not in p.path.lower(), p.output, p.path))  # the answer first, then diagnostics
    title = f"{manifest.workflow.get('name', 'run')} — run {manifest.run_id}"
    return ReportData(
        title=title,
        manifest=manifest,
        status=status,
        statuses=statuses,
        edges=step_edges(manifest),
        results=results,
        plots=plots,
        gates=gates,
        hypothesis=_hypothesis(store, manifest),
        problems=problems,
        summaries=summaries,
    )


def collect_archive(store: ArtifactStore, reference: str) -> ReportData:
    """The report of a preserved analysis: its run, plus the archive's identity, interface and reinterpretations."""
    digest, record = load_archive(store, reference)
    manifest = RunManifest.model_validate(record.manifest)
    manifest.outputs = dict(record.results)
    statuses: dict[str, str] = {sid: r.status for sid, r in manifest.steps.items()}
    data = collect_run(store, manifest, statuses, manifest.status)
    data.title = f"archive {record.name}@{digest[7:19]} — {record.workflow_name}"
    data.archive = {
        "name": record.name,
        "digest": digest,
        "created": record.created,
        "interface": record.interface,
        "images": {k: v.model_dump() for k, v in record.images.items()},
        "reinterpretations": [
            {"created": r.created, "kind": r.kind, "changed": ", ".join(r.changed) or "nothing"}
            for r in list_reinterpretations(store, record.name)
        ],
    }
    return data
