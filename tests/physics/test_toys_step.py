"""The ``toys`` and ``summarize`` steps run through the engine on the small chain's trained ensembles.

A small count (CI): the document's structure, the pseudo-data's truth (the exact method's mean best fit sits at
the true mu within its error at both points; the NSBI fits are the same toys), the background-only limits next to
the asymptotic bands, the plots, and the plain summary naming every check. The coverage figures themselves are
measured with >= 300 toys per point by ``benchmarks/toys.py``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.physics.conftest import LABELS, TOY_MODEL, Chain

N_TOYS = 10
N_LIMITS = 6

WORKFLOW = """\
apiVersion: nsbiflow/v1
kind: Workflow
metadata: {{name: toys-small}}
outputs:
  toys: toys.toys
  plots: toys.plots
  summary: summarize.summary
steps:
  toys:
    uses: toys
    with:
      n_toys: {n}
      limit_toys: {limits}
      points: [{{mu: 1.0}}, {{mu: 1.0, alpha: 1.0}}]
      methods: [exact, nsbi]
      seed: 5
    inputs:
      model: {{path: {model}}}
      ratios: {{path: {ratios}}}
      ensembles: {{path: {ensembles}}}
      support: {{path: {support}}}
  summarize:
    uses: summarize
    inputs:
      toys: toys.toys
      diagnostics: {{path: {report}}}
"""


@pytest.fixture(scope="module")
def run(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toys")
    collection = root / "ensembles"  # one collection of every label (what gather-ensemble writes)
    for label in LABELS:
        shutil.copytree(chain.ensemble(label) / label, collection / label)
    text = WORKFLOW.format(
        n=N_TOYS,
        limits=N_LIMITS,
        model=TOY_MODEL,
        ratios=chain.ratios,
        support=chain.root / "support",
        ensembles=collection,
        report=chain.root / "report-signal",
    )
    (root / "wf.yaml").write_text(text)
    store = root / "store"
    out = run_cli("run", "wf.yaml", "--store", store, "--results", root / "results", "-j", "1", "--json", cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = json.loads(out.stdout.strip().splitlines()[-1])["run_id"]
    log = run_cli("show", run_id, "--store", store, "--log", "toys")
    assert "toys: nsbi at mu=1, alpha=+1" in log.stdout, log.stdout[-2000:]  # one progress line per method and point
    shown = run_cli("show", run_id, "--store", store)
    assert "checks:" in shown.stdout and "| toys nsbi at mu=1 |" in shown.stdout, shown.stdout[-2000:]
    page = root / "report.html"
    assert run_cli("report", run_id, "--store", store, "-o", page).returncode == 0
    html = page.read_text()
    assert '<pre class="summary" data-output="summary">' in html and "toys exact at mu=1, alpha=+1" in html
    return root / "results"


def test_toys_document_has_every_figure_per_point_and_method(run: Path) -> None:
    doc = json.loads((run / "toys" / "toys.json").read_text())
    assert doc["source"] == "generator" and doc["toys_per_point"] == N_TOYS
    assert [p["label"] for p in doc["points"]] == ["mu=1", "mu=1, alpha=+1"]
    for point in doc["points"]:
        assert set(point["methods"]) == {"exact", "nsbi"}
        for s in point["methods"].values():
            assert s["toys"] + s["failed"] == N_TOYS and s["failed"] == 0
            c = s["coverage_68"]
            assert 0 <= c["value"] <= 1 and math.isclose(c["error"], math.sqrt(c["value"] * (1 - c["value"]) / N_TOYS))
            assert s["coverage_95"]["value"] >= c["value"]
            assert s["width_95"] > s["width_68"] > 0 and len(s["mu_hat"]) == N_TOYS
        exact = point["methods"]["exact"]
        # the pseudo-data follow the truth at this point: the exact fit is unbiased within 3 standard errors
        assert abs(exact["bias"]) < 3 * exact["bias_error"], exact["bias"]
        # both methods fitted the same toys: their best fits are strongly correlated
        a, b = point["methods"]["exact"]["mu_hat"], point["methods"]["nsbi"]["mu_hat"]
        mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
        cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
        var = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
        assert cov / var > 0.7
    limits = doc["limits"]
    assert limits["values"]["mu"] == 0.0
    for s in limits["methods"].values():
        assert s["toys"] + s["failed"] == N_LIMITS and s["toys"] >= N_LIMITS - 1
        t, a = s["toys_bands"], s["asymptotic_bands"]
        assert t["-2"] <= t["-1"] <= t["0"] <= t["+1"] <= t["+2"]
        assert a["-2"] < a["-1"] < a["0"] < a["+1"] < a["+2"]
        assert 0.5 < t["0"] / a["0"] < 2.0  # toys' median limit near the asymptotic median
    assert {(c["point"], c["method"]) for c in doc["checks"]} == {
        (p, m) for p in ("mu=1", "mu=1, alpha=+1") for m in ("exact", "nsbi")
    }
    for name in ("pulls_0.png", "pulls_1.png", "coverage.png", "limits.png"):
        assert (run / "plots" / name).stat().st_size > 5_000, name


def test_summary_names_every_check_with_numbers(run: Path) -> None:
    found = run / "summary"
    text = (found / "summary.md" if found.is_dir() else found).read_text()
    assert "| calibrate signal | closure chi2/ndf <= 5.00" in text
    assert "| toys exact at mu=1, alpha=+1 |" in text and "| expected limit nsbi |" in text
    assert "68 % " in text and "toys |" in text
    first = text.splitlines()[2]
    assert first.endswith("informational.") and "passed" in first
