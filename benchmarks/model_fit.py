"""Figure 3: fits of a declared model with many nuisance parameters on many unbinned events.

One unbinned region of the 5-D toy (1e6 observed events; 1 % signal scaled by ``mu``) whose background
carries 10 shape systematics (per-event code-4 interpolation of smooth +-1 sigma log-ratios, normalised
over a 2e5-event background sample at every parameter point) and 40 normalisation systematics: 50
nuisance parameters. The toy's exact log-ratios stand in for an ensemble's (the fit costs the same).
Timed on one thread (as the fit step runs), per phase:

- **fit**: Newton's method with the likelihood's *exact* Hessian (``Likelihood.jet``: value, gradient and
  Hessian in one chunked pass over the events), from the model's initial values;
- **hessian**: the errors' Hessian at the minimum, the same exact one (one pass); its ``mu`` column is
  checked against central differences of the autograd gradient;
- **scan**: 50 profile points of ``mu`` over +-3 sigma, each warm-started from its neighbour (Newton, exact
  Hessian);
- **reference**: the previous method on the same likelihood -- L-BFGS-B with the autograd gradient -- for
  the same minimum (its distance in sigma) and the speed-up; one L-BFGS-B scan point for the scan's;
- **without gradients**: L-BFGS-B with finite-difference gradients (51 values per gradient), *projected*
  from the measured time of one value and the iteration counts of the gradient L-BFGS-B runs (one such
  gradient is timed for real); converging that way took 5564 calls and 153 s at quick size, 110x the
  gradient fit, when measured in full;
- **threads**: one exact pass on 1 and on 2 threads.

Run quietly: ``.venv/bin/python benchmarks/model_fit.py`` (about 3 minutes on the 2-core machine) writes
``benchmarks/results/model_fit.json``; the per-call times let a loaded machine's figures be rescaled.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import quick, table, write_result

N_SCAN = 50
N_SHAPE, N_NORM = 10, 40


def model_document() -> dict[str, Any]:
    """The benchmark's model: mu, 10 shape and 40 normalisation nuisance parameters."""
    params: dict[str, Any] = {"mu": {"poi": True, "init": 1.0, "bounds": [-2.0, 5.0]}}
    ratios: dict[str, Any] = {
        "signal": {"numerator": "signal", "denominator": "reference"},
        "background": {"numerator": "background", "denominator": "reference"},
    }
    mods: list[dict[str, Any]] = []
    for k in range(N_SHAPE):
        params[f"shape{k}"] = {}
        ratios[f"shape{k}_up"] = {"numerator": f"shape{k}_up", "denominator": "background"}
        ratios[f"shape{k}_down"] = {"numerator": f"shape{k}_down", "denominator": "background"}
        mods.append({"type": "shapesys", "parameter": f"shape{k}", "up": f"shape{k}_up", "down": f"shape{k}_down"})
    for k in range(N_NORM):
        params[f"norm{k}"] = {}
        mods.append({"type": "normsys", "parameter": f"norm{k}", "lo": 1 - 0.002 * (k + 1), "hi": 1 + 0.0025 * (k + 1)})
    return {
        "apiVersion": "nsbiflow/v1",
        "kind": "Model",
        "metadata": {"name": "bench"},
        "parameters": params,
        "ratios": ratios,
        "regions": {
            "SR": {
                "type": "unbinned",
                "data": "observed",
                "reference": "reference",
                "processes": {
                    "signal": {"sample": "signal", "ratio": "signal", "yield": 0.01 * N_EVENTS, "coefficient": "mu"},
                    "background": {
                        "sample": "background",
                        "ratio": "background",
                        "yield": 0.99 * N_EVENTS,
                        "modifiers": mods,
                    },
                },
            }
        },
    }


