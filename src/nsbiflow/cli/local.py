"""``validate``, ``run``, ``runs``, ``show``, ``schema``: working with workflows on this machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nsbiflow.cli.app import STEPS_OPTION, STORE_OPTION, cli
from nsbiflow.errors import SpecError, UsageError
from nsbiflow.store import RunManifest
from nsbiflow.store.records import shown_status


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` pairs from ``--set`` options."""
    result: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE")
        result[name.strip()] = value
    return result


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="override a workflow parameter (checked as `run --set` would apply it; every file must declare it)",
)
@STEPS_OPTION
def validate(files: tuple[Path, ...], sets: tuple[str, ...], steps_dirs: tuple[Path, ...]) -> None:
    """Check workflow files: structure, step definitions, references, fan-out and cycles."""
    from nsbiflow.engine.plan import load_plan

    overrides = parse_sets(sets)
    problems = []
    for file in files:
        try:
            plan = load_plan(file, overrides=overrides, steps_dirs=list(steps_dirs))
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        click.echo(f"{file}: ok ({len(plan.steps)} step instances from {len(plan.templates)} steps)")
    if problems:
        raise SpecError(problems)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="override a workflow parameter")
@STORE_OPTION
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="steps/cores to use at once [all cores]")
@click.option("--json", "as_json", is_flag=True, help="print a JSON summary as the last line of stdout")
@STEPS_OPTION
@click.option("--workdir", type=click.Path(path_type=Path, file_okay=False), help="where step work directories go")
@click.option("--keep-workdirs", is_flag=True, help="keep step work directories after success")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="copy workflow outputs here [./nsbiflow-results/<workflow>]",
)
def run(
    file: Path,
    sets: tuple[str, ...],
    store_uri: str | None,
    jobs: int | None,
    as_json: bool,
    steps_dirs: tuple[Path, ...],
    workdir: Path | None,
    keep_workdirs: bool,
    results_dir: Path | None,
) -> None:
    """Run a workflow on this machine (the embedded default); cached steps are not re-run."""
    from nsbiflow.backends.local.executor import LocalExecutor, check_store_reachable
    from nsbiflow.backends.local.progress import PlainProgress, RichProgress
    from nsbiflow.cli.summary import export_outputs, instance_names, print_summary, run_summary
    from nsbiflow.engine.plan import load_plan
    from nsbiflow.store import open_store

    plan = load_plan(file, overrides=parse_sets(sets), steps_dirs=list(steps_dirs))
    store = open_store(store_uri)
    check_store_reachable(store)
    progress = RichProgress() if sys.stderr.isatty() else PlainProgress()
    executor = LocalExecutor(store, jobs=jobs, workdir=workdir, progress=progress, keep_workdirs=keep_workdirs)
    manifest = executor.run(plan)
    target = results_dir or Path("nsbiflow-results") / plan.workflow.metadata.name
    exported, problems = (
        export_outputs(store, manifest, target, instance_names(plan)) if manifest.status == "succeeded" else ({}, [])
    )
    summary = run_summary(store, manifest, exported)
    if problems:
        summary["export_errors"] = problems
    if as_json:
        print_summary(manifest, exported, err=True)
        click.echo(json.dumps(summary))
    else:
        print_summary(manifest, exported, err=False)
    for line in problems:
        click.echo(f"error: {line}", err=True)
    if manifest.status != "succeeded" or problems:
        sys.exit(1)


@cli.command()
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="one JSON object per run")
def runs(store_uri: str | None, as_json: bool) -> None:
    """List the runs in the store, newest last."""
    from nsbiflow.cli.summary import status_counts, step_statuses
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    for run_id in store.run_ids():
        manifest = store.read_manifest(run_id)
        counts = status_counts(step_statuses(store, manifest))
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "run_id": run_id,
                        "workflow": manifest.workflow.get("name"),
                        "status": shown_status(manifest),
                        "started": manifest.started,
                        "steps": counts,
                    }
                )
            )
        else:
            detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            name = manifest.workflow.get("name", "?")
            click.echo(f"{run_id}  {name:<20} {shown_status(manifest):<11} {manifest.started}  {detail}")


