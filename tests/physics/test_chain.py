"""The chain end to end on a CI-small toy: answers compared with the exact likelihood ratio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from safetensors.torch import load_file, save_file

from nsbiflow.physics.toy_model import ToyModel
from tests.physics.conftest import DENOMINATOR, TOY_MODEL, Chain, generate_sample, must, run_step, train


def test_results_follow_the_output_contract(chain: Chain) -> None:
    doc = json.loads(chain.results.read_text())
    for method in ("exact", "nsbi", "histogram"):
        r = doc[method]
        assert set(r) >= {"mu_hat", "interval_68", "interval_95", "cls_upper_limit_95", "z0"}
        assert r["interval_95"][0] < r["interval_68"][0] < r["mu_hat"] < r["interval_68"][1] < r["interval_95"][1]
        assert r["interval_68"][1] < r["cls_upper_limit_95"]
    assert doc["ensemble_size"] == {"signal": 4, "background": 4, "background_up": 4, "background_down": 4}
    support = doc["support"]["SR"]
    assert support["observed_in_support"] + support["observed_outside_support"] > 900
    assert set(doc["closure"]) == {"signal", "background", "background_up", "background_down"}
    assert (chain.root / "plots" / "scan_mu.png").stat().st_size > 10_000
    from PIL import Image

    injected = doc["injected"]["mu"]
    for plot in ("scan_mu", "pulls_exact", "pulls_nsbi", "correlations_histogram"):
        with Image.open(chain.root / "plots" / f"{plot}.png") as image:  # titled with the hypothesis it shows
            title = image.text["Title"]  # type: ignore[attr-defined]
        assert title.startswith(f"{doc['model']}: data 'observed', POI mu (injected mu={injected:g}"), title
    for method in ("exact", "nsbi", "histogram"):
        assert (chain.root / "plots" / f"pulls_{method}.png").exists()
        full = doc["methods"][method]
        assert set(full["parameters"]) == {"mu", "alpha", "bkg_norm"}
        assert [i["parameter"] for i in full["impacts"]] and full["nonpositive_density_events"] == 0
    assert json.loads((chain.root / "workspace.json").read_text())["version"] == "1.0.0"


def test_nsbi_interval_close_to_exact_and_histogram_wider(chain: Chain) -> None:
    doc = json.loads(chain.results.read_text())
    exact, nsbi, hist = (doc[m]["interval_68"] for m in ("exact", "nsbi", "histogram"))
    width = {name: hi - lo for name, (lo, hi) in (("exact", exact), ("nsbi", nsbi), ("histogram", hist))}
    assert abs(width["nsbi"] / width["exact"] - 1) < 0.25, width
    assert width["histogram"] > width["exact"], width
    # the exact fit recovers the injected mu = 1 within its 95 % interval
    lo, hi = doc["exact"]["interval_95"]
    assert lo < 1.0 < hi


def test_discriminant_histogram_and_support_fractions_are_reported(chain: Chain) -> None:
    doc = json.loads(chain.results.read_text())
    width = {m: doc[m]["width_68"] for m in ("exact", "nsbi", "discriminant", "histogram")}
    assert width["exact"] < width["discriminant"] < width["histogram"], width
    assert doc["methods"]["discriminant"]["converged"] and doc["settings"]["hist_interpolation"] == "code4"
    assert "code 4" in doc["workspace"]  # the pyhf export says its histosys is additive
    outside = doc["support"]["SR"]["outside_fraction"]
    assert set(outside) == {"signal", "background", "reference"}
    assert all(0.0 <= v < 0.2 for v in outside.values()), outside
    for label in ("signal", "background"):
        assert {"ratio_closure_z", "two_sample_z", "two_sample_auc"} <= set(doc["closure"][label])
    summary = (chain.root / "plots" / "summary.md").read_text()
    assert "| histogram of the NSBI discriminant |" in summary and "| histogram (x0) |" in summary


def test_learned_ratios_approximate_the_exact_ones(chain: Chain) -> None:
    table = pq.read_table(chain.ratios / "observed.parquet")
    x = np.stack([table.column(f"x{j}").to_numpy() for j in range(5)], axis=1)
    toy = ToyModel()
    for label in ("signal", "background", "background_up"):
        learned = table.column(f"logr_{label}").to_numpy()
        exact = toy.log_ratio(label, DENOMINATOR[label], x)
        assert learned.dtype == np.float32
        assert np.corrcoef(learned, exact)[0, 1] > 0.8, label
        assert np.sqrt(np.mean((learned - exact) ** 2)) < 0.35, label


def test_fixed_seed_gives_identical_bytes(chain: Chain, tmp_path: Path) -> None:
    events, holdout = generate_sample(tmp_path / "again", "background", chain.seed)
    assert events.read_bytes() == chain.events("background").read_bytes()
    assert holdout.read_bytes() == chain.events("background", "holdout").read_bytes()
    again = train(chain, "background_up", 0, tmp_path / "chunk")
    first = chain.root / "chunk-background_up-0"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_signal_model_change_leaves_other_samples_identical(chain: Chain, tmp_path: Path) -> None:
    for process in ("background", "reference"):
        events, _ = generate_sample(tmp_path, process, chain.seed, signal_mean=2.0, signal_width=0.4)
        assert events.read_bytes() == chain.events(process).read_bytes()
    signal, _ = generate_sample(tmp_path, "signal", chain.seed, signal_mean=2.0)
    assert signal.read_bytes() != chain.events("signal").read_bytes()


def test_calibrate_fails_loudly_on_a_broken_ensemble(chain: Chain, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(chain.ensemble("background"), broken)
    for member in sorted((broken / "background").glob("member_*.safetensors")):
        tensors = load_file(str(member))
        last = max(int(k.split(".")[1]) for k in tensors if k.startswith("layers."))
        tensors[f"layers.{last}.weight"] = tensors[f"layers.{last}.weight"] * 3.0  # an over-confident classifier
        save_file(tensors, str(member))
    report = tmp_path / "report"
    report.mkdir()
    run = run_step(
        "calibrate",
        {},
        [
            ("ensemble", broken),
            ("numerator", chain.events("background", "holdout")),
            ("reference", chain.events(DENOMINATOR["background"], "holdout")),
        ],
        {"report": report},
    )
    assert run.exit_code != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and run.stderr.strip().splitlines()[-1] == errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert errors[0].startswith("error: calibrate: closure of 'background'") and "exceeds the tolerance" in errors[0]
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["passed"] is False


def test_calibrate_passes_the_trained_ensembles(chain: Chain) -> None:
    for label in DENOMINATOR:
        metrics = json.loads((chain.root / f"report-{label}" / "metrics.json").read_text())
        assert metrics["passed"], metrics["failures"]
        assert abs(metrics["normalisation"] - 1) < 0.1
        assert (chain.root / f"report-{label}" / f"closure_{label}.png").exists()


def test_inference_split_by_ensemble_gives_the_same_results(chain: Chain, tmp_path: Path) -> None:
    """``infer`` run once per ensemble group (as the toy workflow does, so a new signal re-evaluates only its
    own ensemble) and ``fit`` on both folders give the single-``infer`` results exactly."""
    data = chain.events("observed").parent / "observed.parquet"
    groups = {
        "signal": (["signal"], ["signal", "background", "reference"]),
        "background": (
            ["background", "background_up", "background_down"],
            ["background", "background_up", "background_down", "reference"],
        ),
    }
    folders = []
    for name, (labels, samples) in groups.items():
        folder = tmp_path / f"ratios-{name}"
        folder.mkdir()
        ensembles = tmp_path / f"ensembles-{name}"
        ensembles.mkdir()
        for label in labels:  # a collection with only this group's labels
            shutil.copytree(chain.ensemble(label) / label, ensembles / label)
        must(
            run_step(
                "infer",
                {"batch_size": 2500},
                [
                    ("ensembles", ensembles),
                    ("support", chain.root / "support"),
                    ("data", data),
                    *[("samples", chain.events(p, "holdout")) for p in samples],
                ],
                {"ratios": folder},
            )
        )
        folders.append(folder)
    background_table = pq.read_table(folders[1] / "observed.parquet")
    assert not any("signal" in c for c in background_table.column_names)
    (tmp_path / "plots").mkdir()
    results = tmp_path / "results.json"
    must(
        run_step(
            "fit",
            {"injected": {"mu": 1.0}},
            [("model", TOY_MODEL), *[("ratios", folder) for folder in folders]],
            {"results": results, "workspace": tmp_path / "workspace.json", "plots": tmp_path / "plots"},
        )
    )
    split, single = json.loads(results.read_text()), json.loads(chain.results.read_text())
    for method in ("exact", "nsbi", "histogram"):
        assert split[method] == single[method], method


def test_fit_refuses_an_ensemble_bound_twice(chain: Chain, tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    run = run_step(
        "fit",
        {},
        [("model", TOY_MODEL), ("ratios", chain.ratios), ("ratios", chain.ratios)],
        {"results": tmp_path / "r.json", "workspace": tmp_path / "w.json", "plots": tmp_path / "plots"},
    )
    assert run.exit_code != 0
    assert "has 'logr_signal' twice; bind each ensemble's ratios once" in run.stderr


def test_infer_without_the_denominator_sample_says_so(chain: Chain, tmp_path: Path) -> None:
    run = run_step(
        "infer",
        {},
        [
            ("ensembles", chain.ensemble("signal")),
            ("data", chain.events("observed").parent / "observed.parquet"),
            ("samples", chain.events("signal", "holdout")),
        ],
        {"ratios": tmp_path},
    )
    assert run.exit_code != 0
    assert "no 'reference' sample is among the inputs; add it to samples or set normalise: false" in run.stderr
