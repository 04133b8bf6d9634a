"""Hostile values through the real yadage engine: a file named ``in;touch X;#.txt`` and parameters holding
``{``, ``}``, ``{{x}}``, quotes and ``$(...)`` reach the step verbatim and run nothing (issue 12, class 3); the
stage sees a declared environment, not the engine's secrets (class 9)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.backends.scripted import script_workflow
from tests.conftest import BIN, REPO, run_cli
from tests.yadage.test_export import YADAGE_PYTHON, needs_yadage

HOSTILE_TEXT = "a {b} }c{ {{x}} {0} $(touch PWNED) `touch PWNED2` 'q' \"d\" ;touch PWNED3 #"
HOSTILE_NAME = "in;touch X;#.txt"

ECHO = textwrap.dedent("""
    import json, os, sys
    args = sys.argv[1:]
    pairs = dict(zip(args[::2], args[1::2]))
    seen = {"argv": args}
    for flag, item in zip(args[::2], args[1::2]):
        name, _, value = item.partition("=")
        if flag == "--in":
            seen["input_name"] = os.path.basename(value)
            seen["input_text"] = open(value).read()
        if flag == "--out":
            out = value
    seen["environment"] = sorted(os.environ)
    open(out, "w").write(json.dumps(seen))
""")


def _workflow(tmp_path: Path) -> Path:
    (tmp_path / HOSTILE_NAME).write_text("payload\n")
    return script_workflow(tmp_path, "hostile", ECHO, f"""
        parameters:
          text: {{type: str, default: {json.dumps(HOSTILE_TEXT)}}}
        steps:
          echo:
            run:
              image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
              command: COMMAND
              parameters:
                text: {{type: str}}
                obj: {{type: dict, default: {{k: "{{v}} {{{{w}}}}"}}}}
              inputs: {{source: {{kind: file}}}}
              outputs: {{seen: {{kind: file, filename: seen.json}}}}
            with: {{text: "${{{{ params.text }}}}"}}
            inputs: {{source: {{path: {json.dumps(HOSTILE_NAME)}}}}}
    """)


def _no_injection(root: Path) -> None:
    created = [p.name for p in root.rglob("*") if p.name in ("X", "PWNED", "PWNED2", "PWNED3")]
    assert not created, f"a hostile value ran a command: {created}"


def test_export_quotes_the_file_name_and_doubles_braces(tmp_path: Path) -> None:
    export = tmp_path / "export"
    compiled = run_cli("compile", _workflow(tmp_path), "--target", "yadage", "--environment", "localproc", "-o", export)
    assert compiled.returncode == 0, compiled.stderr
    cmd = json.loads((export / "workflow" / "workflow.yml").read_text())["stages"][0]["scheduler"]["step"]["process"]
    text = cmd["cmd"]
    assert "{{{{x}}}}" in text and "$(touch PWNED)" in text  # literal, inside single quotes, braces doubled
    # str.format on the template with the engine's values gives a command the shell cannot misread
    rendered = text.format(in_source=f"/data/{HOSTILE_NAME}", out_seen="/out/seen.json")
    assert f"/data/{HOSTILE_NAME}\n" in rendered  # inside the quoted here-document, never a shell word


@needs_yadage
@pytest.mark.slow
def test_yadage_engine_runs_hostile_values_verbatim(tmp_path: Path) -> None:
    export = tmp_path / "export"
    compiled = run_cli("compile", _workflow(tmp_path), "--target", "yadage", "--environment", "localproc", "-o", export)
    assert compiled.returncode == 0, compiled.stderr
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               AWS_SECRET_ACCESS_KEY="engine-secret-value", ARGO_TOKEN="engine-token", UNRELATED="x")  # fmt: skip
    work = tmp_path / "yw"
    proc = subprocess.run(
        [str(YADAGE_PYTHON), str(REPO / "scripts" / "run_yadage.py"), str(export), str(work)],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads((work / "echo" / "out" / "seen" / "seen.json").read_text())
    argv = seen["argv"]
    assert argv[argv.index("--param") + 1] in (f"text={HOSTILE_TEXT}", 'obj={"k": "{v} {{w}}"}')
    params = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--param"]
    assert params == ['obj={"k": "{v} {{w}}"}', f"text={HOSTILE_TEXT}"] or params == [
        f"text={HOSTILE_TEXT}", 'obj={"k": "{v} {{w}}"}'
    ]  # fmt: skip
    assert seen["input_name"] == HOSTILE_NAME and seen["input_text"] == "payload\n"
    _no_injection(tmp_path)
    # the stage got the allowlist and the contract's variables, not the engine's secrets
    assert not {"AWS_SECRET_ACCESS_KEY", "ARGO_TOKEN", "UNRELATED"} & set(seen["environment"])
    assert {"PATH", "OMP_NUM_THREADS", "NSBIFLOW_STEP"} <= set(seen["environment"])
