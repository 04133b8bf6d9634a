"""Binned reinterpretation: apply a pyhf ``PatchSet`` to a HistFactory workspace the archive produced.

The archived analysis wrote a pyhf workspace (the binned fallback); a reinterpreter brings a patchset
(the pyhf/RECAST habit: new signal yields per channel). The patched workspace is refit with pyhf and
both CLs values (original and patched signal) are recorded next to the archive. No step re-runs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from nsbiflow.archive.errors import ArchiveError, PatchError
from nsbiflow.archive.record import ArchiveRecord, ReinterpretationRecord, write_reinterpretation
from nsbiflow.archive.reinterpret import ReinterpretResult, open_verified
from nsbiflow.errors import CorruptArtifactError
from nsbiflow.store import ArtifactStore
from nsbiflow.store.digest import canonical_json

_WORKSPACE_KEYS = {"channels", "observations", "measurements"}


def is_patchset(data: Any) -> bool:
    """Whether a patch document is a pyhf patchset (rather than an RFC 6902 operation list)."""
    return isinstance(data, dict) and "patches" in data and "metadata" in data


def _workspaces(store: ArtifactStore, record: ArchiveRecord) -> dict[str, str]:
    """Archived results that are pyhf workspaces: ``result`` or ``result/path.json`` -> blob digest."""
    found: dict[str, str] = {}
    names = record.interface.get("results") or list(record.results)
    for name in names:
        refs = record.results.get(name)
        for ref in refs if isinstance(refs, list) else [refs] if refs is not None else []:
            if ref.kind == "file":
                candidates = [(name, ref.digest)]
            else:
                entries = store.tree_manifest(ref.digest)["entries"]
                candidates = [(f"{name}/{e['path']}", e["digest"]) for e in entries if e["path"].endswith(".json")]
            for label, digest in candidates:
                try:
                    data = json.loads(store.read_blob(digest))
                except (ValueError, CorruptArtifactError):
                    continue
                if isinstance(data, dict) and set(data) >= _WORKSPACE_KEYS:
                    found[label] = digest
    return found


def _cls(workspace: Any) -> dict[str, Any]:
    import pyhf

    pyhf.set_backend("numpy")
    model = workspace.model()
    data = workspace.data(model)
    observed, expected = pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde", return_expected=True)
    return {"poi": 1.0, "CLs_obs": float(observed), "CLs_exp": float(expected)}


def reinterpret_patchset(
    store: ArtifactStore, reference: str, patchset: Any, *, patch_name: str | None, workspace: str | None
) -> ReinterpretResult:
    """Apply one patch of a pyhf patchset to an archived workspace result and refit it."""
    import pyhf

    digest, record = open_verified(store, reference)
    candidates = _workspaces(store, record)
    if not candidates:
        raise ArchiveError(f"archive {record.name} has no pyhf workspace among its results: a patchset cannot apply")
    if workspace is None:
        if len(candidates) > 1:
            raise PatchError(f"several workspaces in the archive ({', '.join(candidates)}): pick one with --workspace")
        workspace = next(iter(candidates))
    if workspace not in candidates:
        raise PatchError(f"no workspace result {workspace!r} in the archive (workspaces: {', '.join(candidates)})")
    try:
        patches = pyhf.PatchSet(patchset)
    except pyhf.exceptions.InvalidSpecification as exc:
        raise PatchError(f"not a valid pyhf patchset: {str(exc).splitlines()[0]}") from None
    names = [p.name for p in patches.patches]
    if patch_name is None:
        if len(names) != 1:
            raise PatchError(f"the patchset has {len(names)} patches: pick one with --patch-name ({', '.join(names)})")
        patch_name = names[0]
    if patch_name not in names:
        raise PatchError(f"the patchset has no patch {patch_name!r} (patches: {', '.join(names)})")
    original = pyhf.Workspace(json.loads(store.read_blob(candidates[workspace])))
    started = time.monotonic()
    try:
        patched = patches.apply(original, patch_name)
    except (pyhf.exceptions.PatchSetVerificationError, pyhf.exceptions.InvalidPatchLookup) as exc:
        raise PatchError(f"patch {patch_name!r} does not apply to {workspace}: {exc}") from None
    original_cls, patched_cls = _cls(original), _cls(patched)
    patched_blob = store.put_bytes(canonical_json(dict(patched)))
    new = ReinterpretationRecord(
        archive=record.name,
        archive_digest=digest,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        kind="pyhf-patchset",
        patch={"patchset": patchset, "patch": patch_name, "workspace": workspace},
        changed={workspace: {"from": candidates[workspace], "to": patched_blob}},
        results={"workspace": patched_blob, "cls": patched_cls},
        original_results={"workspace": candidates[workspace], "cls": original_cls},
        seconds=round(time.monotonic() - started, 3),
    )
    return ReinterpretResult(record.name, digest, write_reinterpretation(store, new), new)
