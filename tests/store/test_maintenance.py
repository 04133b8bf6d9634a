"""``nsbiflow fsck`` finds missing and corrupt blobs; ``nsbiflow gc`` removes only what nothing references."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from nsbiflow.store import open_store
from nsbiflow.store.artifacts import blob_key
from tests.conftest import run_cli


def run_and_preserve(workflow: Path, store: Path) -> dict:
    ran = run_cli("run", workflow, "--store", store, "--json")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    kept = run_cli("preserve", summary["run_id"], "--name", "demo", "--store", store)
    assert kept.returncode == 0, kept.stderr
    return summary


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_fsck_names_missing_and_corrupt_blobs(demo_workflow: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    summary = run_and_preserve(demo_workflow, store)
    clean = run_cli("fsck", "--store", store)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("ok:")
    opened = open_store(store)
    total = summary["outputs"]["total"]["digest"]
    path = opened.backend.local_path(blob_key(total))
    assert path is not None
    path.chmod(0o644)
    path.write_text("forged\n")
    numbers = json.loads((store / "runs" / summary["run_id"] / "manifest.json").read_text())
    gone = numbers["steps"]["numbers"]["outputs"]["numbers"]["digest"]
    missing = opened.backend.local_path(blob_key(gone))
    assert missing is not None
    missing.unlink()
    result = run_cli("fsck", "--store", store, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert any(p.startswith(f"corrupt blob: {total}") for p in report["problems"])
    assert any(p.startswith(f"missing blob: {gone}") for p in report["problems"])
    assert "Traceback" not in result.stderr


def test_gc_removes_only_unreferenced_blobs_and_stale_temporaries(demo_workflow: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_and_preserve(demo_workflow, store)
    opened = open_store(store)
    orphan = opened.put_bytes(b"nothing refers to me")
    young = opened.put_bytes(b"just written by a running step")
    orphan_path = opened.backend.local_path(blob_key(orphan))
    assert orphan_path is not None
    age(orphan_path, 7200)
    partial = store / "tmp" / f".partial-{socket.gethostname().replace('-', '_')}-999999999-x"
    partial.write_bytes(b"half an upload")
    before = sorted(p for p in (store / "blobs").rglob("*") if p.is_file())

    dry = run_cli("gc", "--store", store, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["blobs"] == [orphan]
    assert str(partial) in planned["temporaries"]
    assert sorted(p for p in (store / "blobs").rglob("*") if p.is_file()) == before and partial.exists()

    done = run_cli("gc", "--store", store, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["blobs"] == [orphan]
    assert not opened.has_blob(orphan) and opened.has_blob(young) and not partial.exists()
    assert run_cli("fsck", "--store", store).returncode == 0
    assert run_cli("archive", "verify", "demo", "--store", store).returncode == 0
    again = run_cli("run", demo_workflow, "--store", store, "--json")
    assert {s["status"] for s in json.loads(again.stdout.strip().splitlines()[-1])["steps"]} == {"cached"}
