"""Benchmark: pseudo-experiments of both bundled analyses with their trained ensembles.

    python benchmarks/toys.py [--toys 300] [--limits 100] [--methods nsbi,exact] [--jobs N] [--only toy|offshell]
                              [--work DIR] [--name NAME]
    python benchmarks/toys.py --only offshell --documents A/toys.json B/toys.json --machine TEXT --name NAME

Runs each bundled workflow (``workflows/toy-nsbi.yaml``, ``workflows/offshell-toy.yaml``) through the local engine
with its ``toys`` step switched on (``--set toys=N``, the workflows' default points: nominal and all nuisance
parameters of the point at +-1 sigma), reads the ``toys.json`` output, and reports per analysis, point and method
the 68 % coverage (target 0.68 +- 0.04), the pull width (target 1 +- 0.1), the bias and the background-only limits.
Writes ``benchmarks/results/toys.json``; with ``--only``, the other analysis's entry already there is kept (each
entry records its own toy counts, methods, machine and time). The training is the workflows' own (same seeds as
``make toy``); the figures of a failing point are reported, never tuned away.

``--documents`` tables ``toys.json`` documents written elsewhere instead of running the workflows (e.g. by
``benchmarks/toys_device.sh`` on a machine with 16 cores and a GPU, where 1000 exact fits per point take minutes;
``--machine`` describes that machine).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write_result

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = {"toy": REPO / "workflows" / "toy-nsbi.yaml", "offshell": REPO / "workflows" / "offshell-toy.yaml"}
TARGET_COVERAGE, COVERAGE_TOL, TARGET_WIDTH, WIDTH_TOL = 0.68, 0.04, 1.0, 0.1
TARGETS = {"coverage_68": [TARGET_COVERAGE, COVERAGE_TOL], "pull_width": [TARGET_WIDTH, WIDTH_TOL]}


def run_analysis(name: str, n_toys: int, limits: int, methods: list[str], jobs: int, folder: Path) -> dict[str, Any]:
    """One workflow run with toys on; the toys document and the timings."""
    results = folder / f"{name}-results"
    shutil.rmtree(results, ignore_errors=True)
    command = [
        str(BIN / "nsbiflow"), "run", str(WORKFLOWS[name]), "--store", str(folder / f"{name}-store"),
        "--results", str(results), "--jobs", str(jobs), "--json",
        "--set", f"toys={n_toys}", "--set", f"toy_limits={limits}", "--set", f"toy_methods={json.dumps(methods)}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the workflow failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    toys_seconds = next((s["seconds"] for s in summary["steps"] if s["name"] == "toys"), None)
    document = json.loads((results / "toys" / "toys.json").read_text())
    checks_md = (results / "summary" / "summary.md") if (results / "summary").is_dir() else results / "summary.md"
    return {
        "document": document,
        "workflow_seconds": seconds,
        "toys_step_seconds": toys_seconds,
        "summary_md": checks_md.read_text() if checks_md.exists() else "",
    }


def digest(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per point and method (the figures the targets speak of; per-toy arrays dropped)."""
    rows = []
    for point in document["points"]:
        for method, s in point["methods"].items():
            cov = s["coverage_68"]
            row = {
                "point": point["label"],
                "method": method,
                "toys": s["toys"],
                "failed": s["failed"],
                "coverage_68": cov["value"],
                "coverage_68_error": cov["error"],
                "coverage_95": s["coverage_95"]["value"],
                "coverage_95_error": s["coverage_95"]["error"],
                "pull_width": s["lr_pull"]["width"],
                "pull_mean": s["lr_pull"]["mean"],
                "hessian_pull_width": s["pull"]["width"],
                "hessian_pull_mean": s["pull"]["mean"],
                "bias": s["bias"],
                "bias_error": s["bias_error"],
                "bias_over_sigma": s["bias_over_sigma"],
                "width_68": s["width_68"],
                "cls_excludes_truth": (s.get("cls_excludes_truth") or {}).get("value"),
            }
            row["coverage_ok"] = abs(row["coverage_68"] - TARGET_COVERAGE) <= COVERAGE_TOL
            row["pull_width_ok"] = abs(row["pull_width"] - TARGET_WIDTH) <= WIDTH_TOL
            rows.append(row)
    return rows


