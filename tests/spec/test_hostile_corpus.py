"""A corpus of hostile inputs thrown at the CLI: never exit 70 ("internal error"), never a traceback or a hang."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nsbiflow.cli.main import cli
from tests.conftest import BIN
from tests.spec.test_hostile_yaml import alias_bomb

HEADER = "apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {name: hostile}\n"


def step(with_: str = "", extra: str = "", code: str = "[]") -> str:
    return (
        HEADER
        + extra
        + "steps:\n  a:\n    run:\n      image: busybox\n      command: [python, -c, 'pass']\n"
        + f"      code: {code}\n"
        + "      parameters:\n        v: {type: str, default: x}\n"
        + "      outputs:\n        out: {kind: file}\n"
        + (f"    with:\n      v: {with_}\n" if with_ else "")
    )


WORKFLOWS = {
    "alias-bomb": HEADER + alias_bomb() + "steps: {a: {run: {image: x, command: [echo]}}}\n",
    "deep-nesting": HEADER + "x: " + "[" * 20000 + "]" * 20000 + "\n",
    "yes-key": HEADER + "yes: 1\nsteps: {a: {run: {image: x, command: [echo]}}}\n",
    "unclosed": step('"${{ params.n "'),
    "compare-types": step("\"${{ [1] < 'a' }}\""),
    "negate-string": step("\"${{ -'a' }}\""),
    "zero-step-slice": step("\"${{ 'abc'[::0] }}\""),
    "power-tower": step('"${{ 9**9**9 }}"'),
    "huge-repeat": step("\"${{ 'a'*10**10 }}\""),
    "huge-format": step("\"${{ '%.2000000000f' % 1.0 }}\""),
    "deep-expression": step('"${{ ' + "-" * 5000 + '1 }}"'),
    "huge-foreach": step().replace("    run:", "    foreach: {range: 1000000000}\n    run:", 1),
    "uses-escape": HEADER + "steps:\n  a: {uses: ../../x}\n",
    "bad-label": HEADER.replace("{name: hostile}", "{name: hostile, labels: {a: 'b c'}}")
    + "steps: {a: {run: {image: x, command: [echo]}}}\n",
    "absolute-glob": step(code='["/etc/*"]'),
    "missing-module": step(code='["python:nsbiflow.nope"]'),
    "empty-glob": step(code='["nothing-*.py"]'),
    "top-level-list": "- a\n- b\n",
    "empty": "",
    "tab": HEADER + "steps:\n\ta: 1\n",
    "huge-int": HEADER
    + "parameters: {n: {type: int, default: "
    + "9" * 5000
    + "}}\nsteps: {a: {run: {image: x, command: [echo]}}}\n",
    "recursive-alias": HEADER + "x: &a [*a]\nsteps: {a: {run: {image: x, command: [echo]}}}\n",
}
BINARY = {"binary": b"\x00\xff\xfe" * 100, "latin1": "name: caf\xe9\n".encode("latin-1")}


def corpus(tmp_path: Path) -> list[list[str]]:
    files = []
    for name, text in WORKFLOWS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        files.append(path)
    for name, data in BINARY.items():
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(data)
        files.append(path)
    store = str(tmp_path / "store")
    commands = []
    for path in files:
        commands += [["validate", str(path)], ["run", str(path), "--store", store], ["compile", str(path)]]
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    patch = tmp_path / "bad-patch.json"
    patch.write_text("{not json")
    deep_patch = tmp_path / "deep-patch.json"
    deep_patch.write_text("[" * 100000 + "]" * 100000)
    demo = tmp_path / "demo.yaml"
    demo.write_text((Path(__file__).resolve().parents[2] / "workflows" / "examples" / "demo-fanout.yaml").read_text())
    commands += [
        ["validate", str(tmp_path)],
        ["run", str(tmp_path / "missing.yaml")],
        ["show", "no-such-run", "--store", store],
        ["archive", "show", "no-such-archive", "--store", store],
        ["archive", "list", "../..", "--store", store],
        ["archive", "verify", "a@b@c", "--store", store],
        ["reinterpret", "demo", "--patch", str(patch), "--store", store],
        ["reinterpret", "demo", "--patch", str(tmp_path / "missing.json"), "--store", store],
        ["runs", "--store", "ftp://example.org/x"],
        ["runs", "--store", str(blocker / "sub")],
        ["runs", "--store", "s3://Bad_Bucket/x"],
        ["runs", "--store", "s3://bucket-without-credentials/x"],
        ["fsck", "--store", str(blocker / "sub")],
        ["gc", "--store", "s3://Bad_Bucket/x"],
        ["run", str(files[0]), "--set", "nope=1", "--store", store],
        ["reinterpret", "demo", "--patch", str(deep_patch), "--store", store],
        ["validate", str(demo), "--steps", str(tmp_path / "no-such-dir")],
        ["run", str(demo), "--set", "count=" + "[" * 100000, "--store", store],
        ["run", str(demo), "--set", "chunks=100000000", "--store", store],
        ["run", str(demo), "--set", "count=abc", "--store", store],
    ]
    return commands


def test_hostile_corpus_never_ends_in_an_internal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("NSBIFLOW_DEBUG", raising=False)
    runner = CliRunner()
    failures = []
    for args in corpus(tmp_path):
        started = time.monotonic()
        result = runner.invoke(cli, args, catch_exceptions=True)
        elapsed = time.monotonic() - started
        text = result.output + (result.stderr if hasattr(result, "stderr") else "")
        problems = []
        if result.exit_code == 70 or "internal error" in text:
            problems.append("internal error")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problems.append(f"exception {type(result.exception).__name__}: {result.exception}")
        if "Traceback" in text:
            problems.append("traceback")
        if result.exit_code == 0 and args[0] not in ("validate", "compile", "run", "runs", "fsck"):
            problems.append("accepted")
        if elapsed > 10:
            problems.append(f"took {elapsed:.1f}s")
        if problems:
            failures.append(f"{' '.join(args)[-90:]}: {', '.join(problems)}: {text.strip()[-200:]}")
    assert not failures, "\n".join(failures)


def test_hostile_workflows_are_refused_by_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    for name, text in WORKFLOWS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = runner.invoke(cli, ["validate", str(path)])
        assert result.exit_code == 2, (name, result.output)


def test_closed_pipe_is_a_quiet_exit(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for i in range(300):  # enough listing output to outlast `head -1`'s pipe buffer
        (store / "runs" / f"2026-{i:04d}").mkdir(parents=True)
        record = {"run_id": f"2026-{i:04d}", "workflow": {"name": "w"}, "parameters": {}, "started": "x"}
        (store / "runs" / f"2026-{i:04d}" / "manifest.json").write_text(json.dumps(record))
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        f"'{BIN / 'nsbiflow'}' runs --store '{store}' | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert "BrokenPipe" not in proc.stderr and proc.stderr.strip() == "", proc.stderr
    assert proc.returncode in (0, 141), proc.returncode
