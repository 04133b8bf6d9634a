"""Steps get a declared environment (issue 12, class 9): an allowlist plus the definition's ``env:``; the runner's
secrets (``AWS_SECRET_ACCESS_KEY``, ``ARGO_TOKEN``, ...) never reach a step, and known secret values are redacted
from stored logs (and so from archives)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from nsbiflow.engine.contract import REDACTED, inherited_environment, redact, secret_values
from nsbiflow.store import open_store
from tests.backends.scripted import script_workflow
from tests.conftest import run_cli

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "runner-aws-secret-0123456789",
    "AWS_ACCESS_KEY_ID": "runner-aws-key-id-42",
    "ARGO_TOKEN": "Bearer runner-argo-token-abcdef",
    "MY_API_TOKEN": "declared-token-value-987",
}

DUMP = textwrap.dedent("""
    import json, os, sys
    out = sys.argv[sys.argv.index("--out") + 1].partition("=")[2]
    env = dict(os.environ)
    print("environment:", json.dumps(env, sort_keys=True))
    print("the declared token is", os.environ.get("MY_API_TOKEN"))
    open(out, "w").write(json.dumps(env, sort_keys=True))
""")


def _workflow(tmp_path: Path) -> Path:
    return script_workflow(tmp_path, "env-check", DUMP, """
        steps:
          dump:
            run:
              image: ghcr.io/nsbiflow/nsbiflow-cpu:0.1.0
              command: COMMAND
              outputs: {env: {kind: file, filename: env.json}}
              env: {GREETING: hello, MY_API_TOKEN: null}
    """)


def test_a_local_step_sees_only_its_declared_environment(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = run_cli("run", _workflow(tmp_path), "--store", store, "--json", "--results", tmp_path / "results",
                     env={**SECRETS, "UNRELATED_VARIABLE": "x"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    manifest = open_store(store).read_manifest(summary["run_id"])
    record = manifest.steps["dump"]
    blob = open_store(store)
    scratch = tmp_path / "env.json"
    blob.fetch(record.outputs["env"], scratch)
    env = json.loads(scratch.read_text())
    assert "AWS_SECRET_ACCESS_KEY" not in env and "ARGO_TOKEN" not in env and "AWS_ACCESS_KEY_ID" not in env
    assert "UNRELATED_VARIABLE" not in env
    assert env["GREETING"] == "hello" and env["MY_API_TOKEN"] == SECRETS["MY_API_TOKEN"]
    assert env["NSBIFLOW_STEP"] == "dump" and env["OMP_NUM_THREADS"] == "1" and "PATH" in env
    assert record.log is not None
    digest = record.log.split(":", 1)[1]
    log = (store / "blobs" / "sha256" / digest[:2] / digest).read_text(errors="replace")
    assert "environment:" in log
    for value in SECRETS.values():
        assert value not in log, f"a secret value reached the stored log: {value[:8]}..."
    assert f"the declared token is {REDACTED}" in log
    others = [p.read_text(errors="replace") for p in store.rglob("*") if p.is_file() and "env.json" not in p.name]
    runner_secrets = [SECRETS["AWS_SECRET_ACCESS_KEY"], SECRETS["ARGO_TOKEN"]]
    assert not [v for v in runner_secrets for text in others if v in text], "a runner secret reached the store"


def test_secret_values_and_redaction() -> None:
    found = secret_values({**SECRETS, "HOME": "/home/u", "MINIO_ROOT_PASSWORD": "rootpass1", "SHORT_TOKEN": "ab"})
    assert set(found) == {*SECRETS.values(), "rootpass1"}
    assert redact("a runner-aws-secret-0123456789 b", found) == f"a {REDACTED} b"
    inherited = inherited_environment({**SECRETS, "PATH": "/bin", "LC_ALL": "C", "LANG": "C.UTF-8"})
    assert inherited == {"PATH": "/bin", "LC_ALL": "C", "LANG": "C.UTF-8"}
