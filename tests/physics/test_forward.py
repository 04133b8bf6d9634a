"""Torch-free evaluation: the device choice, and stages that evaluate ensembles without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nsbiflow.physics import forward
from nsbiflow.physics.errors import StageError


def test_cpu_is_chosen_without_torch_when_no_driver_or_devices_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(forward.DEVICE_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert forward.evaluation_device() == "cpu"
    monkeypatch.setenv(forward.DEVICE_ENV, "cpu")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert forward.evaluation_device() == "cpu"


def test_bad_device_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forward.DEVICE_ENV, "tpu")
    with pytest.raises(StageError, match="NSBIFLOW_DEVICE='tpu': expected cpu, cuda or auto"):
        forward.evaluation_device()


def test_cuda_requested_without_a_device_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    monkeypatch.setenv(forward.DEVICE_ENV, "cuda")
    with pytest.raises(StageError, match="torch sees no CUDA device"):
        forward.evaluation_device()


def test_evaluation_modules_do_not_import_torch() -> None:
    """calibrate, infer and the support check load and evaluate ensembles without ``import torch`` on a CPU."""
    code = (
        "import sys\n"
        "import nsbiflow.physics.ensemble, nsbiflow.physics.inference, nsbiflow.physics.support\n"
        "import nsbiflow.stepcli.main\n"
        "print('torch' in sys.modules)\n"
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_numpy_on_one_thread_torch_with_more(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The automatic choice: numpy where a stage evaluates on one CPU thread, torch where it may use more."""
    from nsbiflow.physics.ensemble import Ensemble, save_members
    from nsbiflow.physics.mlp import BatchedMLP, MLPConfig
    from nsbiflow.physics.training import TrainedMember

    config = MLPConfig(n_inputs=5, hidden=[4])
    batched = BatchedMLP(config, 1)
    save_members(
        tmp_path,
        "s",
        [TrainedMember("member_0000", batched.member_state(0), {})],
        forward.Scaler(np.zeros(5, np.float32), np.ones(5, np.float32)),
        config,
        {},
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert Ensemble.load(tmp_path, "s").torch_members is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert Ensemble.load(tmp_path, "s").torch_members is not None
    assert Ensemble.load(tmp_path, "s", backend="numpy").torch_members is None
