"""Cluster commands: ``nsbiflow submit`` / ``status`` / ``logs`` / ``watch`` (Argo Workflows via hera).

The Argo server comes from ``--argo-server`` or ``ARGO_SERVER``; the token from ``ARGO_TOKEN`` or the
kubeconfig, never from a flag. ``pod-step`` is the hidden in-pod step wrapper the compiled Workflow runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nsbiflow.cli.app import STEPS_OPTION, cli

DEFAULT_NAMESPACE = "nsbiflow"


def _server_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--insecure", is_flag=True, help="do not verify the server's TLS certificate")(function)
    function = click.option("-n", "--namespace", help="namespace of the workflow [$ARGO_NAMESPACE, the "
                            f"profile's, or {DEFAULT_NAMESPACE}]")(function)  # fmt: skip
    function = click.option("--argo-server", "server", metavar="URL", help="Argo server URL [$ARGO_SERVER]; "
                            "the token is read from $ARGO_TOKEN or the kubeconfig")(function)  # fmt: skip
    return function


def _client(server: str | None, namespace: str | None, insecure: bool, default_namespace: str = DEFAULT_NAMESPACE
            ) -> Any:  # fmt: skip
    from nsbiflow.backends.argo.submit import ArgoClient, resolve_token

    namespace = namespace or os.environ.get("ARGO_NAMESPACE") or default_namespace
    insecure = insecure or os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() in ("1", "true")
    return ArgoClient(server, namespace, token=resolve_token(), verify_ssl=not insecure)


@cli.command("submit")
@click.argument("file", type=click.Path(path_type=Path))
@_server_options
@click.option("--profile", type=click.Path(path_type=Path, dir_okay=False), help="cluster profile YAML")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="override a workflow parameter")
@STEPS_OPTION
@click.option("--upload-inputs", is_flag=True, help="store the workflow's input files ({path: ...}) in the "
              "profile's store first (S3 credentials from AWS_* variables)")  # fmt: skip
@click.option("--watch", "follow", is_flag=True, help="watch the workflow until it finishes")
def submit_command(file: Path, server: str | None, namespace: str | None, insecure: bool, profile: Path | None,
                   sets: tuple[str, ...], steps_dirs: tuple[Path, ...], upload_inputs: bool, follow: bool
                   ) -> None:  # fmt: skip
    """Compile a workflow for Argo and submit it; prints the workflow's name."""
    from nsbiflow.backends.argo.compiler import CompileError, compile_workflow, to_dict
    from nsbiflow.backends.argo.profile import load_profile
    from nsbiflow.backends.argo.validate import strict_errors
    from nsbiflow.cli.local import parse_sets
    from nsbiflow.engine.plan import load_plan

    plan = load_plan(file, overrides=parse_sets(sets), steps_dirs=list(steps_dirs))
    cluster = load_profile(profile)
    namespace = namespace or os.environ.get("ARGO_NAMESPACE") or cluster.namespace
    workflow = compile_workflow(plan, cluster, namespace)
    problems = strict_errors(to_dict(workflow))
    if problems:
        raise CompileError(f"the compiled workflow is not a valid Argo Workflow: {problems[0]}")
    client = _client(server, namespace, insecure)
    files = sorted({src.path for step in plan.steps.values() for srcs in step.inputs.values() for src in srcs
                    if src.path is not None})  # fmt: skip
    if files and upload_inputs:
        from nsbiflow.store import open_store

        store = open_store(cluster.store)
        for path in files:
            store.put_file(path)
        click.echo(f"stored {len(files)} input file(s) in {store.uri}", err=True)
    elif files:
        click.echo(f"note: {len(files)} input file(s) must already be in {cluster.store} (use --upload-inputs)",
                   err=True)  # fmt: skip
    name = client.submit(workflow)
    click.echo(name)
    click.echo(f"submitted {name} to {client.server} (namespace {namespace}); follow it with: "
               f"nsbiflow watch {name} -n {namespace}", err=True)  # fmt: skip
    if follow:
        _watch(client, name, interval=5.0, timeout=None)


@cli.command("status")
@click.argument("name")
@_server_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status_command(name: str, server: str | None, namespace: str | None, insecure: bool, as_json: bool) -> None:
    """Show the phase of a submitted workflow and of each step pod (cached steps marked)."""
    import dataclasses

    state = _client(server, namespace, insecure).state(name)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(state), indent=2))
        return
    click.echo(f"{state.name}  {state.phase}  {state.progress}  started {state.started or '-'}  "
               f"finished {state.finished or '-'}")  # fmt: skip
    if state.message:
        click.echo(f"  {state.message}")
    for node in state.nodes or []:
        cached = "  (cached)" if node.cached else ""
        message = f"  {node.message}" if node.message and node.phase != "Succeeded" else ""
        click.echo(f"  {node.name:<40} {node.phase:<10}{cached}{message}")


@cli.command("logs")
@click.argument("name")
@_server_options
@click.option("--step", help="only this step's pods (the step name; fan-out instances included)")
def logs_command(name: str, server: str | None, namespace: str | None, insecure: bool, step: str | None) -> None:
    """Print the step containers' logs of a submitted workflow."""
    for pod, line in _client(server, namespace, insecure).logs(name, step):
        click.echo(f"{pod}: {line}")


def _watch(client: Any, name: str, *, interval: float, timeout: float | None, plain: bool = False) -> None:
    """Follow the workflow: node phases, and the steps' progress read from their pod logs (bars on a terminal,
    lines otherwise)."""
    from nsbiflow.backends.argo.progress import PlainWatch, PodProgress, RichWatch, WatchDisplay, watch_with_progress

    progress = PodProgress()
    display: WatchDisplay = RichWatch(progress) if sys.stdout.isatty() and not plain else PlainWatch(progress)
    state = watch_with_progress(client, name, interval=interval, timeout=timeout, display=display, progress=progress)
    if not state.finished_ok:
        sys.exit(1)


@cli.command("watch")
@click.argument("name")
@_server_options
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="poll period (s)")
@click.option("--timeout", type=click.FloatRange(min=0), help="give up after this many seconds")
@click.option("--plain", is_flag=True, help="a line per change even on a terminal (no live bars)")
def watch_command(name: str, server: str | None, namespace: str | None, insecure: bool, interval: float,
                  timeout: float | None, plain: bool) -> None:  # fmt: skip
    """Follow a submitted workflow until it finishes, with each step's progress from its pod log (a bar per
    running step on a terminal); exit 0 if it succeeded, 1 otherwise."""
    _watch(_client(server, namespace, insecure), name, interval=interval, timeout=timeout, plain=plain)


@cli.command("pod-step", hidden=True, context_settings={"ignore_unknown_options": True,
                                                        "allow_interspersed_args": False})  # fmt: skip
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def pod_step_command(command: tuple[str, ...]) -> None:
    """Run one step inside an Argo pod, skipping it when its step key is already in the store."""
    from nsbiflow.backends.argo.wrapper import pod_step_main

    sys.exit(pod_step_main(list(command)))
