"""``nsbiflow compile``: translate a workflow for another engine (Argo Workflows, yadage, REANA)."""

from __future__ import annotations

from pathlib import Path

import click

from nsbiflow.cli.app import STEPS_OPTION, cli
from nsbiflow.cli.local import parse_sets
from nsbiflow.errors import UsageError


@cli.command("compile")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--target", type=click.Choice(["argo", "yadage", "reana"]), default="argo", show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="argo: output file [stdout]; yadage/reana: output folder (required)",
)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="override a workflow parameter")
@click.option(
    "--profile",
    type=click.Path(path_type=Path, dir_okay=False),
    help="argo: cluster profile YAML (node pools, tolerations, images, store)",
)
@click.option("--namespace", help="argo: namespace of the Workflow")
@click.option(
    "--environment",
    type=click.Choice(["docker", "localproc"]),
    default="docker",
    show_default=True,
    help="yadage: docker-encapsulated environments (REANA) or local processes",
)
@STEPS_OPTION
def compile_command(
    file: Path,
    target: str,
    output: Path | None,
    sets: tuple[str, ...],
    profile: Path | None,
    namespace: str | None,
    environment: str,
    steps_dirs: tuple[Path, ...],
) -> None:
    """Compile a workflow to Argo Workflow YAML, or export it as a yadage/REANA workflow."""
    from nsbiflow.engine.plan import load_plan

    plan = load_plan(file, overrides=parse_sets(sets), steps_dirs=list(steps_dirs))
    if target == "argo":
        from nsbiflow.backends.argo import compile_to_yaml

        text = compile_to_yaml(plan, profile_path=profile, namespace=namespace)
        if output is None:
            click.echo(text, nl=False)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
            click.echo(f"wrote {output}", err=True)
        return
    if output is None:
        raise UsageError(f"--target {target} writes a folder: give it with -o DIR")
    from nsbiflow.backends.yadage import export_workflow

    written = export_workflow(plan, output, target=target, environment=environment)
    for path in written:
        click.echo(f"wrote {path}", err=True)