def tables(n_events: int, n_sample: int, seed: int = 0) -> dict[str, Any]:
    """Observed events and the held-out samples with exact signal/background ratios and synthetic shapes."""
    from nsbiflow.physics.model.data import Table
    from nsbiflow.physics.toy_model import ToyModel

    toy = ToyModel()
    rng = np.random.default_rng(seed)

    def table(name: str, x: np.ndarray) -> Table:
        cols = {f"x{j}": x[:, j] for j in range(5)}
        cols["logr_signal"] = toy.log_ratio("signal", "reference", x)
        cols["logr_background"] = toy.log_ratio("background", "reference", x)
        for k in range(N_SHAPE):  # a smooth, small shape effect per systematic
            slope = 0.02 * (1 + k % 3) * np.tanh(x[:, k % 5] + 0.1 * k)
            cols[f"logr_shape{k}_up"] = slope
            cols[f"logr_shape{k}_down"] = -0.9 * slope
        return Table(name, cols)

    observed = toy.sample_mixture(int(0.01 * n_events), n_events - int(0.01 * n_events), rng)
    return {
        "observed": table("observed", observed),
        "signal": table("signal", toy.sample("signal", n_sample, rng)),
        "background": table("background", toy.sample("background", n_sample, rng)),
        "reference": table("reference", toy.sample("reference", 1000, rng)),
    }


N_EVENTS = 20_000 if quick() else 1_000_000


