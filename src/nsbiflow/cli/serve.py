"""``nsbiflow serve``: the fit service (warm pyhf / NSBI fits over HTTP; docs/service.md)."""

from __future__ import annotations

import ipaddress

import click

from nsbiflow.cli.app import STORE_OPTION, cli, fail


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.command("serve")
@STORE_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on (0.0.0.0 in a pod)")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(0, 256),
              help="fit worker processes (0: one thread in the server process)")
@click.option("--token-file", type=click.Path(dir_okay=False), envvar="NSBIFLOW_SERVICE_TOKEN_FILE",
              help="file holding the bearer token [$NSBIFLOW_SERVICE_TOKEN_FILE; else $NSBIFLOW_SERVICE_TOKEN]")
@click.option("--no-auth", is_flag=True, help="no token (refused unless --host is a loopback address)")
@click.option("--max-request-mb", default=8.0, show_default=True, type=click.FloatRange(0.01),
              help="largest request body")
@click.option("--max-model-mb", default=64.0, show_default=True, type=click.FloatRange(0.01),
              help="largest model document")
@click.option("--max-blob-mb", default=512.0, show_default=True, type=click.FloatRange(0.01),
              help="largest uploaded blob (a ratio table of a fit step's NSBI model)")
@click.option("--sync-wait", default=30.0, show_default=True, type=click.FloatRange(0),
              help="seconds a request waits before answering 202 with a job id")
@click.option("--preload", multiple=True, metavar="REF", help="model reference to load at start-up (repeatable)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(store_uri: str | None, host: str, port: int, workers: int, token_file: str | None, no_auth: bool,
          max_request_mb: float, max_model_mb: float, max_blob_mb: float, sync_wait: float, preload: tuple[str, ...],
          log_level: str) -> None:
    """Serve fits over HTTP: models load once and stay warm; requests name them by digest or archive."""
    import uvicorn

    from nsbiflow.service.app import asgi
    from nsbiflow.service.settings import ServiceSettings

    if no_auth and not _loopback(host):
        fail(f"--no-auth is only allowed on a loopback address, not {host}: give the server a token")
    settings = ServiceSettings(
        store=store_uri, token_file=token_file, no_auth=no_auth, workers=workers,
        max_request_bytes=int(max_request_mb * (1 << 20)), max_model_bytes=int(max_model_mb * (1 << 20)),
        max_blob_bytes=int(max_blob_mb * (1 << 20)),
        sync_wait_s=sync_wait, preload=list(preload),
    )
    app = asgi(settings)  # a missing or short token fails here, before listening
    if preload:
        from nsbiflow.service.registry import ModelRegistry

        registry = app.app.state.service.registry  # type: ignore[attr-defined]
        assert isinstance(registry, ModelRegistry)
        for ref in preload:
            registry.resolve(ref)  # a wrong reference is one line now, not a failed start-up later
    click.echo(f"nsbiflow fit service on http://{host}:{port} ({workers} worker(s))", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True)