def kept_analyses(path: Path) -> dict[str, Any]:
    """The analyses of an earlier results file, each with its own toy counts, methods and machine (``{}`` if none)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    kept = {}
    for name, entry in (old.get("analyses") or {}).items():
        for key in ("toys_per_point", "limit_toys", "methods", "measured", "machine"):
            if key in old:
                entry.setdefault(key, old[key])
        kept[name] = entry
    return kept


def from_documents(paths: list[Path], machine_text: str) -> dict[str, Any]:
    """One analysis entry from ``toys.json`` documents of the same analysis (their points' rows, in order)."""
    documents = []
    for path in paths:
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            problem = f"{path}: not a readable toys.json document ({exc}); pass the toys step's output"
            raise SystemExit(problem) from None
        missing = [k for k in ("toys_per_point", "methods", "seed", "points") if k not in documents[-1]]
        if missing:
            raise SystemExit(f"{path}: not a toys.json document (no {', '.join(missing)}); pass the toys step's output")
    rows = [row for document in documents for row in digest(document)]
    return {
        "documents": [p.name for p in paths],
        "toys_per_point": min(d["toys_per_point"] for d in documents),
        "limit_toys": 0,
        "methods": sorted({m for d in documents for m in d["methods"]}),
        "seeds": sorted({d["seed"] for d in documents}),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"described": machine_text},
        "rows": rows,
    }


def main() -> None:
    """Run the benchmark and write ``benchmarks/results/toys.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toys", type=int, default=300, help="pseudo-experiments per point")
    parser.add_argument("--limits", type=int, default=100, help="background-only toys (CLs limit distribution)")
    parser.add_argument("--methods", default="nsbi,exact", help="comma-separated fit methods")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=sorted(WORKFLOWS), action="append", help="one analysis (repeatable)")
    parser.add_argument("--name", default="toys", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--work", type=Path, help="keep the runs' stores here (a rerun reuses the trained ensembles)")
    parser.add_argument("--documents", type=Path, nargs="+", help="table these toys.json documents (one analysis)")
    parser.add_argument("--machine", default="", help="with --documents: the machine that wrote them")
    args = parser.parse_args()
    if args.documents:
        if not args.only or len(args.only) != 1:
            parser.error("--documents needs exactly one --only ANALYSIS (the analysis the documents belong to)")
        entry = from_documents(args.documents, args.machine)
        tabled: dict[str, Any] = {
            "targets": TARGETS,
            "analyses": {args.only[0]: entry}, "toys_per_point": entry["toys_per_point"],
            "methods": entry["methods"], "machine": entry["machine"],
        }
        print(table(f"{args.only[0]}: {entry['toys_per_point']} toys per point (documents)",
                    ["point", "method", "cov68", "+-", "pull width", "bias/sigma"],
                    [[r["point"], r["method"], r["coverage_68"], r["coverage_68_error"], r["pull_width"],
                      r["bias_over_sigma"]] for r in entry["rows"]]))
        print(f"wrote {write_result(args.name, tabled)}")
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    payload: dict[str, Any] = {
        "targets": TARGETS,
        "toys_per_point": args.toys,
        "limit_toys": args.limits,
        "methods": methods,
        "pull": "likelihood-ratio pull sign(mu_hat - mu) sqrt(t(mu)); the Hessian pull is reported beside it",
        "analyses": {},
    }
    with tempfile.TemporaryDirectory(prefix="nsbiflow-toys-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.only or sorted(WORKFLOWS):
            limits = args.limits if name == "toy" else 0  # the off-shell exact Asimov fits take tens of minutes
            found = run_analysis(name, args.toys, limits, methods, args.jobs, work)
            rows = digest(found["document"])
            limits_doc = found["document"].get("limits") or {}
            payload["analyses"][name] = {
                "workflow": str(WORKFLOWS[name].relative_to(REPO)),
                "toys_per_point": args.toys,
                "limit_toys": limits,
                "methods": methods,
                "jobs": args.jobs,
                "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine(),
                "workflow_seconds": found["workflow_seconds"],
                "toys_step_seconds": found["toys_step_seconds"],
                "rows": rows,
                "limits": {
                    m: {k: s[k] for k in ("toys", "failed", "toys_bands", "asymptotic_bands")}
                    for m, s in (limits_doc.get("methods") or {}).items()
                },
                "summary_md": found["summary_md"],
            }
            print(table(
                f"{name}: {args.toys} toys per point ({found['toys_step_seconds']} s in the toys step)",
                ["point", "method", "cov68", "+-", "pull width", "bias/sigma", "ok"],
                [[r["point"], r["method"], r["coverage_68"], r["coverage_68_error"], r["pull_width"],
                  r["bias_over_sigma"], "yes" if r["coverage_ok"] and r["pull_width_ok"] else "NO"] for r in rows],
            ))
    if args.only:
        payload["analyses"] = {**kept_analyses(RESULTS / f"{args.name}.json"), **payload["analyses"]}
    payload["toys_per_point"] = min(a["toys_per_point"] for a in payload["analyses"].values())
    nsbi = [r for a in payload["analyses"].values() for r in a["rows"] if r["method"] == "nsbi"]
    payload["nsbi_all_within_targets"] = all(r["coverage_ok"] and r["pull_width_ok"] for r in nsbi)
    payload["machine"] = machine()
    print(f"wrote {write_result(args.name, payload)}")


if __name__ == "__main__":
    main()
