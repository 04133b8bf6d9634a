"""The in-pod step wrapper against real S3 on loopback (moto): same step keys as the local executor."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from nsbiflow.backends.argo import compile_to_dict
from nsbiflow.backends.argo import wrapper as wrapper_module
from nsbiflow.backends.argo.wrapper import WrapperError, pod_step_main
from nsbiflow.backends.local.executor import LocalExecutor
from nsbiflow.engine.plan import load_plan
from nsbiflow.store import open_store
from tests.argo.conftest import WORKFLOWS, make_bucket, render_instance, templates
from tests.conftest import S3Endpoint

DEMO = WORKFLOWS / "examples" / "demo-fanout.yaml"


@pytest.fixture(autouse=True)
def _venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step commands (``python -m ...``) resolve to this interpreter, as they resolve to the image's in a pod."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _env(base: dict[str, str], store: str, state: Path) -> dict[str, str]:
    return {**base, "NSBIFLOW_STORE": store, "NSBIFLOW_STATE_DIR": str(state)}


def test_miss_runs_and_records_then_hit_skips(s3_endpoint: S3Endpoint, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    uri = "s3://pods/store"
    make_bucket(s3_endpoint.env, "pods")
    plan = load_plan(DEMO)
    template = templates(compile_to_dict(plan))["numbers"]
    first_dir = tmp_path / "pod1"
    argv, env = render_instance(template, plan.steps["numbers"], first_dir)
    assert argv[:3] == ["nsbiflow", "pod-step", "--"]
    monkeypatch.chdir(tmp_path)
    assert pod_step_main(argv[3:], _env(env, uri, first_dir / ".nsbiflow")) == 0
    output = first_dir / "out" / "numbers" / "numbers.txt"
    assert output.exists()
    key = (first_dir / ".nsbiflow" / "step-key").read_text()
    assert (first_dir / ".nsbiflow" / "cached").read_text() == "false"
    assert open_store(uri).cache_lookup(key) is not None

    def must_not_run(*args: object) -> int:
        raise AssertionError("a cached step was re-run")

    monkeypatch.setattr(wrapper_module, "_run", must_not_run)
    second_dir = tmp_path / "pod2"
    argv, env = render_instance(template, plan.steps["numbers"], second_dir)
    assert pod_step_main(argv[3:], _env(env, uri, second_dir / ".nsbiflow")) == 0
    assert (second_dir / ".nsbiflow" / "cached").read_text() == "true"
    assert (second_dir / "out" / "numbers" / "numbers.txt").read_bytes() == output.read_bytes()


def test_keys_match_the_local_executor(s3_endpoint: S3Endpoint, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A step run locally against the same store is not re-run on the cluster (fan-out and fan-in too)."""
    uri = "s3://shared/store"
    make_bucket(s3_endpoint.env, "shared")
    store = open_store(uri)
    plan = load_plan(DEMO)
    manifest = LocalExecutor(store, jobs=2, workdir=tmp_path / "local").run(plan)
    assert manifest.status == "succeeded"
    compiled = templates(compile_to_dict(plan))
    monkeypatch.setattr(wrapper_module, "_run", lambda *args: pytest.fail("re-ran a step the store has"))
    monkeypatch.chdir(tmp_path)
    for step_id in ("numbers", "square[2]", "total"):
        step = plan.steps[step_id]
        workdir = tmp_path / "pod" / step.template / str(step.index)
        argv, env = render_instance(compiled[step.template], step, workdir)
        # stage inputs as Argo would, from the upstream outputs
        for name, sources in step.inputs.items():
            multiple = step.definition.inputs[name].multiple
            for index, source in enumerate(sources):
                ref = manifest.steps[str(source.step_id)].outputs[str(source.output)]
                folder = workdir / "in" / name / (str(index) if multiple else "")
                store.fetch(ref, folder if ref.kind == "dir" else folder / (ref.filename or name))
        assert pod_step_main(argv[3:], _env(env, uri, workdir / ".nsbiflow")) == 0
        assert (workdir / ".nsbiflow" / "step-key").read_text() == manifest.steps[step_id].key
        assert (workdir / ".nsbiflow" / "cached").read_text() == "true"
    total = json.loads((tmp_path / "pod" / "total" / "None" / "out" / "total" / "total.json").read_text())
    assert total


def test_without_store_just_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = load_plan(DEMO)
    template = templates(compile_to_dict(plan))["numbers"]
    argv, env = render_instance(template, plan.steps["numbers"], tmp_path)
    env.pop("NSBIFLOW_STORE", None)
    monkeypatch.chdir(tmp_path)
    assert pod_step_main(argv[3:], {**env, "NSBIFLOW_STATE_DIR": str(tmp_path / "state")}) == 0
    assert (tmp_path / "out" / "numbers" / "numbers.txt").exists()


def test_wrapper_rejects_a_foreign_command(tmp_path: Path) -> None:
    plan = load_plan(DEMO)
    template = templates(compile_to_dict(plan))["numbers"]
    _, env = render_instance(template, plan.steps["numbers"], tmp_path)
    with pytest.raises(WrapperError, match="does not start with the step's command"):
        pod_step_main(["rm", "-rf", "/"], env)
    with pytest.raises(WrapperError, match="NSBIFLOW_STEP_DEFINITION"):
        pod_step_main(["true"], {})
