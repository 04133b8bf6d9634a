"""The README figure table, generated from ``benchmarks/results/*.json``.

    python benchmarks/report.py            # print the table and write it into README.md between the markers
    python benchmarks/report.py --print    # print only

Only the text between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` in README.md is replaced; when the
markers are missing, nothing is written (the table is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
GPU_PENDING = "pending a GPU session"


def load(results: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every full-size result (``*_quick.json`` files are toy runs and are left out)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json")) if not p.stem.endswith("_quick")}


def _num(value: float, digits: int = 3) -> str:
    if value >= 1e5 or value < 1e-2:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def training_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 1."""
    small, big = r["cases"][0], r["cases"][1]
    s, b = small["methods"], big["methods"]
    summary = r["summary"]
    gpu = r.get("device", "cpu") != "cpu"
    best_small = max((k for k in s if "batched" in k), key=lambda k: s[k]["speedup_vs_loop"])
    trainer_big = summary.get("best_trainer_setting_4x1000", "trainer")
    batch = big.get("trainer_batch", big["batch"])
    other = trainer_big != "trainer"
    rows = [
        [
            f"1 training, {small['case']}, K={small['members']}",
            f"loop {_num(s['loop']['member_events_per_s'])}, trainer {_num(s['trainer']['member_events_per_s'])} "
            f"member-events/s; {best_small} {_num(s[best_small]['member_events_per_s'])}",
            f"trainer {s['trainer']['speedup_vs_loop']:.2f}x loop; "
            f"{best_small} {s[best_small]['speedup_vs_loop']:.2f}x",
            "GPU: >= 10x loop" if gpu else "CPU: >= 2x loop",
            _met(s["trainer"]["speedup_vs_loop"] >= (10 if gpu else 2)),
        ],
        [
            f"1 training, {big['case']}, K={big['members']}",
            f"trainer {_num(b['trainer']['member_events_per_s'])} member-events/s (default batch {batch}); "
            + (f"{trainer_big} {_num(b[trainer_big]['member_events_per_s'])}; " if other else "")
            + f"matmul limit {r['matmul_flops_fp32'] / 1e9:.0f} GFLOP/s",
            f"{b['trainer']['fraction_of_matmul']:.0%} of matmul (default batch {batch})"
            + (f"; {b[trainer_big]['fraction_of_matmul']:.0%} ({trainer_big})" if other else ""),
            "GPU: >= 40% of matmul" if gpu else "CPU: >= 80% of matmul",
            _met(b[trainer_big]["fraction_of_matmul"] >= (0.4 if gpu else 0.8))
            + ("" if b["trainer"]["fraction_of_matmul"] >= (0.4 if gpu else 0.8) else " (default batch: **no**)"),
        ],
    ]
    return rows


