"""``preserve``, ``archive list|show|verify``, ``reinterpret``: preserving and reinterpreting analyses (RECAST)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nsbiflow.cli.app import STORE_OPTION, cli, fail
from nsbiflow.cli.local import resolve_run_id


@cli.command()
@click.argument("run_id")
@click.option("--name", required=True, help="archive name (preserving under an existing name adds a version)")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the archive digest and key check as JSON")
def preserve(run_id: str, name: str, store_uri: str | None, as_json: bool) -> None:
    """Preserve a finished run as an immutable archive (workflow, definitions, parameters, every artifact)."""
    from nsbiflow.archive import ArchiveNotFoundError, preserve_run
    from nsbiflow.errors import UsageError
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    try:
        full_id = resolve_run_id(store.run_ids(), run_id)
    except UsageError as exc:
        raise ArchiveNotFoundError(str(exc)) from None
    digest, record = preserve_run(store, full_id, name)
    check = record.key_check
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": name,
                    "digest": digest,
                    "run_id": full_id,
                    "blobs": len(record.blobs),
                    "key_check": check.model_dump(),
                }
            )
        )
        return
    click.echo(f"preserved run {full_id} as {name}@{digest[7:19]} ({digest})")
    click.echo(f"  {len(record.blobs)} blobs, {len(record.steps)} steps, results: {', '.join(record.results)}")
    if check.mismatched:
        click.echo(
            f"warning: {len(check.mismatched)} step keys do not re-plan to the run's keys "
            f"({', '.join(check.mismatched[:5])}); a reinterpretation will re-run them",
            err=True,
        )


@cli.group()
def archive() -> None:
    """Preserved analyses: list, show, verify."""


@archive.command("list")
@click.argument("name", required=False)
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="one JSON object per archive version")
def archive_list(name: str | None, store_uri: str | None, as_json: bool) -> None:
    """List archives: every version preserve made under each name, oldest first; * marks the current one."""
    from nsbiflow.archive import list_archives
    from nsbiflow.store import open_store

    for entry in list_archives(open_store(store_uri), name):
        if as_json:
            click.echo(json.dumps(entry.model_dump()))
        else:
            mark = "*" if entry.current else " "
            click.echo(
                f"{mark} {entry.name}@{entry.digest[7:19]}  {entry.workflow:<20} run {entry.run_id}  {entry.created}"
            )


@archive.command("show")
@click.argument("reference", metavar="ARCHIVE")
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the whole archive record")
def archive_show(reference: str, store_uri: str | None, as_json: bool) -> None:
    """Show an archive: its run, parameters, reinterpretation interface (patchable pointers) and results."""
    import jsonpointer

    from nsbiflow.archive import load_archive
    from nsbiflow.archive.patching import interface_pointers
    from nsbiflow.archive.record import list_reinterpretations
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    digest, record = load_archive(store, reference)
    if as_json:
        click.echo(json.dumps({"digest": digest, **record.model_dump(mode="json")}, indent=2))
        return
    document = json.loads(store.read_blob(record.workflow_document))
    click.echo(f"archive   {record.name}@{digest[7:19]}  ({digest})")
    click.echo(f"created   {record.created}   run {record.run_id}")
    click.echo(f"workflow  {record.workflow_name}   nsbiflow {record.versions.get('nsbiflow', '?')}")
    click.echo(f"params    {json.dumps(record.parameters)}")
    click.echo(f"steps     {len(record.steps)} ({len(record.definitions)} definitions), {len(record.blobs)} blobs")
    click.echo(f"images    {', '.join(sorted({i.image for i in record.images.values()}))}")
    click.echo("interface (a reinterpretation patch may change):")
    for pointer in interface_pointers(record.interface):
        click.echo(f"  {pointer} = {json.dumps(jsonpointer.resolve_pointer(document, pointer, None))}")
    if not interface_pointers(record.interface):
        click.echo("  nothing: the workflow declares no interface")
    click.echo("results:")
    for name, refs in record.results.items():
        for ref in refs if isinstance(refs, list) else [refs]:
            click.echo(f"  {name:<16} {ref.kind:<4} {ref.digest}")
    reinterpretations = list_reinterpretations(store, record.name)
    if reinterpretations:
        click.echo("reinterpretations:")
        for item in reinterpretations:
            click.echo(f"  {item.created}  {item.kind:<14} changed {', '.join(item.changed) or 'nothing'}")


@archive.command("verify")
@click.argument("reference", metavar="ARCHIVE")
@STORE_OPTION
def archive_verify(reference: str, store_uri: str | None) -> None:
    """Re-hash every blob an archive references; name anything missing or altered (exit 1)."""
    from nsbiflow.archive import load_archive, verify_archive
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    digest, record = load_archive(store, reference)
    report = verify_archive(store, digest, record)
    if report.ok:
        click.echo(f"ok: {record.name}@{digest[7:19]}: {report.checked} blobs verified")
        return
    for line in report.problems():
        click.echo(f"error: {record.name}@{digest[7:19]}: {line}", err=True)
    sys.exit(1)


@cli.command()
@click.argument("reference", metavar="ARCHIVE")
@click.option(
    "--patch",
    "patch_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="RFC 6902 JSON Patch on the archived workflow's interface, or a pyhf patchset",
)
@click.option("--patch-name", help="pyhf patchset: which patch to apply")
@click.option("--workspace", help="pyhf patchset: which workspace result to patch")
@STORE_OPTION
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="steps/cores to use at once [all cores]")
@click.option("--target", type=click.Choice(["local", "argo"]), default="local", show_default=True,
              help="where the patched workflow runs: here, or compiled and submitted to Argo against the store")
@click.option("--profile", type=click.Path(path_type=Path, dir_okay=False), help="--target argo: cluster profile")
@click.option("--argo-server", "server", metavar="URL", help="--target argo: Argo server URL [$ARGO_SERVER]; "
              "the token is read from $ARGO_TOKEN or the kubeconfig")
@click.option("-n", "--namespace", help="--target argo: namespace [$ARGO_NAMESPACE or the profile's]")
@click.option("--json", "as_json", is_flag=True, help="print a JSON report as the last line of stdout")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="export the comparison and the new and original outputs here [./nsbiflow-results/<archive>-reinterpreted]",
)
def reinterpret(
    reference: str,
    patch_file: Path,
    patch_name: str | None,
    workspace: str | None,
    store_uri: str | None,
    jobs: int | None,
    target: str,
    profile: Path | None,
    server: str | None,
    namespace: str | None,
    as_json: bool,
    results_dir: Path | None,
) -> None:
    """Reinterpret an archive: patch its interface, re-run only the steps the change touches."""
    from nsbiflow.archive import ArchiveNotFoundError
    from nsbiflow.archive.compare import compare_results, export_reinterpretation, text_table
    from nsbiflow.archive.errors import TamperedArchiveError
    from nsbiflow.archive.patching import load_patch
    from nsbiflow.archive.pyhf_patchset import is_patchset, reinterpret_patchset
    from nsbiflow.archive.reinterpret import reinterpret as run_reinterpret
    from nsbiflow.archive.targets import ArgoTarget, ExecutionTarget, LocalTarget
    from nsbiflow.backends.local.progress import PlainProgress, QuietProgress
    from nsbiflow.store import open_store

    store = open_store(store_uri)
    patch = load_patch(patch_file)
    try:
        if is_patchset(patch):
            if target != "local":
                from nsbiflow.errors import UsageError

                raise UsageError("a pyhf patchset is refitted here from the archived workspace: drop --target")
            result = reinterpret_patchset(store, reference, patch, patch_name=patch_name, workspace=workspace)
        else:
            progress = QuietProgress() if as_json else PlainProgress()
            runner: ExecutionTarget = (
                ArgoTarget(profile=profile, server=server, namespace=namespace)
                if target == "argo"
                else LocalTarget(jobs=jobs, progress=progress)
            )
            result = run_reinterpret(store, reference, patch, base_dir=patch_file.resolve().parent, target=runner)
    except (ArchiveNotFoundError, TamperedArchiveError) as exc:  # the user's to fix: exit 2 (docs/recast.md)
        fail(str(exc), 2)
        return
    comparisons = [] if result.submitted else compare_results(store, result)
    exported = (
        {}
        if result.submitted
        else export_reinterpretation(
            store, result, comparisons, results_dir or Path("nsbiflow-results") / f"{result.archive}-reinterpreted"
        )
    )
    summary = result.summary()
    summary["comparison"] = [c.as_json() for c in comparisons]
    summary["exported"] = {name: str(path.resolve()) for name, path in exported.items()}
    if as_json:
        click.echo(json.dumps(summary))
        return
    if result.submitted:
        click.echo(f"submitted {summary['workflow']} ({result.archive}@{result.archive_digest[7:19]} reinterpreted "
                   f"on {summary['target']}); follow it with: nsbiflow watch {summary['workflow']}")  # fmt: skip
        click.echo(f"  pods skip {', '.join(result.reused) or '-'} (their step keys are in {store.uri})")
        click.echo(f"  re-run    {', '.join(result.reran) or '-'}")
        return
    click.echo(f"reinterpreted {result.archive}@{result.archive_digest[7:19]} ({result.record.kind})")
    for pointer, change in result.record.changed.items():
        click.echo(f"  changed  {pointer}: {json.dumps(change['from'])} -> {json.dumps(change['to'])}")
    if result.manifest is not None:
        click.echo(f"  run      {result.manifest.run_id}: {len(result.reused)} reused, {len(result.reran)} re-ran")
        click.echo(f"  reused   {', '.join(result.reused) or '-'}")
        click.echo(f"  re-ran   {', '.join(result.reran) or '-'}")
    for name, value in result.record.results.items():
        before = result.record.original_results.get(name)
        click.echo(f"  result   {name}: {_short(value)}  (original: {_short(before)})")
    click.echo(f"  record   archives/{result.archive}/reinterpretations/{result.record_digest[7:]}.json")
    for comparison in comparisons:
        click.echo(text_table(comparison))
    for name, path in exported.items():
        click.echo(f"  exported {name}: {path}")


def _short(value: object) -> str:
    if isinstance(value, dict) and "digest" in value:
        return str(value["digest"])
    return json.dumps(value)
