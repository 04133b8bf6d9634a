"""``nsbiflow fit``: one fit request, answered by a fit service (``--server``) or in this process.

The request is the same JSON the HTTP API takes, so ``--server`` changes where it runs, not what it
computes. A ``--workspace`` file is uploaded to the server (or, locally, read into a scratch store).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from nsbiflow.cli.app import STORE_OPTION, cli
from nsbiflow.errors import UsageError


def _json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None


def _scan(text: str) -> tuple[float, float, int]:
    try:
        start, stop, points = text.split(":")
        return float(start), float(stop), int(points)
    except ValueError:
        raise UsageError(f"--scan {text!r}: expected START:STOP:POINTS, e.g. 0:3:31") from None


def build_request(model: str, *, hypotest: float | None, upper_limit: bool, scan: str | None,
                  parameter: str | None, patchset: Any, patch_names: tuple[str, ...], patch: Any,
                  level: float) -> tuple[str, dict[str, Any]]:
    """The request kind and JSON body the options describe."""
    if sum(x is not None and x is not False for x in (hypotest, scan, upper_limit or None)) > 1:
        raise UsageError("choose one of --hypotest, --upper-limit and --scan")
    operation: dict[str, Any]
    if hypotest is not None:
        kind, operation = "hypotest", {"op": "hypotest", "poi": hypotest}
    elif upper_limit:
        kind, operation = "upper-limit", {"op": "upper_limit", "level": level}
    elif scan is not None:
        if patchset is not None:
            raise UsageError("--scan takes no --patchset (scan one patched model with --patch)")
        start, stop, points = _scan(scan)
        return "scan", {"model": model, "start": start, "stop": stop, "points": points, "parameter": parameter,
                        "patch": patch}
    else:
        kind, operation = "fit", {"op": "fit"}
    if patchset is not None:
        return "batch", {"model": model, "patchset": patchset, "names": list(patch_names) or None,
                         "operation": operation}
    return kind, {"model": model, "patch": patch, **{k: v for k, v in operation.items() if k != "op"}}


async def _local(store_uri: str | None, workspace: Any, kind: str, body: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from nsbiflow.service.app import REQUEST_KINDS, Service
    from nsbiflow.service.jobs import Job
    from nsbiflow.service.registry import ResolvedModel
    from nsbiflow.service.schemas import InfoOptions
    from nsbiflow.service.settings import ServiceSettings
    from nsbiflow.store import open_store

    with tempfile.TemporaryDirectory(prefix="nsbiflow-fit-") as scratch:
        store = open_store(scratch if workspace is not None else store_uri)
        service = Service(ServiceSettings(workers=0, no_auth=True), store)
        try:
            if workspace is not None:
                digest, _ = service.registry.store_document("pyhf", workspace)
                await service.pool.run(service.task(ResolvedModel(digest, "pyhf", digest), InfoOptions()))
                body["model"] = digest
            try:
                request = REQUEST_KINDS[kind].model_validate(body)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"]) or "request"
                raise UsageError(f"{where}: {error['msg']}") from None
            result = await service.work_of(kind, request)(Job(kind, 0))
            return result.model_dump(mode="json")
        finally:
            service.pool.close()


@cli.command("fit")
@STORE_OPTION
@click.option("--server", metavar="URL", envvar="NSBIFLOW_FIT_SERVER",
              help="fit service to send the request to [$NSBIFLOW_FIT_SERVER]; default: fit in this process")
@click.option("--token-file", type=click.Path(dir_okay=False), help="bearer token file [$NSBIFLOW_FIT_TOKEN(_FILE)]")
@click.option("--workspace", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a pyhf workspace JSON file (uploaded to the server)")
@click.option("--model", "model_ref", metavar="REF", help="a model in the store: sha256:<digest> or ARCHIVE[:RESULT]")
@click.option("--hypotest", type=float, metavar="POI", help="CLs at this POI value")
@click.option("--upper-limit", is_flag=True, help="observed and expected CLs upper limits")
@click.option("--level", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="CLs level of --upper-limit")
@click.option("--scan", metavar="START:STOP:POINTS", help="profile-likelihood scan")
@click.option("--parameter", help="parameter of --scan (default: the POI)")
@click.option("--patchset", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="pyhf patchset: run the operation on each patch (a batch)")
@click.option("--patch-name", "patch_names", multiple=True, help="patches of --patchset to run (default: all)")
@click.option("--patch", "patch_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="RFC 6902 patch applied to the model first")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write the JSON answer here")
def fit(store_uri: str | None, server: str | None, token_file: str | None, workspace: Path | None,
        model_ref: str | None, hypotest: float | None, upper_limit: bool, level: float, scan: str | None,
        parameter: str | None, patchset: Path | None, patch_names: tuple[str, ...], patch_file: Path | None,
        output: Path | None) -> None:
    """Fit a model: best fit (default), --hypotest POI, --upper-limit or --scan; --patchset for a batch."""
    if (workspace is None) == (model_ref is None):
        raise UsageError("give exactly one of --workspace FILE and --model REF")
    document = _json_file(workspace, "--workspace") if workspace else None
    kind, body = build_request(
        model_ref or "", hypotest=hypotest, upper_limit=upper_limit, scan=scan, parameter=parameter,
        patchset=_json_file(patchset, "--patchset") if patchset else None, patch_names=patch_names,
        patch=_json_file(patch_file, "--patch") if patch_file else None, level=level,
    )
    if server:
        from nsbiflow.service.client import FitClient, read_token

        with FitClient(server, read_token(token_file=token_file)) as client:
            if document is not None:
                body["model"] = client.upload(document, name=workspace.name if workspace else None)["digest"]
            answer = client.call(kind, body)
    else:
        answer = asyncio.run(_local(store_uri, document, kind, body))
    text = json.dumps(answer, indent=2, sort_keys=True)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")