def paired_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 1, 4x1000: the trainer's batched and per-member paths interleaved, each against the matmul rate
    measured next to it (``benchmarks/training.py``; ``--paired-only`` writes this part alone)."""
    p = r.get("paired_4x1000", r)
    m = p["median"]
    load = r.get("machine", {}).get("load_average_1min", 0.0)
    start = p.get("load_average_start", [load])[0]
    worst_batched = min(row["batched_fraction_of_matmul"] for row in p["rounds"])
    stacked = (
        f"; the opt-in stacked step {m['stacked_over_autograd']:.2f}x the default autograd one "
        f"(batched stacked {m['batched_stacked_fraction_of_matmul']:.0%})"
        if "stacked_over_autograd" in m
        else ""
    )
    return [[
        f"1 training, 4x1000, K={p['members']}, paired",
        f"batched {m['batched_seconds']:.1f} s, per-member loop {m['loop_seconds']:.1f} s "
        f"(median of {len(p['rounds'])} interleaved rounds; load {start:.1f} at start, {load:.1f} at end)",
        f"batched {m['batched_fraction_of_matmul']:.0%} of matmul (worst round {worst_batched:.0%}; "
        f"{m['batched_fraction_of_step_gemms']:.0%} of its own GEMMs), loop {m['loop_fraction_of_matmul']:.0%}; "
        f"batched {m['batched_over_loop']:.2f}x loop" + stacked,
        "CPU: >= 80% of matmul",
        # the matmul limit moving by more than 15% within a round (a loaded machine) makes the fraction contention
        _met(m["batched_fraction_of_matmul"] >= 0.8)
        if m.get("batched_matmul_drift", 1.0) <= 1.15
        else f"not measurable (matmul limit drifts {m['batched_matmul_drift']:.2f}x within a round)",
    ]]  # fmt: skip


def _growth(g: dict[str, Any]) -> str:
    if not g:
        return ""
    return (
        f"; {g['events'] // 10:.0e} -> {g['events']:.0e} events (x{g['members']}): peak RSS "
        f"{g['peak_rss_growth_bytes'] / 2**20:+.0f} MiB "
        f"(holding them: {g['holding_the_extra_events_bytes'] / 2**20:.0f} MiB)"
    )


def inference_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 2."""
    cases = r["cases"]
    project = [c for c in cases if c["method"] == "project"]
    big = max(project, key=lambda c: c["events"] * c["members"])
    summary = r["summary"]
    proj = summary["projection_1e4_networks_1e6_events"]
    flat = summary["peak_traced_memory_ratio_10x_events"]
    rss = summary["peak_memory_ratio_10x_events"]
    per_case = "; ".join(
        f"{c['events']:.0e}x{c['members']}: {_num(c['member_events_per_s'])}/s, peak RSS "
        f"+{c['peak_rss_increase_bytes'] / 2**20:.0f} MiB, "
        f"allocations {c['peak_traced_plus_arrow_bytes'] / 2**20:.0f} MiB"
        for c in project
    )
    stacked = summary.get("stacked_speedup_vs_project", {})
    return [
        [
            "2 inference (streamed, 3x64), events x members",
            per_case,
            "allocations at 10x events: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in flat.items())
            + "; peak RSS: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in rss.items())
            + _growth(summary.get("peak_rss_growth_at_largest_10x") or {}),
            "memory flat in events",
            _met(summary.get("memory_flat_in_events")),
        ],
        [
            "2 inference: stacked-members prototype",
            ", ".join(f"{k}: {v:.2f}x the member loop" for k, v in stacked.items()) or "not run",
            "CPU: member loop is faster; GPU: the lever",
            "",
            GPU_PENDING if r["machine"].get("device") == "cpu" else "",
        ],
        [
            "2 inference: 1e4 networks x 1e6 events",
            f"{proj['seconds_at_best_measured_rate_here'] / 3600:.1f} h at {_num(big['member_events_per_s'])}"
            f" member-events/s here; GPU time {GPU_PENDING}",
            f"tiled memory model {proj['gpu_memory_model_bytes'] / 2**30:.1f} GiB",
            "< 16 GB on one GPU",
            _met(proj["fits_16GB"]) + " (model)",
        ],
    ]


def inference_memory_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 2b (``benchmarks/inference.py --memory``): peak memory at 1e5/1e6/1e7 events."""
    cases = sorted((c for c in r["cases"] if c["method"] == "project"), key=lambda c: c["events"])
    ratios = r["summary"]["peak_rss_ratio_10x_events"]
    return [
        [
            f"2 inference memory, {cases[0]['members']} members, steady-state baseline",
            "; ".join(
                f"{c['events']:.0e} events: peak RSS {c['peak_rss_bytes'] / 2**20:.0f} MiB "
                f"(+{c['peak_rss_increase_bytes'] / 2**20:.0f})"
                for c in cases
            ),
            "at 10x events: " + ", ".join(f"{v:.3f}x" for v in ratios.values()),
            "flat within 10%",
            _met(r["summary"].get("memory_flat_in_events")),
        ]
    ]


def model_fit_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 3 (``benchmarks/model_fit.py``)."""
    return [
        [
            f"3 model fit: {r['nuisance_parameters']} nuisance parameters, {r['events']:.2g} unbinned events",
            f"fit {r['fit_seconds_gradient']:.1f} s + Hessian {r['hessian_seconds']:.1f} s, "
            f"{r['scan_points']}-point scan {r['scan_seconds_gradient']:.0f} s "
            f"({r.get('method', 'L-BFGS-B, autograd gradient')}); without "
            f"gradient: fit {r['fit_seconds_no_gradient_projected']:.0f} s (projected)",
            f"{r['fit_seconds_no_gradient_projected'] / r['fit_seconds_gradient']:.0f}x faster with the gradient"
            + (f", {r['fit_speedup_vs_lbfgsb']:.0f}x faster than L-BFGS-B" if "fit_speedup_vs_lbfgsb" in r else ""),
            "fit < 10 s",
            _met(r["fit_under_10s"]),
        ]
    ]


