"""Fixtures for preservation and reinterpretation tests: a demo workflow with an interface, a finished run."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

INTERFACE = """interface:
  parameters: [power]
  results: [total]
outputs:
  total: total.total"""


def demo_with_interface(folder: Path) -> Path:
    """The demo fan-out workflow with a reinterpretation interface (``power`` may change, ``total`` is the answer)."""
    text = (REPO / "workflows" / "examples" / "demo-fanout.yaml").read_text()
    text = text.replace("outputs:\n  total: total.total", INTERFACE)
    target = folder / "demo.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def snapshot(store: Path) -> dict[str, str]:
    """Every file of a folder store and the hash of its content (to prove nothing was written)."""
    return {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


@dataclass
class Preserved:
    """A finished, preserved demo run."""

    workflow: Path
    store: Path
    run_id: str
    digest: str
    total: str

    def cli(self, *args: str | Path) -> tuple[int, str, str]:
        """Run ``nsbiflow ARGS --store STORE``."""
        result = run_cli(*args, "--store", self.store)
        return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def preserved_once(tmp_path_factory: pytest.TempPathFactory) -> Preserved:
    """Run the demo workflow (count 200, 4 chunks), then preserve it as archive ``demo`` (once per module)."""
    base = tmp_path_factory.mktemp("preserved")
    workflow = demo_with_interface(base / "wf")
    store = base / "store"
    ran = run_cli("run", workflow, "--store", store, "--json", "--set", "count=200", cwd=base)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    kept = run_cli("preserve", summary["run_id"], "--name", "demo", "--store", store, "--json")
    assert kept.returncode == 0, kept.stderr
    info = json.loads(kept.stdout)
    assert info["key_check"]["mismatched"] == [], info
    return Preserved(workflow, store, summary["run_id"], info["digest"], summary["outputs"]["total"]["digest"])


@pytest.fixture
def preserved(preserved_once: Preserved, tmp_path: Path) -> Preserved:
    """A private copy of the preserved demo (store and workflow folder), free to alter."""
    shutil.copytree(preserved_once.store, tmp_path / "store", symlinks=True)
    shutil.copytree(preserved_once.workflow.parent, tmp_path / "wf")
    return Preserved(
        tmp_path / "wf" / preserved_once.workflow.name,
        tmp_path / "store",
        preserved_once.run_id,
        preserved_once.digest,
        preserved_once.total,
    )
