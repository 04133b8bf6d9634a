"""The benchmark scripts still run at toy sizes (no timing assertions: figures come from run_all.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


@pytest.mark.parametrize("name", ["training", "inference", "model_fit", "scale"])
def test_benchmark_runs_at_toy_size(name: str, tmp_path: Path) -> None:
    """Each script runs with NSBIFLOW_BENCH_QUICK=1 and writes its ``<name>_quick.json`` (into a temporary folder:
    the tracked results are never rewritten by the tests)."""
    result = tmp_path / f"{name}_quick.json"
    tracked = BENCH / "results" / f"{name}_quick.json"
    before = tracked.read_bytes() if tracked.exists() else None
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py")],
        env={**os.environ, "NSBIFLOW_BENCH_QUICK": "1", "NSBIFLOW_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        # scale starts the CLI per width, training measures matmul between methods: slow on a loaded machine
        timeout=300 if name in ("scale", "training") else 120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert result.exists()
    assert (tracked.read_bytes() if tracked.exists() else None) == before, f"{tracked} was rewritten"
    payload = json.loads(result.read_text())
    assert payload["benchmark"] == f"{name}_quick"
    assert payload["machine"]["cpus"]


def test_report_renders_and_writes_only_between_markers(tmp_path: Path) -> None:
    """report.py renders a table from result files and replaces only the marked README section."""
    sys.path.insert(0, str(BENCH))
    try:
        import report
    finally:
        sys.path.remove(str(BENCH))
    text = report.render(report.load())
    assert text.startswith("| figure |")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    assert report.write_readme("TABLE", readme)
    assert readme.read_text() == f"intro\n{report.START}\nTABLE\n{report.END}\noutro\n"
    plain = tmp_path / "PLAIN.md"
    plain.write_text("no markers\n")
    assert not report.write_readme("TABLE", plain)
    assert plain.read_text() == "no markers\n"


def test_gpu_script_runs_in_smoke_mode(tmp_path: Path) -> None:
    """benchmarks/gpu.py --smoke runs every part at tiny sizes (on a CPU where no GPU is lent), into a temporary
    folder like the other scripts (the tracked gpu_quick.json stays as it is)."""
    result = tmp_path / "gpu_quick.json"
    tracked = BENCH / "results" / "gpu_quick.json"
    before = tracked.read_bytes() if tracked.exists() else None
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--smoke"],
        env={**os.environ, "NSBIFLOW_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tracked.read_bytes() if tracked.exists() else None) == before, f"{tracked} was rewritten"
    payload = json.loads(result.read_text())
    assert payload["smoke"] and payload["device_name"]
    assert payload["small"]["methods"]["loop"]["member_events_per_s"] > 0
    assert payload["inference"]["networks_done"] == payload["inference"]["networks"]
    assert set(payload["summary"]) >= {"small_best_speedup_vs_loop", "wide_fraction_of_bf16_matmul",
                                       "inference_1e4x1e6_seconds", "targets_met"}  # fmt: skip


def test_toys_benchmark_with_only_keeps_the_other_analysis_with_its_own_counts(tmp_path: Path) -> None:
    """``benchmarks/toys.py --only offshell`` merges: the toy entry written by an earlier run stays, and gets the
    toy counts, methods and machine that file recorded at its top level."""
    sys.path.insert(0, str(BENCH))
    try:
        import toys as bench_toys  # benchmarks/toys.py
    finally:
        sys.path.remove(str(BENCH))
    old = {"toys_per_point": 300, "limit_toys": 50, "methods": ["nsbi"], "machine": {"cpus": 2},
           "analyses": {"toy": {"rows": [{"method": "nsbi"}]}, "offshell": {"rows": [], "toys_per_point": 50}}}
    path = tmp_path / "toys.json"
    path.write_text(json.dumps(old))
    kept = bench_toys.kept_analyses(path)
    assert kept["toy"] == {"rows": [{"method": "nsbi"}], "toys_per_point": 300, "limit_toys": 50, "methods": ["nsbi"],
                           "machine": {"cpus": 2}}
    assert kept["offshell"]["toys_per_point"] == 50  # an entry's own count wins over the file's
    assert bench_toys.kept_analyses(tmp_path / "missing.json") == {}


def _toys_document(coverage: float, cls: float) -> dict[str, object]:
    """A toys.json with one point and the NSBI and exact methods, in the toys step's layout."""

    def method(cov: float, excl: float) -> dict[str, object]:
        return {"toys": 500, "failed": 0, "coverage_68": {"value": cov, "error": 0.021},
                "coverage_95": {"value": 0.95, "error": 0.01}, "lr_pull": {"width": 0.97, "mean": 0.0},
                "pull": {"width": 1.0, "mean": 0.0}, "bias": 0.0, "bias_error": 0.01, "bias_over_sigma": 0.0,
                "width_68": 0.4, "cls_excludes_truth": {"value": excl}}  # fmt: skip

    return {"points": [{"label": "mu=1", "methods": {"nsbi": method(coverage, cls), "exact": method(0.69, 0.05)}}]}