def engine_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 4."""
    measured = f"local {r['local_ms_per_step']:.1f} ms/step ({r['steps']} steps, {r['jobs']} jobs)"
    if "yadage_ms_per_step" not in r:
        return [["4 engine overhead", measured, "yadage not measured", ">= 5x less than yadage", "n/a"]]
    return [
        [
            "4 engine overhead",
            measured + f"; yadage {r['yadage_ms_per_step']:.1f} ms/step",
            f"{r['ratio']:.1f}x less overhead",
            ">= 5x less than yadage",
            _met(r["ratio"] >= 5),
        ]
    ]


def reinterpret_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 5 (written by ``benchmarks/reinterpret.py``)."""
    full, reint = r.get("full_seconds", float("nan")), r.get("reinterpret_seconds", float("nan"))
    measured = f"full {full:.1f} s, reinterpret {reint:.1f} s"
    if "steps" in r:
        measured += f" ({r.get('reran', '?')} of {r['steps']} steps re-ran; {r.get('workflow', '')})"
    ratio = r.get("ratio")
    rows = [
        [
            "5 reinterpretation",
            measured,
            f"{ratio:.1f}x" if isinstance(ratio, int | float) else "n/a",
            ">= 5x; results identical",
            f"ratio: {_met(isinstance(ratio, int | float) and ratio >= 5)}; results: {_met(r.get('results_match'))}",
        ]
    ]
    if "floor_seconds" in r:
        rows.append([
            "5 reinterpretation vs its floor",
            f"reinterpret {reint:.1f} s; the re-run steps took {r['floor_seconds']:.1f} s in the full run "
            f"(critical path {r['floor_critical_path_seconds']:.1f} s, serial {r['floor_serial_seconds']:.1f} s)",
            f"{r['reinterpret_over_floor']:.2f}x the floor",
            "within 20% of the floor",
            _met(r["within_20_percent_of_floor"]),
        ])  # fmt: skip
    if isinstance(r.get("offshell"), dict):
        rows += [[row[0].replace("5 reinterpretation", "5 reinterpretation (off-shell)"), *row[1:]]
                 for row in reinterpret_rows(r["offshell"])]  # fmt: skip
    return rows


