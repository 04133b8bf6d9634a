"""Bad input through the CLI: one clear line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nsbiflow.cli.main import cli
from tests.argo.conftest import GPU_WORKFLOW
from tests.conftest import free_port, run_cli


def _one_line_error(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode != 0  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_gpu_request_without_gpu_pool(tmp_path: Path) -> None:
    workflow = tmp_path / "gpu.yaml"
    workflow.write_text(GPU_WORKFLOW)
    profile = tmp_path / "cpu-only.yaml"
    profile.write_text("nodePools:\n  cpu: {}\n")
    line = _one_line_error(run_cli("compile", workflow, "--target", "argo", "--profile", profile))
    assert "'train'" in line and "GPU" in line and "'gpu'" in line


def test_invalid_resource_quantity(tmp_path: Path) -> None:
    workflow = tmp_path / "bad.yaml"
    workflow.write_text(GPU_WORKFLOW.replace("memory: 16Gi", "memory: 16GB"))
    line = _one_line_error(run_cli("compile", workflow, "--target", "argo"))
    assert "16GB" in line and "quantity" in line


def test_invalid_profile_field(tmp_path: Path) -> None:
    workflow = tmp_path / "gpu.yaml"
    workflow.write_text(GPU_WORKFLOW)
    profile = tmp_path / "bad-profile.yaml"
    profile.write_text("workSizeLimit: lots\n")
    line = _one_line_error(run_cli("compile", workflow, "--profile", profile))
    assert "workSizeLimit" in line and "lots" in line


def test_unreachable_argo_server(repo_root: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    demo = repo_root / "workflows" / "examples" / "demo-fanout.yaml"
    line = _one_line_error(run_cli("submit", demo, "--argo-server", url, env={"ARGO_TOKEN": "t"}))
    assert "cannot reach the Argo server" in line and url in line
    for command in (["status", "wf-x"], ["logs", "wf-x"], ["watch", "wf-x"]):
        result = CliRunner().invoke(cli, [*command, "--argo-server", url])
        assert result.exit_code == 1 and "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) == 1 and "cannot reach the Argo server" in result.stderr


def test_missing_argo_server() -> None:
    result = CliRunner().invoke(cli, ["status", "wf-x"], env={"ARGO_SERVER": ""})
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1 and "--argo-server" in result.stderr
