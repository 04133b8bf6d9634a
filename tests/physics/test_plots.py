"""PNG plots: every function writes a PNG of the expected size, keeps all its text inside the figure
(the layout is fixed, not measured) and leaves matplotlib's global rc settings alone."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nsbiflow.physics import plots

DPI = plots.DPI


def _closure(n_obs: int = 3, scale: float = 1.0) -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = {}
    for k in range(n_obs):
        edges = np.linspace(-3, 3, 21) * scale
        num = rng.uniform(400, 600, 20)
        rw = num * rng.normal(1, 0.05, 20)
        out[f"x{k}"] = {
            "edges": edges.tolist(),
            "numerator": num.tolist(),
            "numerator_err": np.sqrt(num).tolist(),
            "reweighted": rw.tolist(),
            "reweighted_err": (0.5 * np.sqrt(rw)).tolist(),
            "reference": (0.8 * num).tolist(),
            "chi2_ndf": 1.23,
        }
    return out


CURVE = {
    "predicted": np.linspace(0.1, 0.9, 9).tolist(),
    "observed": np.linspace(0.12, 0.88, 9).tolist(),
    "ece": 0.012,
}
LOSSES = {f"member_{i:04d}": {"train": [0.7, 0.6, 0.55, 0.52], "holdout": [0.71, 0.62, 0.57, 0.55]} for i in range(3)}

CASES: dict[str, tuple[Callable[[Path], None], tuple[float, float]]] = {
    "closure": (lambda p: plots.closure(p, "signal", _closure(3)), (3 * 3.2, 4.8)),
    "closure_wide_values": (lambda p: plots.closure(p, "signal", _closure(2, scale=1000.0)), (2 * 3.2, 4.8)),
    "calibration": (lambda p: plots.calibration(p, "signal", CURVE), (4.5, 4.5)),
    "losses": (lambda p: plots.losses(p, "signal", LOSSES), (5.5, 4.0)),
}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("name", sorted(CASES))
def test_plot_writes_a_png_with_its_text_inside_the_figure(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    draw, (width, height) = CASES[name]
    rc_before = dict(matplotlib.rcParams)
    saved: list[Any] = []
    original = Figure.savefig

    def savefig(fig: Figure, *args: Any, **kwargs: Any) -> None:
        original(fig, *args, **kwargs)
        saved.append(fig.get_tightbbox())  # after the draw: the extent of everything drawn, in inches

    monkeypatch.setattr(Figure, "savefig", savefig)
    path = tmp_path / f"{name}.png"
    draw(path)
    assert _png_size(path) == (round(width * DPI), round(height * DPI))
    assert path.stat().st_size > 5_000
    (bbox,) = saved
    tol = 0.05  # inches
    assert bbox.x0 >= -tol and bbox.y0 >= -tol, bbox
    assert bbox.x1 <= width + tol and bbox.y1 <= height + tol, bbox
    assert dict(matplotlib.rcParams) == rc_before, "the plot style leaked into the global rc settings"
