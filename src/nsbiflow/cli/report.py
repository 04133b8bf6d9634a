"""``report``: one self-contained HTML page for a run or an archive."""

from __future__ import annotations

from pathlib import Path

import click

from nsbiflow.cli.app import STORE_OPTION, cli


@cli.command()
@click.argument("reference", metavar="RUN_ID")
@STORE_OPTION
@click.option("--archive", "is_archive", is_flag=True, help="RUN_ID is an archive (NAME or NAME@DIGEST)")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the HTML file to write [./nsbiflow-results/<workflow>/report-<run-id>.html]",
)
def report(reference: str, store_uri: str | None, is_archive: bool, output: Path | None) -> None:
    """Write a run's report: DAG with statuses and cache hits, timeline, results, plots, gates, provenance.

    RUN_ID may be a unique prefix or ``latest``; with ``--archive``, an archive name. The page is one file with
    everything inline (no external resources): open it in any browser, mail it, archive it.
    """
    from nsbiflow.cli.local import resolve_run_id
    from nsbiflow.cli.summary import step_statuses
    from nsbiflow.report import collect_archive, collect_run, render_page
    from nsbiflow.store import open_store
    from nsbiflow.store.records import shown_status

    store = open_store(store_uri)
    if is_archive:
        data = collect_archive(store, reference)
        default = Path("nsbiflow-results") / f"{data.archive['name']}-archive" / "report.html"
    else:
        manifest = store.read_manifest(resolve_run_id(store.run_ids(), reference))
        data = collect_run(store, manifest, step_statuses(store, manifest), shown_status(manifest))
        folder = Path("nsbiflow-results") / str(manifest.workflow.get("name", "run"))
        default = folder / f"report-{manifest.run_id}.html"
    target = output or default
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(render_page(data), encoding="utf-8")
    partial.replace(target)  # whole or not at all
    click.echo(f"wrote {target} ({target.stat().st_size // 1024} KiB): open it in a browser")
    for line in data.problems:
        click.echo(f"warning: {line}", err=True)
