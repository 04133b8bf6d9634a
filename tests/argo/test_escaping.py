"""Values holding ``{{`` never reach Argo's templating (issue 12, class 3): they travel escaped, every reference
of the compiled Workflow still resolves, and the wrapper hands the step the exact value."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from nsbiflow.backends.argo import compile_to_dict
from nsbiflow.backends.argo.compiler import CompileError, compile_workflow
from nsbiflow.backends.argo.profile import default_profile
from nsbiflow.backends.argo.wrapper import pod_step_main
from nsbiflow.engine.plan import load_plan
from tests.argo.references import REFERENCE, check_workflow, substitute
from tests.backends.scripted import script_workflow

HOSTILE = "{{workflow.name}} {{x}} {{ inputs.parameters.text }} {single} nsbiflow-b64:AAAA"

ECHO = textwrap.dedent("""
    import json, os, sys
    args = sys.argv[1:]
    out = [v.partition("=")[2] for f, v in zip(args[::2], args[1::2]) if f == "--out"][0]
    env = {k: os.environ.get(k) for k in ("NSBIFLOW_STEP", "AWS_SECRET_ACCESS_KEY", "ARGO_TOKEN", "GREETING")}
    open(out, "w").write(json.dumps({"argv": args, "env": env}))
""")


def _workflow(tmp_path: Path) -> Path:
    return script_workflow(tmp_path, "hostile", ECHO, f"""
        parameters:
          text: {{type: str, default: {json.dumps(HOSTILE)}}}
          keys: {{type: list, default: ["{{{{a}}}}", "b"]}}
        steps:
          echo:
            foreach: ${{{{ params.keys }}}}
            run:
              description: "a description with {{{{braces}}}}"
              image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
              command: COMMAND
              parameters:
                text: {{type: str}}
                key: {{type: str}}
                obj: {{type: dict, default: {{k: "{{{{v}}}}"}}}}
              outputs: {{seen: {{kind: file, filename: seen.json}}}}
              env: {{GREETING: "hello {{{{x}}}}"}}
            with: {{text: "${{{{ params.text }}}}", key: "${{{{ item }}}}"}}
    """)


def test_hostile_values_are_escaped_and_every_reference_resolves(tmp_path: Path) -> None:
    document = compile_to_dict(load_plan(_workflow(tmp_path)))
    assert check_workflow(document) == []
    for index in range(2):
        argv, env = substitute(document, "echo", index)
        left = [text for text in [*argv, *env.values()] if REFERENCE.search(text)]
        assert not left, f"values Argo would template: {left}"


def test_the_wrapper_hands_the_step_the_exact_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = compile_to_dict(load_plan(_workflow(tmp_path)))
    argv, env = substitute(document, "echo", 0)
    work = tmp_path / "pod"
    argv = [a.replace("=/work/", f"={work}/") for a in argv]
    env.pop("NSBIFLOW_STORE", None)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pod-secret-value")
    monkeypatch.setenv("ARGO_TOKEN", "pod-argo-token")
    assert argv[:3] == ["nsbiflow", "pod-step", "--"]
    assert pod_step_main(argv[3:], {**env, "NSBIFLOW_STATE_DIR": str(work / "state")}) == 0
    seen = json.loads((work / "out" / "seen" / "seen.json").read_text())
    pairs = zip(seen["argv"][::2], seen["argv"][1::2], strict=True)
    params = {v.partition("=")[0]: v.partition("=")[2] for f, v in pairs if f == "--param"}
    assert params == {"text": HOSTILE, "key": "{{a}}", "obj": json.dumps({"k": "{{v}}"})}
    assert seen["env"] == {"NSBIFLOW_STEP": "echo[{{a}}]", "AWS_SECRET_ACCESS_KEY": None, "ARGO_TOKEN": None,
                           "GREETING": "hello {{x}}"}  # fmt: skip


def test_without_the_wrapper_a_templating_value_is_refused(tmp_path: Path) -> None:
    profile = default_profile().model_copy(update={"wrap": False})
    with pytest.raises(CompileError, match=r"contains '\{\{', which Argo would read as a template reference"):
        compile_workflow(load_plan(_workflow(tmp_path)), profile)
