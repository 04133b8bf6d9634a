"""A user's own truth-known analysis, as a newcomer would bring it: ROOT ntuples, a model file, a workflow.

Three observables (``mbb``, ``dr``, ``ht``), one signal (``tth``), two backgrounds (``ttbar``, ``wjets``), a
jet-energy-scale shape systematic on ``ttbar`` given as +-1 sigma trees, a +-10 % normalisation-only
systematic on ``wjets``, per-event MC weights (importance-sampled from a broader proposal, summing to the
expected yield), a broad ``reference`` sample, and observed data in a ROOT file. Every density is a
Gaussian mixture, so the exact likelihood is known (``UserTruth``, the ``Truth`` protocol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import uproot

from nsbiflow.physics.offshell import Component, mixture_pdf

OBSERVABLES = ("mbb", "dr", "ht")
YIELDS = {"tth": 60.0, "ttbar": 500.0, "wjets": 300.0}
JES_PER_SIGMA = 0.04
TREE = "Nominal"


def _g(weight: float, mean: Sequence[float], sd: Sequence[float]) -> Component:
    return Component(weight, np.asarray(mean, dtype=float), np.diag(np.asarray(sd, dtype=float) ** 2))


MIXTURES = {
    "tth": [_g(0.8, [120, 1.2, 450], [18, 0.5, 110]), _g(0.2, [150, 1.8, 350], [50, 0.8, 130])],
    "ttbar": [_g(0.6, [140, 2.0, 350], [45, 0.8, 100]), _g(0.4, [100, 2.5, 280], [40, 0.7, 90])],
    "wjets": [_g(0.7, [90, 2.8, 250], [35, 0.6, 70]), _g(0.3, [170, 2.2, 320], [60, 0.8, 100])],
    "reference": [_g(1.0, [130, 2.0, 340], [70, 1.1, 150])],
}


class UserTruth:
    """The exact densities of the user's simulator (``jes`` scales ``mbb`` and ``ht`` of ``ttbar``)."""

    name = "user"

    def observables(self) -> Sequence[str]:
        return OBSERVABLES

    def processes(self) -> Sequence[str]:
        return tuple(MIXTURES)

    def nuisances(self) -> Sequence[str]:
        return ("alpha_jes",)  # named as the model's parameter (the model has no truth section to map it)

    def mixture(self, process: str, nuisances: Mapping[str, float] | None = None) -> list[Component]:
        alpha = float((nuisances or {}).get("alpha_jes", 0.0))
        if process.startswith("ttbar_jes_"):
            process, alpha = "ttbar", alpha + (1.0 if process.endswith("_up") else -1.0)
        if process != "ttbar":
            return MIXTURES[process]
        s = np.diag([1.0 + JES_PER_SIGMA * alpha, 1.0, 1.0 + JES_PER_SIGMA * alpha])
        return [Component(c.weight, s @ c.mean, s @ c.cov @ s) for c in MIXTURES["ttbar"]]

    def density(self, process: str, x: np.ndarray, nuisances: Mapping[str, float] | None = None) -> np.ndarray:
        return mixture_pdf(self.mixture(process, nuisances), np.asarray(x, dtype=float))


def _draw(mixture: list[Component], n: int, rng: np.random.Generator, inflate: float = 1.0) -> np.ndarray:
    w = np.array([c.weight for c in mixture])
    which = rng.choice(len(mixture), size=n, p=w / w.sum())
    x = np.empty((n, 3))
    for k, c in enumerate(mixture):
        sel = which == k
        x[sel] = rng.multivariate_normal(c.mean, c.cov * inflate**2, size=int(sel.sum()))
    return x