def _timed(fn: Any) -> tuple[Any, float, float]:
    """``fn()``, its wall and CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - t0, time.process_time() - c0


def _per_call(like: Any, x: np.ndarray) -> dict[str, float]:
    """Seconds per value, value-and-gradient and exact pass (value, gradient, Hessian): median of 3."""
    out = {}
    for key, fn in (
        ("seconds_per_value", lambda: like.value(x)),
        ("seconds_per_value_and_gradient", lambda: like.value_and_grad(x)),
        ("seconds_per_exact_hessian_pass", lambda: like.jet(x)),
    ):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[key] = float(np.median(times))
    return out


def main() -> None:
    """Time the fits and write ``benchmarks/results/model_fit.json``."""
    import torch
    from threadpoolctl import threadpool_limits

    from nsbiflow.physics.model import fit
    from nsbiflow.physics.model.likelihood import Likelihood
    from nsbiflow.physics.model.loader import model_from_data
    from nsbiflow.physics.model.threads import single_thread

    q = quick()
    n_sample = 5_000 if q else 200_000
    start = time.perf_counter()
    data = tables(N_EVENTS, n_sample)
    like = Likelihood(model_from_data(model_document()), data)
    setup = time.perf_counter() - start
    out: dict[str, Any] = {
        "events": N_EVENTS,
        "normalisation_events": n_sample,
        "nuisance_parameters": 50,
        "shape_systematics": N_SHAPE,
        "norm_systematics": N_NORM,
        "scan_points": N_SCAN,
        "setup_seconds": setup,
        "method": "Newton with the exact Hessian (one chunked pass per iteration: value, gradient, Hessian)",
        "errors_from": "the exact Hessian at the minimum (analytic, not Gauss-Newton)",
        "no_gradient_figures": "projected: L-BFGS-B iterations of the gradient runs x 51 values x seconds per value",
    }
    x0 = like.parameters.init
    with single_thread():
        like.jet(x0)  # warm-up: first-touch allocations
        out.update(_per_call(like, x0))
        out["twice_nll_at_init"] = like.value(x0)
        best, out["fit_seconds_gradient"], out["fit_cpu_seconds_gradient"] = _timed(lambda: fit.minimise(like))
        out["fit_calls_gradient"] = best.calls
        print(f"fit {out['fit_seconds_gradient']:.2f} s, {best.calls} exact passes", file=sys.stderr, flush=True)
        curvature: list[fit.Curvature] = []
        (free, cov), out["hessian_seconds"], _ = _timed(lambda: fit.covariance(like, best.x, curvature))
        out["mu_hat"], out["mu_error"] = float(best.x[0]), float(np.sqrt(cov[0, 0]))
        sigma = np.sqrt(np.diag(cov))
        # the exact Hessian's mu column against central differences of the autograd gradient
        step = 1e-4
        up, down = best.x.copy(), best.x.copy()
        up[0] += step
        down[0] -= step
        column = (like.value_and_grad(up)[1] - like.value_and_grad(down)[1]) / (2 * step)
        exact_column = curvature[0].hessian[:, 0]
        out["hessian_mu_column_max_rel_diff_vs_finite_differences"] = float(
            np.max(np.abs(column[free] - exact_column)) / np.max(np.abs(exact_column))
        )
        profile = fit.Profile(like, best)  # no fixed curvature: exact Newton steps at every point
        grid = np.linspace(best.x[0] - 3 * out["mu_error"], best.x[0] + 3 * out["mu_error"], N_SCAN)
        scan, out["scan_seconds_gradient"], out["scan_cpu_seconds_gradient"] = _timed(
            lambda: [profile.t({"mu": float(m)}) for m in grid]
        )
        out["scan_calls"] = sum(m.calls for m in profile.cache.values())
        out["scan_t_max"] = float(max(scan))
        print(f"scan {out['scan_seconds_gradient']:.2f} s, {out['scan_calls']} passes", file=sys.stderr, flush=True)
        # the reference: L-BFGS-B with the autograd gradient (the previous method), same likelihood
        slow = like.copy(exact_hessian=False)
        ref, out["fit_seconds_lbfgsb"], _ = _timed(lambda: fit.minimise(slow))
        out["fit_calls_lbfgsb"] = ref.calls
        out["fit_speedup_vs_lbfgsb"] = out["fit_seconds_lbfgsb"] / out["fit_seconds_gradient"]
        out["max_abs_shift_vs_lbfgsb_in_sigma"] = float(np.max(np.abs(best.x[free] - ref.x[free]) / sigma))
        out["twice_nll_newton_minus_lbfgsb"] = best.twice_nll - ref.twice_nll
        print(f"L-BFGS-B fit {out['fit_seconds_lbfgsb']:.2f} s, {ref.calls} calls", file=sys.stderr, flush=True)
        plain = fit.Profile(slow, ref)
        pick = float(grid[N_SCAN // 2 + 3])
        point, seconds, _ = _timed(lambda: plain.at({"mu": pick}))
        out["scan_seconds_lbfgsb_projected"] = seconds * N_SCAN
        out["scan_point_calls_lbfgsb"] = point.calls
        out["scan_point_t_diff_newton_vs_lbfgsb"] = abs(plain.t({"mu": pick}) - profile.t({"mu": pick}))
        # without the gradient every L-BFGS-B iteration needs a finite-difference gradient: 51 values
        per_gradient = (len(free) + 1) * out["seconds_per_value"]
        out["fit_seconds_no_gradient_projected"] = ref.calls * per_gradient
        out["scan_seconds_no_gradient_projected"] = N_SCAN * point.calls * per_gradient
        xs = best.x.copy()
        t0 = time.perf_counter()
        for i in range(len(xs)):  # one forward-difference gradient, timed for real
            xs[i] += 1e-6
            like.value(xs)
            xs[i] -= 1e-6
        out["seconds_per_finite_difference_gradient"] = time.perf_counter() - t0
    # threads: one exact pass on 2 torch/BLAS threads against 1
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2):
        like.jet(best.x)
        _, two, _ = _timed(lambda: like.jet(best.x))
    torch.set_num_threads(before)
    with single_thread():
        _, one, _ = _timed(lambda: like.jet(best.x))
    out["seconds_per_exact_pass_1_thread"], out["seconds_per_exact_pass_2_threads"] = one, two
    out["fit_under_10s"] = out["fit_seconds_gradient"] < 10
    out["fit_cpu_under_10s"] = out["fit_cpu_seconds_gradient"] < 10
    out["uptime"] = _uptime()
    print(table("model fit (50 nuisance parameters)", ["figure", "value"], [[k, v] for k, v in out.items()]))
    write_result("model_fit" + ("_quick" if q else ""), out)


def _uptime() -> str:
    """``uptime``'s line (the machine's load while measuring)."""
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    main()