@pytest.mark.parametrize(
    ("coverage", "cls", "meets"), [(0.69, 0.05, True), (0.62, 0.05, False), (0.69, 0.09, False), (0.735, 0.0, False)]
)
def test_seed_coverage_applies_the_issue_criteria(coverage: float, cls: float, meets: bool) -> None:
    """``benchmarks/seed_coverage.py``: a training meets the criteria only with 68 % coverage within 0.68 +- 0.05
    and a CLs exclusion of the truth of at most 8 %; the gate's verdict is carried, not re-judged."""
    sys.path.insert(0, str(BENCH))
    try:
        import seed_coverage  # benchmarks/seed_coverage.py
    finally:
        sys.path.remove(str(BENCH))
    gate = {"passed": False, "points": [{"name": "mu=1", "bias_over_sigma": 0.3, "resolution": 0.02}]}
    row = seed_coverage.row_of(4, {"toys": _toys_document(coverage, cls), "gate": gate, "seconds": 1.0})
    assert row["meets_criteria"] is meets
    assert row["gate_passed"] is False and row["gate_points"][0]["bias_over_sigma"] == 0.3
    assert row["exact"]["coverage_68"] == 0.69


def test_toys_benchmark_tables_documents_written_elsewhere(tmp_path: Path) -> None:
    """``benchmarks/toys.py --documents``: the rows of every document in order, their toy count and methods; a file
    that is not a toys document is a one-line error naming it."""
    sys.path.insert(0, str(BENCH))
    try:
        import toys as bench_toys  # benchmarks/toys.py
    finally:
        sys.path.remove(str(BENCH))
    paths = []
    for k, cov in enumerate((0.70, 0.66)):
        document = {**_toys_document(cov, 0.05), "toys_per_point": 1000 - k, "methods": ["nsbi", "exact"], "seed": 1}
        paths.append(tmp_path / f"toys-{k}.json")
        paths[-1].write_text(json.dumps(document))
    entry = bench_toys.from_documents(paths, "16 cores")
    assert [(r["method"], r["coverage_68"]) for r in entry["rows"]] == [
        ("nsbi", 0.70), ("exact", 0.69), ("nsbi", 0.66), ("exact", 0.69)]  # fmt: skip
    assert entry["rows"][2]["coverage_ok"] is True and entry["toys_per_point"] == 999
    assert entry["documents"] == ["toys-0.json", "toys-1.json"] and entry["machine"] == {"described": "16 cores"}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"bad\.json: not a readable toys\.json document"):
        bench_toys.from_documents([tmp_path / "bad.json"], "")
    (tmp_path / "other.json").write_text(json.dumps({"points": []}))
    not_toys = r"other\.json: not a toys\.json document \(no toys_per_point, methods, seed\)"
    with pytest.raises(SystemExit, match=not_toys):
        bench_toys.from_documents([tmp_path / "other.json"], "")


def test_seed_coverage_offshell_judges_coverage_alone_and_borrows_the_first_exact_fit() -> None:
    """``seed_coverage.py --workflow offshell``: no CLs limits there, so coverage alone decides; a seed's run without
    the exact method reports the first seed's exact fit of the same toys."""
    sys.path.insert(0, str(BENCH))
    try:
        import seed_coverage  # benchmarks/seed_coverage.py
    finally:
        sys.path.remove(str(BENCH))
    document = _toys_document(0.70, 0.0)
    document["points"][0]["methods"]["nsbi"]["cls_excludes_truth"] = None  # type: ignore[index]
    del document["points"][0]["methods"]["exact"]  # type: ignore[attr-defined]
    gate = {"passed": True, "points": []}
    first = {"coverage_68": 0.69, "method": "exact"}
    row = seed_coverage.row_of(2, {"toys": document, "gate": gate, "seconds": 1.0}, first, check_cls=False)
    assert row["meets_criteria"] is True and row["exact"] == first
    assert seed_coverage.row_of(2, {"toys": document, "gate": gate, "seconds": 1.0})["meets_criteria"] is False
