"""How calibrate's closure gates score the *exact* ratio (their null distribution) and degraded ones (power).

On the analytic toy, at the workflow's held-out sizes (20 000 events per sample, unit weights), for the three
kinds of ratio the toy trains (signal / reference, background / reference, background_up / background) and
``--seeds`` independent sample pairs:

* the closure in bins of the learned ratio (``diagnostics.ratio_closure``): its z-score;
* the classifier two-sample test (``diagnostics.two_sample``): its z-score ``(AUC - 0.5) / error``;
* the old 1-D marginal closure: its worst chi2/ndf (for comparison with its tolerance 3);

and, for the signal ratio, the same statistics of tempered ratios ``r ** k`` (k = 0.96, 1.03, 1.05: a learned
ratio that under- or overshoots where it is largest). The rule in docs/physics.md (tolerance z = 3.09) rests on
the first block: z-scores of mean ~0 and spread ~1 under the exact ratio.

    .venv/bin/python benchmarks/closure_null.py            # 30 seeds (~10 min on 2 idle cores)
    .venv/bin/python benchmarks/closure_null.py --quick    # 2 seeds, 5 000 events
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

from nsbiflow.physics import diagnostics
from nsbiflow.physics.toy_model import ToyModel

PAIRS = [("signal", "reference"), ("background", "reference"), ("background_up", "background")]
TEMPERED = [0.96, 1.03, 1.05]
TOLERANCE = diagnostics.Tolerances()


def _score(x_num: np.ndarray, x_ref: np.ndarray, lr_num: np.ndarray, lr_ref: np.ndarray, seed: int) -> dict[str, Any]:
    w_num, w_ref = np.ones(len(x_num)), np.ones(len(x_ref))
    r = np.exp(lr_ref)
    norm = r.mean()
    closure = diagnostics.closure(x_num, w_num, x_ref, w_ref, r / norm, [f"x{j}" for j in range(x_num.shape[1])])
    two = diagnostics.two_sample(x_num, w_num, x_ref, w_ref, r / norm, seed=seed)
    assert two is not None
    return {
        "ratio_closure_z": diagnostics.ratio_closure(lr_num, w_num, lr_ref, w_ref, r / norm)["z"],
        "two_sample_z": two["z"],
        "marginal_max_chi2_ndf": max(c["chi2_ndf"] for c in closure.values()),
        "normalisation": float(norm),
    }


def _summary(values: list[float], tolerance: float | None = None) -> dict[str, float]:
    a = np.asarray(values)
    out = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "max": float(a.max())}
    if tolerance is not None:
        out["fraction_above_tolerance"] = float(np.mean(a > tolerance))
    return out


def main() -> int:
    """Measure and write ``benchmarks/results/closure_null.json``."""
    small = quick()
    seeds = 2 if small else int(next((a.split("=")[1] for a in sys.argv if a.startswith("--seeds=")), "30"))
    n = 5000 if small else 20000
    toy = ToyModel()
    start = time.perf_counter()
    null: dict[str, list[dict[str, Any]]] = {f"{a}/{b}": [] for a, b in PAIRS}
    tempered: dict[str, list[dict[str, Any]]] = {str(k): [] for k in TEMPERED}
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 9001])
        for num, den in PAIRS:
            x_num, x_ref = toy.sample(num, n, rng), toy.sample(den, n, rng)
            lr_num, lr_ref = toy.log_ratio(num, den, x_num), toy.log_ratio(num, den, x_ref)
            null[f"{num}/{den}"].append(_score(x_num, x_ref, lr_num, lr_ref, seed))
            if num == "signal":
                for k in TEMPERED:
                    tempered[str(k)].append(_score(x_num, x_ref, k * lr_num, k * lr_ref, seed))
        print(f"seed {seed + 1}/{seeds} done ({time.perf_counter() - start:.0f} s)", flush=True)

    def block(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ratio_closure_z": _summary([r["ratio_closure_z"] for r in runs], TOLERANCE.max_ratio_closure_z),
            "two_sample_z": _summary([r["two_sample_z"] for r in runs], TOLERANCE.max_two_sample_z),
            "marginal_max_chi2_ndf": _summary([r["marginal_max_chi2_ndf"] for r in runs], TOLERANCE.max_chi2_ndf),
            "normalisation_deviation": _summary([abs(r["normalisation"] - 1) for r in runs], 0.1),
        }

    payload: dict[str, Any] = {
        "events_per_sample": n,
        "seeds": seeds,
        "tolerance_z": TOLERANCE.max_ratio_closure_z,
        "exact": {k: block(v) for k, v in null.items()},
        "tempered_signal": {k: block(v) for k, v in tempered.items()},
        "seconds": time.perf_counter() - start,
    }
    rows = []
    for name, b in [
        *(("exact " + k, v) for k, v in payload["exact"].items()),
        *(("signal r^" + k, v) for k, v in payload["tempered_signal"].items()),
    ]:
        rows.append(
            [
                name,
                b["ratio_closure_z"]["mean"],
                b["ratio_closure_z"]["std"],
                b["two_sample_z"]["mean"],
                b["two_sample_z"]["std"],
                b["marginal_max_chi2_ndf"]["mean"],
                b["marginal_max_chi2_ndf"]["max"],
            ]
        )
    print(
        table(
            "closure gates under the exact and tempered ratios",
            ["ratio", "rc z mean", "rc z std", "2s z mean", "2s z std", "1-D chi2/ndf mean", "max"],
            rows,
        )
    )
    write_result("closure_null_quick" if small else "closure_null", payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
