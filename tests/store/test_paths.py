"""Every name that becomes a path is confined: tree manifests, listings, step outputs, file inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from nsbiflow.engine.plan import load_plan
from nsbiflow.errors import NsbiflowError, SpecError, StoreError
from nsbiflow.paths import UnsafePathError, confined
from nsbiflow.store import open_store
from nsbiflow.store.digest import canonical_json
from tests.conftest import run_cli


@pytest.mark.parametrize("field", ["dirs", "entries"])
def test_tree_manifest_paths_are_confined(tmp_path: Path, field: str) -> None:
    store = open_store(tmp_path / "store")
    blob = store.put_bytes(b"x")
    manifest: dict = {"format": "nsbiflow/tree/v1", "entries": [], "dirs": []}
    if field == "dirs":
        manifest["dirs"] = ["../../escaped-dir"]
    else:
        manifest["entries"] = [{"path": "../escaped-file", "digest": blob, "size": 1, "executable": False}]
    tree = store.put_bytes(canonical_json(manifest))
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(NsbiflowError):
        store.fetch_tree(tree, target)
    assert not (tmp_path / "escaped-dir").exists() and not (tmp_path / "a" / "escaped-dir").exists()
    assert not (tmp_path / "a" / "b" / "escaped-file").exists()


def test_listing_outside_the_store_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "x.json").write_text("{}")
    with pytest.raises(StoreError):
        store.backend.list("archives/../../")
    result = run_cli("archive", "list", "../..", "--store", tmp_path / "store")
    assert result.returncode != 0 and result.returncode != 70, result
    assert "secret" not in result.stdout and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_confined_refuses_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        confined(tmp_path / "base", "link/x", "name")
    assert confined(tmp_path / "base", "sub/x", "name") == tmp_path / "base" / "sub" / "x"


def link_workflow(folder: Path, target: Path, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        script = f"import os,sys; d=sys.argv[-1].split('=',1)[1]; os.symlink({str(target)!r}, d + '/leak')"
    else:
        script = f"import os,sys; f=sys.argv[-1].split('=',1)[1]; os.symlink({str(target)!r}, f)"
    doc = {
        "apiVersion": "nsbiflow/v1",
        "kind": "Workflow",
        "metadata": {"name": "links"},
        "steps": {
            "a": {"run": {"image": "x", "command": ["python", "-c", script], "outputs": {"out": {"kind": kind}}}}
        },
    }
    path = folder / "wf.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_symlinks_in_step_outputs_are_not_followed(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret content\n")
    store = tmp_path / "store"
    result = run_cli("run", link_workflow(tmp_path / "wf", secret, kind), "--store", store, "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    error = summary["steps"][0]["error"]
    assert "symbolic link" in error
    blobs = [p.read_bytes() for p in (store / "blobs").rglob("*") if p.is_file()]
    assert b"top secret content\n" not in blobs


def file_input_workflow(folder: Path, path: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "nsbiflow/v1",
        "kind": "Workflow",
        "metadata": {"name": "inputs"},
        "steps": {
            "a": {
                "run": {"image": "x", "command": ["true"], "inputs": {"data": {"kind": "file"}}},
                "inputs": {"data": {"path": path}},
            }
        },
    }
    wf = folder / "wf.yaml"
    wf.write_text(yaml.safe_dump(doc))
    return wf


def test_directory_given_as_a_file_input_fails_at_plan_time(tmp_path: Path) -> None:
    (tmp_path / "wf" / "adir").mkdir(parents=True)
    with pytest.raises(SpecError, match="is a directory"):
        load_plan(file_input_workflow(tmp_path / "wf", "adir"))


def test_fifo_given_as_a_file_input_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "wf").mkdir()
    os.mkfifo(tmp_path / "wf" / "pipe")
    workflow = file_input_workflow(tmp_path / "wf", "pipe")
    result = run_cli("run", workflow, "--store", tmp_path / "store", timeout=30)
    assert result.returncode == 2
    assert "FIFO" in result.stderr and len(result.stderr.strip().splitlines()) == 1
