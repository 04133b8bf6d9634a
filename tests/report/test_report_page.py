"""The run report page, rendered by a real headless Chromium: the DOM holds the steps, statuses and results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import run_cli

# fit: a results document (mu_hat = 2 * scale), a real PNG plot, and two diagnostics (one gate passes, one fails)
WORKFLOW = r"""apiVersion: nsbiflow/v1
kind: Workflow
metadata: {name: report-demo}
parameters:
  scale: {type: float, default: 1.0}
interface: {parameters: [scale], results: [results]}
outputs:
  results: fit.results
  plots: fit.plots
  diagnostics: check.report
steps:
  prepare:
    foreach: [alpha, beta]
    run:
      image: busybox:1.36
      command: [sh, -c, 'for a; do case $a in *=*) export "$a";; esac; done; echo "$name" > "$data"', sh]
      parameters: {name: {type: str}}
      outputs: {data: {kind: file}}
    with: {name: "${{ item }}"}
  check:
    foreach: [alpha, beta]
    run:
      image: busybox:1.36
      command:
        - sh
        - -c
        - |
          for a; do case $a in *=*) export "$a";; esac; done
          ok=$([ "$label" = alpha ] && echo true || echo false)
          printf '{"label": "%s", "passed": %s, "max_chi2_ndf": 1.25}' "$label" "$ok" > "$report/metrics.json"
        - sh
      parameters: {label: {type: str}}
      inputs: {data: {kind: file}}
      outputs: {report: {kind: dir}}
    with: {label: "${{ item }}"}
    inputs: {data: "prepare[${{ item }}].data"}
  fit:
    run:
      image: busybox:1.36
      command:
        - python
        - -c
        - |
          import json, sys
          args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
          scale = float(args["scale"])
          doc = {"exact": {"mu_hat": 2 * scale, "interval_68": [2 * scale - 0.5, 2 * scale + 0.5], "z0": 3.25}}
          open(args["results"], "w").write(json.dumps(doc))
          import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
          plt.plot([0, 1], [0, scale]); plt.savefig(args["plots"] + "/scan.png", dpi=40)
      parameters: {scale: {type: float}}
      inputs: {diagnostics: {kind: dir, multiple: true}}
      outputs: {results: {kind: file, filename: results.json}, plots: {kind: dir}}
    with: {scale: "${{ params.scale }}"}
    inputs: {diagnostics: check.report}
"""


def chromium() -> str:
    """The system Chromium; outside CI a missing browser skips, in CI (CI=true) it fails."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def headless(browser: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Chromium headless (no sandbox: CI containers run as root)."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    home = cwd / "chromium-home"  # its profile and crash folders stay in the test's folder
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False)


class Dom(HTMLParser):
    """The elements of a dumped DOM with their attributes (and the text of table cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.cells: dict[tuple[str, str], str] = {}
        self._cell: tuple[str, str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag == "td" and "data-method" in attributes:
            self._cell = (attributes["data-method"], attributes["data-quantity"])

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self.cells[self._cell] = data.strip()
            self._cell = None

    def all(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in wanted.items())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    base = tmp_path_factory.mktemp("report")
    workflow = base / "demo.yaml"
    workflow.write_text(WORKFLOW)
    store = base / "store"
    first = run_cli("run", workflow, "--store", store, "--json", cwd=base)
    assert first.returncode == 0, first.stderr
    second = run_cli("run", workflow, "--store", store, "--json", "--set", "scale=1.5", cwd=base)
    assert second.returncode == 0, second.stderr
    return base, store, json.loads(second.stdout.strip().splitlines()[-1])["run_id"]


def test_report_renders_in_chromium_with_steps_statuses_and_results(runs: tuple[Path, Path, str]) -> None:
    browser = chromium()
    base, store, run_id = runs
    page = base / "report.html"
    made = run_cli("report", "latest", "--store", store, "-o", page, cwd=base)
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load anything"
    dumped = headless(browser, "--virtual-time-budget=5000", "--dump-dom", page.as_uri(), cwd=base)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = Dom()
    dom.feed(dumped.stdout)
    body = dom.all("body")[0]
    assert body["data-run"] == run_id and body["data-status"] == "succeeded"
    assert body.get("data-rendered") == "yes", "the page's script did not run in the browser"
    steps = {a["data-step"]: a for a in dom.all("g", **{"class": "step"})}
    spans = {a["data-step"] for a in dom.all("g", **{"class": "span"})}
    assert spans == set(steps)
    assert set(steps) == {"prepare[alpha]", "prepare[beta]", "check[alpha]", "check[beta]", "fit"}
    # scale changed: only fit re-ran, the rest were cache hits
    assert {s: a["data-status"] for s, a in steps.items()} == {
        "prepare[alpha]": "cached", "prepare[beta]": "cached", "check[alpha]": "cached", "check[beta]": "cached",
        "fit": "succeeded",
    }
    assert steps["prepare[alpha]"]["data-cached"] == "true" and steps["fit"]["data-cached"] == "false"
    counts = next(a for a in dom.all("span") if a.get("id") == "dag-counts")
    assert json.loads(counts["data-counts"]) == {"cached": 4, "succeeded": 1}
    edges = {(a["data-from"], a["data-to"]) for a in dom.all("path") if "data-from" in a}
    assert ("prepare[alpha]", "check[alpha]") in edges and ("check[beta]", "fit") in edges
    assert ("prepare[alpha]", "check[beta]") not in edges
    assert dom.cells[("exact", "mu_hat")] == "3.000"
    assert dom.cells[("exact", "interval_68")] == "[2.500, 3.500]"
    assert dom.cells[("exact", "z0")] == "3.250"
    gates = {a["data-gate"]: a["data-passed"] for a in dom.all("td") if "data-gate" in a}
    assert gates == {"alpha": "true", "beta": "false"}
    images = [a for a in dom.all("img") if a.get("src", "").startswith("data:image/png;base64,")]
    assert len(images) == 1 and images[0]["alt"] == "scan.png"
    text = " ".join(dom.text)
    assert "hypothesis: scale=1.5" in " ".join(text.split()) and "busybox:1.36" in text
    shot = base / "report.png"
    taken = headless(browser, "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri(), cwd=base)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_archive_report(runs: tuple[Path, Path, str]) -> None:
    base, store, run_id = runs
    assert run_cli("preserve", run_id, "--name", "demo", "--store", store).returncode == 0
    made = run_cli("report", "demo", "--archive", "--store", store, cwd=base)
    assert made.returncode == 0, made.stderr
    page = base / "nsbiflow-results" / "demo-archive" / "report.html"
    dom = Dom()
    dom.feed(page.read_text())
    assert "archive demo@" in " ".join(dom.text)
    assert dom.cells[("exact", "mu_hat")] == "3.000"


def test_report_of_an_unknown_run_is_one_line(runs: tuple[Path, Path, str]) -> None:
    base, store, _ = runs
    missing = run_cli("report", "nope", "--store", store, cwd=base)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no run 'nope'"), missing.stderr