@cli.command()
@click.argument("run_id")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the whole manifest as JSON")
@click.option("--log", "log_step", metavar="STEP", help="print the log of one step")
@click.option("--workflow", "print_workflow", is_flag=True, help="print the workflow file the run used (stored copy)")
def show(run_id: str, store_uri: str | None, as_json: bool, log_step: str | None, print_workflow: bool) -> None:
    """Show a run: its steps in run order, their status, and where the outputs are."""
    from nsbiflow.cli.summary import step_statuses
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    manifest = store.read_manifest(resolve_run_id(store.run_ids(), run_id))
    if log_step is not None:
        record = manifest.steps.get(log_step)
        if record is None:
            raise UsageError(f"run {manifest.run_id} has no step {log_step!r} (steps: {', '.join(manifest.steps)})")
        if record.log is None:
            raise UsageError(f"step {log_step!r} has no log (status {record.status})")
        click.echo(store.read_blob(record.log).decode(errors="replace"), nl=False)
        return
    if print_workflow:
        if not manifest.workflow.get("file"):
            raise UsageError(f"run {manifest.run_id} has no stored workflow file")
        click.echo(store.read_blob(manifest.workflow["file"]).decode(errors="replace"), nl=False)
        return
    if as_json:
        click.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return
    path = manifest.workflow.get("path")
    where = path if path and Path(path).is_file() else "its file is gone; `--workflow` prints the stored copy"
    statuses = step_statuses(store, manifest)
    click.echo(f"run       {manifest.run_id}")
    click.echo(f"workflow  {manifest.workflow.get('name')}  ({where})")
    click.echo(f"digest    {manifest.workflow.get('digest')}")
    click.echo(f"status    {shown_status(manifest)}   started {manifest.started}   finished {manifest.finished}")
    click.echo(f"host      {manifest.host}   nsbiflow {manifest.versions.get('nsbiflow')}")
    click.echo(f"store     {manifest.store}")
    click.echo(f"params    {json.dumps(manifest.parameters)}")
    click.echo("steps (in run order):")
    for step_id in run_order(manifest):
        record = manifest.steps[step_id]
        status = statuses[step_id]
        line = f"  {step_id:<32} {status:<11} {record.seconds:8.1f}s  key {str(record.key)[:12]}"
        click.echo(line + (f"  {record.error}" if record.error else ""))
    if manifest.outputs:
        click.echo("outputs:")
        for name, refs in manifest.outputs.items():
            for ref in refs if isinstance(refs, list) else [refs]:
                click.echo(f"  {name:<16} {ref.kind:<4} {ref.digest}  {store.blob_location(ref.digest)}")
                if ref.kind == "dir":
                    from nsbiflow.archive.compare import tree_files

                    for relative in tree_files(store, ref):
                        click.echo(f"  {'':<16}      {relative}")
        for refs in manifest.outputs.values():  # the run's summary of checks (the summarize step), when present
            for ref in refs if isinstance(refs, list) else [refs]:
                if ref.kind == "file" and ref.filename == "summary.md":
                    click.echo("checks:\n" + store.read_blob(ref.digest).decode(errors="replace").rstrip())


def run_order(manifest: RunManifest) -> list[str]:
    """Step ids in the order they started (cached steps when they were found; never-started ones last); within
    the same second, upstream steps first."""
    from nsbiflow.report.collect import step_edges
    from nsbiflow.report.graph import layers

    position = {sid: i for i, sid in enumerate(manifest.steps)}
    depth = layers(list(manifest.steps), step_edges(manifest))

    def key(step_id: str) -> tuple[int, str, int, int]:
        record = manifest.steps[step_id]
        when = record.started or record.finished
        return (0 if when else 1, when or "", depth[step_id], position[step_id])

    return sorted(manifest.steps, key=key)


def resolve_run_id(known: list[str], wanted: str) -> str:
    """A full run id from a unique prefix, or ``latest``."""
    if wanted == "latest" and known:
        return known[-1]
    matches = [r for r in known if r.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {wanted!r} in the store (see `nsbiflow runs`)")
    raise UsageError(f"run id {wanted!r} is ambiguous: {', '.join(matches)}")


@cli.command()
@click.option("--kind", default="workflow", show_default=True, help="workflow, step, or an installed kind (model, ...)")
def schema(kind: str) -> None:
    """Print the JSON Schema of a workflow, a step definition, or a kind an installed package provides."""
    from nsbiflow.engine.checks import extra_schemas
    from nsbiflow.spec.schema_export import schema_json

    if kind in ("workflow", "step"):
        click.echo(schema_json(kind), nl=False)
        return
    extra = extra_schemas()
    if kind not in extra:
        raise UsageError(f"--kind {kind!r}: known kinds are {', '.join(['workflow', 'step', *sorted(extra)])}")
    click.echo(extra[kind](), nl=False)