def weighted_sample(process: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` events from a 20 % broader proposal with importance weights summing (on average) to the yield."""
    truth = UserTruth()
    target = truth.mixture(process)
    proposal = [Component(c.weight, c.mean, c.cov * 1.2**2) for c in target]
    x = _draw(target, n, rng, inflate=1.2)
    base = process.split("_jes_")[0]
    w = YIELDS.get(base, float(n)) * mixture_pdf(target, x) / mixture_pdf(proposal, x) / n
    return x, w


def observed(rng: np.random.Generator, mu: float = 1.0, jes: float = 0.0) -> np.ndarray:
    """A pseudo-experiment at signal strength ``mu`` and jet energy scale ``jes``."""
    truth = UserTruth()
    parts = []
    for process, nu in YIELDS.items():
        n = int(rng.poisson(nu * (mu if process == "tth" else 1.0)))
        parts.append(_draw(truth.mixture(process, {"alpha_jes": jes}), n, rng))
    x = np.concatenate(parts)
    return x[rng.permutation(len(x))]


def write(path: Path, x: np.ndarray, w: np.ndarray | None = None) -> None:
    """A ROOT file with the TTree ``Nominal`` (the user's own branch names, weight branch ``mc_weight``)."""
    branches = {name: x[:, j] for j, name in enumerate(OBSERVABLES)}
    if w is not None:
        branches["mc_weight"] = w
    with uproot.recreate(str(path)) as handle:
        handle[TREE] = branches


SAMPLES = ("tth", "ttbar", "ttbar_jes_up", "ttbar_jes_down", "wjets", "reference")


def write_ntuples(folder: Path, n_events: int, seed: int = 11) -> None:
    """Every simulated sample and the observed data, as the user's ROOT files under ``folder/ntuples``."""
    rng = np.random.default_rng(seed)
    (folder / "ntuples").mkdir(parents=True, exist_ok=True)
    for name in SAMPLES:
        x, w = weighted_sample(name, n_events, rng)
        write(folder / "ntuples" / f"{name}.root", x, w)
    write(folder / "ntuples" / "data.root", observed(np.random.default_rng(seed + 1)))


MODEL = """\
apiVersion: nsbiflow/v1
kind: Model
metadata: {name: user-tth, description: "one signal, two backgrounds, a JES shape and a W+jets norm systematic"}
parameters:
  mu: {poi: true, init: 1.0, bounds: [0.0, 5.0]}
  alpha_jes: {constraint: gaussian, init: 0.0, bounds: [-5.0, 5.0]}
  xsec_wjets: {constraint: gaussian, init: 0.0, bounds: [-5.0, 5.0]}
ratios:
  tth: {numerator: tth, denominator: reference}
  ttbar: {numerator: ttbar, denominator: reference}
  wjets: {numerator: wjets, denominator: reference}
  ttbar_jes_up: {numerator: ttbar_jes_up, denominator: ttbar}
  ttbar_jes_down: {numerator: ttbar_jes_down, denominator: ttbar}
regions:
  SR:
    type: unbinned
    data: data
    reference: reference
    processes:
      tth:
        sample: tth
        ratio: tth
        yield: {sum_of_weights: true, scale: 2.0}
        coefficient: mu
      ttbar:
        sample: ttbar
        ratio: ttbar
        yield: {sum_of_weights: true, scale: 2.0}
        modifiers:
          - {type: shapesys, parameter: alpha_jes, up: ttbar_jes_up, down: ttbar_jes_down}
      wjets:
        sample: wjets
        ratio: wjets
        yield: {sum_of_weights: true, scale: 2.0}
        modifiers:
          - {type: normsys, parameter: xsec_wjets, lo: 0.9, hi: 1.1}
"""


def workflow(fit_step: bool = True) -> str:
    """The user's workflow: one load-events per ntuple, one ensemble per ratio, infer, fit."""
    lines = [
        "apiVersion: nsbiflow/v1",
        "kind: Workflow",
        "metadata: {name: user-tth}",
        "parameters:",
        "  members: {type: int, default: 3}",
        "  hidden: {type: list, default: [64, 64]}",
        "  ratios:",
        "    type: list",
        "    default: [[tth, reference], [ttbar, reference], [wjets, reference],",
        "              [ttbar_jes_up, ttbar], [ttbar_jes_down, ttbar]]",
        "outputs:",
        "  ratios: infer.ratios",
        *(["  results: fit.results"] if fit_step else []),
        "steps:",
    ]
    for name in (*SAMPLES, "data"):
        lines += [
            f"  load-{name}:",
            "    uses: load-events",
            "    with:",
            f"      process: {name}",
            "      observables: [mbb, dr, ht]",
            f"      tree: {TREE}",
            "      weight_column: " + ('""' if name == "data" else "mc_weight"),
            f"      holdout_fraction: {0.0 if name == 'data' else 0.5}",
            "    inputs:",
            f"      source: {{path: ntuples/{name}.root}}",
        ]
    lines += [
        "  train:",
        "    uses: train-ratio",
        "    foreach: ${{ params.ratios }}",
        "    with:",
        "      label: ${{ item[0] }}",
        "      members: ${{ params.members }}",
        "      hidden: ${{ params.hidden }}",
        "      seed: ${{ 7 + index }}",
        "    inputs:",
        "      numerator: load-${{ item[0] }}.events",
        "      reference: load-${{ item[1] }}.events",
        "  gather:",
        "    uses: gather-ensemble",
        "    inputs: {chunks: train.ensemble}",
        "  infer:",
        "    uses: infer",
        "    inputs:",
        "      ensembles: [gather.ensemble]",
        "      data: load-data.events",
        "      samples:",
        *[f"        - load-{n}.holdout" for n in ("tth", "ttbar", "wjets", "reference")],
    ]
    if fit_step:
        lines += [
            "  fit:",
            "    uses: fit",
            "    with: {methods: [nsbi, histogram]}",
            "    inputs:",
            "      model: {path: model.yaml}",
            "      ratios: [infer.ratios]",
            "      events: [load-ttbar_jes_up.holdout, load-ttbar_jes_down.holdout]  # the histogram method's",
        ]
    return "\n".join(lines) + "\n"


def write_analysis(folder: Path, n_events: int = 40000, fit_step: bool = True) -> Path:
    """The whole user analysis in ``folder``; returns the workflow file."""
    write_ntuples(folder, n_events)
    (folder / "model.yaml").write_text(MODEL)
    path = folder / "workflow.yaml"
    path.write_text(workflow(fit_step))
    return path
