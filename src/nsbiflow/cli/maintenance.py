"""``fsck`` and ``gc``: check a store's records against its blobs; remove what nothing references."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from nsbiflow.cli.app import STORE_OPTION, cli


@cli.command()
@STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def fsck(store_uri: str | None, as_json: bool) -> None:
    """Check that every record (cache, runs, archives) names blobs that exist and match their digests."""
    from nsbiflow.store import open_store
    from nsbiflow.store.maintenance import fsck as check

    store = open_store(store_uri)
    report = check(store)
    if as_json:
        click.echo(
            json.dumps({"ok": report.ok, "records": report.records, "blobs": report.blobs, "problems": report.problems})
        )
    elif report.ok:
        click.echo(f"ok: {store.uri}: {report.records} records, {report.blobs} blobs verified")
    for line in report.problems if not as_json else []:
        click.echo(f"error: {line}", err=True)
    if not report.ok:
        if not as_json:
            click.echo(f"{len(report.problems)} problem(s) in {store.uri}", err=True)
        sys.exit(1)


@cli.command()
@STORE_OPTION
@click.option("--dry-run", is_flag=True, help="list what would be removed, remove nothing")
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="seconds: younger unreferenced blobs are kept (a running step may not have recorded them yet)",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def gc(store_uri: str | None, dry_run: bool, min_age: float, as_json: bool) -> None:
    """Remove blobs no cache entry, run or archive references, stale temporaries and killed runs' work dirs."""
    from nsbiflow.backends.local.executor import clean_stale_workdirs, stale_workdirs
    from nsbiflow.store import open_store
    from nsbiflow.store.maintenance import gc as collect

    store = open_store(store_uri)
    report = collect(store, dry_run=dry_run, min_age=min_age)
    runs_root = Path(tempfile.gettempdir()) / "nsbiflow"
    workdirs = stale_workdirs(runs_root) if dry_run else clean_stale_workdirs(runs_root)
    verb = "would remove" if dry_run else "removed"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "blobs": report.blobs,
                    "bytes": report.bytes,
                    "kept": report.kept,
                    "temporaries": report.temporaries,
                    "workdirs": [str(w) for w in workdirs],
                }
            )
        )
        return
    for digest in report.blobs:
        click.echo(f"{verb} blob {digest}")
    for item in report.temporaries:
        click.echo(f"{verb} temporary {item}")
    for folder in workdirs:
        click.echo(f"{verb} work directory {folder}")
    click.echo(
        f"{verb} {len(report.blobs)} unreferenced blob(s) ({report.bytes / 1e6:.1f} MB), "
        f"{len(report.temporaries)} temporary(ies), {len(workdirs)} work director(ies); kept {report.kept} blob(s)"
    )
