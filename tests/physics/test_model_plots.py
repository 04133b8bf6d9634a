"""The fit's own plots (physics/model/plots.py) are titled with the hypothesis they show, inside the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nsbiflow.physics.model import plots
from nsbiflow.physics.model.run import data_label
from nsbiflow.physics.model.spec import Model


def _result(hat: float) -> dict[str, Any]:
    values = np.linspace(-1, 3, 41)
    t = ((values - hat) / 0.4) ** 2
    names = ["mu", "alpha", "bkg_norm"]
    return {
        "pois": {"mu": {"hat": hat, "interval_68": {"lo": hat - 0.4, "hi": hat + 0.4},
                        "scan": {"values": values.tolist(), "t": t.tolist()}}},
        "parameters": {"mu": {"pull": None}, "alpha": {"pull": 0.2, "constraint": 0.9},
                       "bkg_norm": {"pull": -0.5, "constraint": 0.7}},
        "impacts": [{"parameter": "alpha", "up": 0.05, "down": -0.04},
                    {"parameter": "bkg_norm", "up": 0.02, "down": -0.03}],
        "correlation": {"names": names, "matrix": np.eye(3).tolist()},
        "scan_2d": {"x": "mu", "y": "alpha", "x_values": [0, 1, 2], "y_values": [-1, 0, 1],
                    "t": (np.arange(9.0).reshape(3, 3)).tolist()},
    }  # fmt: skip


def test_hypothesis_title_names_model_data_poi_and_injected() -> None:
    title = plots.hypothesis_title("toy-nsbi", "data 'observed'", "mu", {"alpha": 0.0, "mu": 1.0})
    assert title == "toy-nsbi: data 'observed', POI mu (injected mu=1, alpha=0)"
    assert plots.hypothesis_title("m", "Asimov (mu=0)", "mu") == "m: Asimov (mu=0), POI mu"


def test_data_label_of_the_toy_model(repo_root: Path) -> None:
    import yaml

    raw = yaml.safe_load((repo_root / "workflows" / "models" / "toy.yaml").read_text())
    assert data_label(Model.model_validate(raw)) == "data 'observed'"
    for region in raw["regions"].values():
        region["data"] = {"asimov": {"mu": 0.0}}
    assert data_label(Model.model_validate(raw)) == "data Asimov (mu=0)"


@pytest.mark.parametrize("kind", ["scans", "pulls", "correlations", "scan_2d"])
def test_every_plot_carries_its_hypothesis(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    title = plots.hypothesis_title("toy-nsbi", "data 'observed'", "mu", {"mu": 1.0})
    result = _result(1.1)
    path = tmp_path / f"{kind}.png"
    boxes: list[Any] = []
    original = Figure.savefig

    def savefig(fig: Figure, *args: Any, **kwargs: Any) -> None:
        original(fig, *args, **kwargs)
        boxes.append((fig.get_tightbbox(), fig.get_size_inches(), fig.get_suptitle()))

    monkeypatch.setattr(Figure, "savefig", savefig)
    if kind == "scans":
        plots.scans(path, {"exact": result, "nsbi": _result(1.2)}, "mu", 1.0, hypothesis=title)
    else:
        getattr(plots, kind)(path, result, "nsbi", title)
    with Image.open(path) as image:
        assert image.text["Title"] == title  # type: ignore[attr-defined]
    ((bbox, (width, height), suptitle),) = boxes
    assert suptitle == title
    assert bbox.x0 >= -0.05 and bbox.y0 >= -0.05 and bbox.x1 <= width + 0.05 and bbox.y1 <= height + 0.05, bbox
