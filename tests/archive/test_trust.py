"""The archive trust model: names are refs only ``preserve`` updates; forged, truncated or unsafe records
are refused, never chosen and never allowed to write outside their folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsbiflow.archive.errors import TamperedArchiveError
from nsbiflow.archive.materialize import materialize
from nsbiflow.archive.record import ArchiveRecord, ExternalInput, archive_key, load_archive
from nsbiflow.store import ArtifactRef, open_store
from nsbiflow.store.digest import digest_json
from tests.archive.conftest import Preserved


def forge(preserved: Preserved, **changes: object) -> str:
    """Save an altered copy of the archive's record under its own recomputed digest (what a forger can do)."""
    store = open_store(preserved.store)
    data = store.read_json(archive_key("demo", preserved.digest))
    data.update(changes)
    digest = digest_json(data)
    store.write_json(archive_key("demo", digest), data)
    return digest


def test_forged_version_is_neither_listed_nor_newest_nor_verifiable(preserved: Preserved) -> None:
    forged = forge(preserved, created="2999-01-01T00:00:00.000000+00:00", run_id="forged-run")
    code, out, _ = preserved.cli("archive", "list", "--json")
    assert code == 0
    digests = [json.loads(line)["digest"] for line in out.splitlines()]
    assert digests == [preserved.digest]
    code, out, _ = preserved.cli("archive", "show", "demo", "--json")
    assert code == 0 and json.loads(out)["digest"] == preserved.digest
    code, _, err = preserved.cli("archive", "verify", f"demo@{forged[7:19]}")
    assert code != 0 and "not a version preserved under 'demo'" in err
    assert err.count("\n") == 1


def test_truncated_current_version_is_an_error_not_a_fallback(preserved: Preserved) -> None:
    run = preserved.cli("preserve", preserved.run_id, "--name", "demo", "--json")
    assert run[0] == 0, run[2]
    second = json.loads(run[1])["digest"]
    assert second != preserved.digest
    path = preserved.store / archive_key("demo", second)
    path.write_bytes(path.read_bytes()[:200])
    for command in (["archive", "show", "demo"], ["archive", "verify", "demo"]):
        code, _, err = preserved.cli(*command)
        assert code != 0 and code != 70, err
        assert "tampered" in err and err.count("\n") == 1
        assert second[7:19] in err and preserved.digest[7:19] not in err  # no fallback to the older one


def test_unsafe_paths_in_a_record_are_refused(preserved: Preserved, tmp_path: Path) -> None:
    store = open_store(preserved.store)
    _, record = load_archive(store, "demo")
    document = json.loads(store.read_blob(record.workflow_document))
    escape = "../../escaped.txt"
    document["steps"]["numbers"].setdefault("inputs", {})["numbers"] = {"path": escape}
    ref = ArtifactRef(kind="file", digest=store.put_bytes(b"payload"), filename="escaped.txt")
    bad = record.model_copy(
        update={"external_inputs": [ExternalInput(step="numbers", input="numbers", path=escape, ref=ref)]}
    )
    folder = tmp_path / "a" / "b" / "work"
    with pytest.raises(TamperedArchiveError, match="unsafe"):
        materialize(store, bad, folder, document)
    assert not (tmp_path / "a" / "escaped.txt").exists()

    name = next(iter(record.definitions))
    definitions = dict(record.definitions)
    definitions[name] = definitions[name].model_copy(update={"uses": "../../outside"})
    with pytest.raises(TamperedArchiveError, match="unsafe"):
        materialize(store, record.model_copy(update={"definitions": definitions}), tmp_path / "w2", document)


def test_a_record_claiming_another_name_is_refused(preserved: Preserved) -> None:
    store = open_store(preserved.store)
    data = store.read_json(archive_key("demo", preserved.digest))
    data["name"] = "other"
    digest = digest_json(data)
    store.write_json(archive_key("demo", digest), data)
    ref = store.read_json("archives/demo/ref.json")
    ref["history"].append({"digest": digest, "preserved": "x", "run_id": "r"})
    ref["current"] = digest
    store.write_json("archives/demo/ref.json", ref)
    with pytest.raises(TamperedArchiveError, match="record of archive 'other'"):
        load_archive(store, "demo")


@pytest.mark.parametrize("name", ["../..", "..", "a/b", "UPPER"])
def test_archive_names_are_confined(preserved: Preserved, name: str) -> None:
    for command in (["archive", "list", name], ["archive", "show", name], ["archive", "verify", name]):
        code, out, err = preserved.cli(*command)
        assert code not in (0, 70), (command, out, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_archive_record_model_still_round_trips(preserved: Preserved) -> None:
    store = open_store(preserved.store)
    digest, record = load_archive(store, "demo")
    assert digest_json(record.model_dump(mode="json")) == digest
    assert isinstance(record, ArchiveRecord)


def test_signed_refs_refuse_a_rewritten_history(preserved: Preserved, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsbiflow.archive.record import read_ref, write_archive

    store = open_store(preserved.store)
    _, record = load_archive(store, "demo")
    monkeypatch.setenv("NSBIFLOW_ARCHIVE_KEY", "team-secret")
    with pytest.raises(TamperedArchiveError, match="not signed"):  # made before the key was set
        load_archive(store, "demo")
    signed = write_archive(store, record.model_copy(update={"created": "2026-12-01T00:00:00+00:00"}))
    ref = read_ref(store, "demo")
    assert ref is not None and ref.current == signed and ref.signature
    # a forger appends a record of their own and makes it current: the signature no longer matches
    forged = forge(preserved, run_id="forged-run")
    data = store.read_json("archives/demo/ref.json")
    data["history"].append({"digest": forged, "preserved": "2999", "run_id": "forged-run"})
    data["current"] = forged
    store.write_json("archives/demo/ref.json", data)
    with pytest.raises(TamperedArchiveError, match="does not match"):
        load_archive(store, "demo")
    monkeypatch.setenv("NSBIFLOW_ARCHIVE_KEY", "another-key")
    store.write_json("archives/demo/ref.json", {**data, "current": signed, "history": data["history"][:-1]})
    with pytest.raises(TamperedArchiveError):
        load_archive(store, "demo")
