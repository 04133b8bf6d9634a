"""The ``fit`` step's methods evaluated by a fit service (opt-in: ``$NSBIFLOW_FIT_SERVER`` and a token).

The step still reads its model and samples itself (it checks them and builds the results document); only the
methods' analyses (``physics.model.run.MethodTask``) go to the server, which evaluates them with the same
function on its warm workers, one method per worker. The inputs reach the server's store as blobs,
content-addressed and hashed as the project's store hashes them (a scratch store here computes the very
digests and tree manifests), and only the blobs the server lacks are sent: with a shared store, none.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nsbiflow.physics.model.run import Analyser, MethodTask
from nsbiflow.service.backends.nsbi_model import bundle_document
from nsbiflow.service.client import FitClient
from nsbiflow.store import ArtifactRef, open_store


def upload_inputs(client: FitClient, model_path: Path, ratios: Sequence[Path], events: Sequence[Path]) -> str:
    """Send the model and the blobs of its samples the server lacks; the digest of the registered NSBI bundle."""
    document = yaml.safe_load(model_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="nsbiflow-remote-fit-") as scratch:
        store = open_store(Path(scratch) / "store")
        trees = [store.put_tree(folder) for folder in ratios]
        files = [store.put_file(path) for path in events]
        blobs = list(dict.fromkeys(d for ref in [*trees, *files] for d in store.blobs_of(ref)))
        for blob in client.missing_blobs(blobs):
            client.put_blob(blob, store.read_blob(blob))
    bundle = bundle_document(document, [t.digest for t in trees], [_event(ref) for ref in files])
    digest: str = client.upload(bundle, kind="nsbi", name=model_path.name)["digest"]
    return digest


def _event(ref: ArtifactRef) -> dict[str, str]:
    return {"digest": ref.digest, "filename": ref.filename or "events.parquet"}


def remote_analyser(client: FitClient, model_path: Path, ratios: Sequence[Path], events: Sequence[Path]) -> Analyser:
    """An ``Analyser`` for ``run_fit`` that uploads the inputs once and has the server evaluate every task."""

    def analyser(tasks: list[MethodTask]) -> Mapping[str, Mapping[str, Any]]:
        if not tasks:
            return {}
        digest = upload_inputs(client, model_path, ratios, events)
        answer = client.analyse(digest, [task.as_dict() for task in tasks])
        return {item["method"]: json.loads(item["answer"]) for item in answer["methods"]}

    return analyser
