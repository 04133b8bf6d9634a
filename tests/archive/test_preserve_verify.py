"""``preserve`` and ``archive list|show|verify`` on a real run in a folder store."""

from __future__ import annotations

import json

from nsbiflow.archive import load_archive
from nsbiflow.store import open_store
from nsbiflow.store.artifacts import blob_key
from tests.archive.conftest import Preserved


def test_archive_records_everything_and_verifies(preserved: Preserved) -> None:
    store = open_store(preserved.store)
    digest, record = load_archive(store, "demo")
    assert digest == preserved.digest
    assert record.run_id == preserved.run_id
    assert set(record.definitions) == {"numbers", "square", "total"}
    assert record.parameters["count"] == 200
    assert record.images["square"].image == "ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0"
    assert {"nsbiflow", "numpy", "pyhf"} <= set(record.versions)
    assert record.results["total"].digest == preserved.total  # type: ignore[union-attr]
    assert preserved.total in record.blobs
    assert record.key_check.matched == 6
    code, out, err = preserved.cli("archive", "verify", "demo")
    assert code == 0, err
    assert out.startswith("ok: demo@") and f"{len(record.blobs)} blobs verified" in out


def test_altered_and_deleted_blobs_are_named(preserved: Preserved) -> None:
    store = open_store(preserved.store)
    _, record = load_archive(store, "demo")
    altered = preserved.store / blob_key(preserved.total)
    altered.chmod(0o644)
    altered.write_text('{"total": 1}\n')
    deleted = next(d for d, what in record.blobs.items() if what == "square[2].partial")
    (preserved.store / blob_key(deleted)).unlink()
    code, _out, err = preserved.cli("archive", "verify", "demo")
    assert code == 1
    lines = err.strip().splitlines()
    assert f"error: demo@{preserved.digest[7:19]}: altered: total.total ({preserved.total})" in lines
    assert f"error: demo@{preserved.digest[7:19]}: missing: square[2].partial ({deleted})" in lines
    assert len(lines) == 2


def test_tampered_record_is_one_line(preserved: Preserved) -> None:
    path = preserved.store / "archives" / "demo" / f"{preserved.digest[7:]}.json"
    data = json.loads(path.read_text())
    data["parameters"]["count"] = 201
    path.write_text(json.dumps(data))
    code, _, err = preserved.cli("archive", "verify", "demo")
    assert code == 1
    assert err.count("\n") == 1 and "is tampered: its record hashes to" in err


def test_preserving_again_adds_a_version_and_list_shows_both(preserved: Preserved) -> None:
    code, out, err = preserved.cli("preserve", preserved.run_id[:10], "--name", "demo")
    assert code == 0, err
    code, out, _ = preserved.cli("archive", "list", "--json")
    versions = [json.loads(line) for line in out.strip().splitlines()]
    assert [v["name"] for v in versions] == ["demo", "demo"]
    assert versions[0]["digest"] == preserved.digest and versions[1]["digest"] != preserved.digest
    code, out, _ = preserved.cli("archive", "show", "demo")  # newest version
    assert code == 0 and versions[1]["digest"][7:19] in out
    assert "/parameters/power/default = 2" in out
    code, out, _ = preserved.cli("archive", "show", f"demo@{preserved.digest[7:15]}", "--json")
    assert json.loads(out)["digest"] == preserved.digest


def test_bad_preserve_and_missing_archive_are_one_line(preserved: Preserved) -> None:
    for args, expected in [
        (("preserve", "nope", "--name", "x"), "no run 'nope'"),
        (("preserve", preserved.run_id, "--name", "Bad Name"), "archive name 'Bad Name' is not valid"),
        (("archive", "show", "missing"), "no archive 'missing'"),
        (("archive", "verify", "demo@ffff"), "no archive 'demo@ffff'"),
    ]:
        code, _, err = preserved.cli(*args)
        assert code != 0
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