def scale_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 6 (written by ``benchmarks/scale.py``)."""
    a, s = r["atlas"], r["summary"]
    ex = r["executor"]
    return [
        [
            f"6 ATLAS-sized example ({a['networks']:,} networks)",
            f"{a['step_instances']:,} pods ({a['training_pods']:,} training), Argo object "
            f"{a['argo_object_bytes'] / 1024:.0f} KiB, largest list {a['largest_list']} ({a['sharded_steps']} steps "
            f"sharded); plan {s['plan_seconds']:.1f} s / {s['plan_peak_mib']:.0f} MiB, compile "
            f"{s['compile_seconds']:.1f} s / {s['compile_peak_mib']:.0f} MiB; gather of {s['gather_members']:,} "
            f"members {s['gather_seconds']:.1f} s / {s['gather_peak_mib']:.0f} MiB",
            f"{a['argo_object_fraction_of_1MiB']:.0%} of 1 MiB; list {a['largest_list']}/1000",
            "< 1 MiB; lists <= 1,000",
            _met(s["argo_object_under_1MiB"] and s["largest_list_within_safe_size"]),
        ],
        [
            "6 local executor, trivial steps",
            "; ".join(f"{e['steps']:,} steps {e['ms_per_step']:.1f} ms/step" for e in ex),
            f"marginal {s['executor_marginal_ms_per_step']:.1f} ms/step at {s['executor_steps']:,} steps, "
            f"{s['executor_overhead_growth']:.2f}x the first",
            "flat in steps (< 1.5x)",
            _met(s["executor_linear"]),
        ],
    ]


def gpu_rows(r: dict[str, Any]) -> list[list[str]]:
    """Figure 7 (written by ``benchmarks/gpu.py`` on a GPU machine; without one it records just that)."""
    if not r.get("gpu_available", True):
        return [["7 GPU", f"no GPU available (checked {r.get('measured', '?')}); the script is ready: "
                 f"`{r.get('command', 'python benchmarks/gpu.py')}` (<= 8 min on one GPU) writes the figures",
                 "", "10x loop; 40% of bf16 matmul; < 16 GB", "not measured: no GPU available"]]  # fmt: skip
    s = r["summary"]
    return [
        [
            f"7 GPU ({s['device_name']})",
            f"3x64 best batched {s['small_best_speedup_vs_loop']:.1f}x loop; 4x1000 "
            f"{s['wide_fraction_of_bf16_matmul']:.0%} of bf16 matmul; 1e4 x 1e6 inference "
            f"{s['inference_1e4x1e6_seconds']:.1f} s, {s['inference_peak_gpu_gib']:.1f} GiB",
            "",
            "10x loop; 40% of bf16 matmul; < 16 GB",
            _met(s["targets_met"]),
        ]
    ]


ROWS = {
    "training": training_rows,
    "training_paired": paired_rows,
    "inference": inference_rows,
    "inference_memory": inference_memory_rows,
    "model_fit": model_fit_rows,
    "engine_overhead": engine_rows,
    "reinterpret": reinterpret_rows,
    "scale": scale_rows,
    "gpu": gpu_rows,
}
NOT_MEASURED = {"gpu": "no GPU available here: `python benchmarks/gpu.py` (<= 8 min on one GPU) writes it"}


def hardware(results: dict[str, dict[str, Any]]) -> str:
    """One line naming the machines the figures came from."""
    seen = []
    for r in results.values():
        m = r.get("machine")
        if not m:
            continue
        line = f"{m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs, device {m.get('device', 'cpu')}, torch {m.get('torch', '?')}"  # noqa: E501
        if line not in seen:
            seen.append(line)
    return "; ".join(seen) or "unknown"


def render(results: dict[str, dict[str, Any]]) -> str:
    """The markdown table (and a line on the hardware)."""
    lines = [
        "| figure | measured | ratio / fraction | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, fn in ROWS.items():
        if name not in results:
            why = NOT_MEASURED.get(name, f"not measured (no results/{name}.json)")
            lines.append(f"| {name} | {why} | | | |")
            continue
        try:
            rows = fn(results[name])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            rows = [[name, f"unreadable result ({type(exc).__name__}: {exc})", "", "", ""]]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    dates = sorted({r.get("measured", "") for r in results.values() if r.get("measured")})
    when = f"{dates[0]} .. {dates[-1]}" if dates else "unknown"
    lines += [
        "",
        f"Hardware: {hardware(results)}. Measured {when}. Timings are medians of repeated runs; every ratio is "
        "measured in one process. GPU figures come from `python benchmarks/gpu.py` on a GPU machine. "
        "Regenerate with `python benchmarks/run_all.py` (or `benchmarks/report.py`).",
    ]
    return "\n".join(lines)


def write_readme(text: str, readme: Path = README) -> bool:
    """Replace the text between the markers; False (nothing written) when they are missing."""
    content = readme.read_text() if readme.exists() else ""
    if START not in content or END not in content or content.index(START) > content.index(END):
        return False
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    return True


def main() -> int:
    """Print the table; write it into the README unless ``--print``."""
    text = render(load())
    print(text)
    if "--print" not in sys.argv:
        if write_readme(text):
            print(f"\nwrote the table into {README.name}")
        else:
            print(f"\n{README.name} has no '{START}' / '{END}' markers: table printed only", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
