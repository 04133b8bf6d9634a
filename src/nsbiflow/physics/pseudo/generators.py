"""Pseudo-data at a parameter point: a simulator's own generator, or Poisson resampling of held-out events.

A generator is a function of a random generator that returns one pseudo-dataset: region name -> the events'
observables (unbinned regions; binned regions get the events of their observable). The expected counts are the
model's at the point (coefficients, yields and normalisation modifiers, read off the NSBI likelihood), the shapes
the simulator's at its nuisance values (``truth.nuisances`` maps model parameters to simulator names).

One registry owns the simulator generators (like ``physics/truth.py`` owns their densities): ``toy`` and
``offshell`` are bundled; ``register_generator`` adds another. A model without a truth is resampled from its
held-out samples (``holdout_generator``): shapes only at nominal or at exactly +-1 sigma of a shape systematic
(its varied sample), since nothing else is simulated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.model.data import Table, concatenate
from nsbiflow.physics.model.likelihood import BinnedTerm, Likelihood, UnbinnedTerm
from nsbiflow.physics.model.spec import Model, ShapeSys

FloatArray = NDArray[np.float64]
DataFn = Callable[[np.random.Generator], dict[str, FloatArray]]
"""One pseudo-dataset: region -> events (rows) x observables (the truth's observables, in its order)."""
Factory = Callable[[Model, Any, Likelihood, Mapping[str, float]], DataFn]

_GENERATORS: dict[str, Factory] = {}


def register_generator(name: str, factory: Factory) -> None:
    """Register the pseudo-data generator of simulator ``name`` (the truth of the same name)."""
    _GENERATORS[name] = factory


def has_generator(name: str) -> bool:
    """Whether simulator ``name`` has a registered generator."""
    return name in _GENERATORS


def generator(model: Model, truth: Any, like: Likelihood, values: Mapping[str, float]) -> DataFn:
    """The simulator generator of ``model``'s truth at ``values`` (a one-line error when there is none)."""
    assert model.truth is not None
    factory = _GENERATORS.get(model.truth.simulator)
    if factory is None:
        raise StageError(
            f"toys: simulator {model.truth.simulator!r} has no pseudo-data generator "
            f"(known: {', '.join(sorted(_GENERATORS))}); set source: holdout"
        )
    return factory(model, truth, like, values)


def expected_counts(like: Likelihood, values: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Region -> process -> expected events at ``values`` (every modifier that scales a yield included)."""
    theta = like.point(values)
    scope = like.scope(theta)
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for term in like.regions:
            if isinstance(term, UnbinnedTerm):
                out[term.name] = {p.name: float(p.scale(theta, scope)) for p in term.processes}
            else:
                out[term.name] = {p.name: float(p.scale(theta, scope) * h.sum()) for p, h in term.processes}
    return out


def yield_factors(like: Likelihood, values: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Region -> process -> yield factor at ``values`` relative to the same POIs with the nuisances at their init."""
    pois = {k: v for k, v in values.items() if k in like.parameters.pois}
    at, base = expected_counts(like, values), expected_counts(like, pois)
    return {r: {p: (at[r][p] / base[r][p] if base[r][p] else 1.0) for p in at[r]} for r in at}


def simulator_nuisances(model: Model, truth: Any, values: Mapping[str, float]) -> dict[str, float]:
    """The simulator's nuisance values (its own names) at the model parameters ``values``."""
    mapping = model.truth.nuisances if model.truth is not None else {}
    known = set(truth.nuisances())
    return {mapping.get(k, k): float(v) for k, v in values.items() if mapping.get(k, k) in known}


def _shuffled(parts: list[FloatArray], rng: np.random.Generator, width: int) -> FloatArray:
    x = np.concatenate(parts) if parts else np.empty((0, width))
    return x[rng.permutation(len(x))]


def _toy(model: Model, truth: Any, like: Likelihood, values: Mapping[str, float]) -> DataFn:
    """The analytic 5-D toy: each process drawn at its expected count, the background at the detector scale."""
    counts = expected_counts(like, values)
    alpha = simulator_nuisances(model, truth, values).get("alpha", 0.0)
    names = model.truth.processes if model.truth is not None else {}
    for region, term in zip(counts, like.regions, strict=True):
        if isinstance(term, BinnedTerm):
            raise StageError(f"toys: the toy generator draws unbinned regions only; region {region!r} is binned")

    def draw(rng: np.random.Generator) -> dict[str, FloatArray]:
        out = {}
        for region, per_process in counts.items():
            parts = [
                truth.model.sample(names.get(p, p), int(rng.poisson(max(n, 0.0))), rng, alpha=alpha)
                for p, n in per_process.items()
            ]
            out[region] = _shuffled(parts, rng, truth.model.n_dim)
        return out

    return draw


def _offshell(model: Model, truth: Any, like: Likelihood, values: Mapping[str, float]) -> DataFn:
    """The off-shell toy: the gg total at mu (interference included) and qqZZ; qqZZ alone in binned regions.

    The simulator's yields are the truth's; the normalisation modifiers (gg QCD scale, the qqZZ normalisation,
    luminosity) scale them by the model's factors at the point (``SBI`` carries the gg ones, ``qqZZ`` the qq).
    """
    poi = like.parameters.pois[0]
    mu = float(values.get(poi, like.parameters.init[like.index[poi]]))
    nuisances = simulator_nuisances(model, truth, values)
    factors = yield_factors(like, values)
    unbinned = [t.name for t in like.regions if isinstance(t, UnbinnedTerm)]
    binned = [t.name for t in like.regions if isinstance(t, BinnedTerm)]
    sr = factors[unbinned[0]] if unbinned else {}
    gg, qq = sr.get("SBI", 1.0), sr.get("qqZZ", 1.0)

    def draw(rng: np.random.Generator) -> dict[str, FloatArray]:
        out: dict[str, FloatArray] = {}
        for region in unbinned:
            out[region] = truth.sample_observed(rng, mu, nuisances, gg_factor=gg, qq_factor=qq)[0]
        for region in binned:
            out[region] = truth.sample_observed_cr(rng, nuisances, qq_factor=qq)
        return out

    return draw


register_generator("toy", _toy)
register_generator("offshell", _offshell)


def _varied_sample(model: Model, region: str, process: str, values: Mapping[str, float]) -> str:
    """The sample whose shape is the process's at ``values``: nominal, or a shape systematic's +-1 sigma one."""
    spec = model.regions[region].processes[process]
    chosen = spec.sample
    for modifier in spec.modifiers:
        if not isinstance(modifier, ShapeSys):
            continue
        value = float(values.get(modifier.parameter, 0.0))
        if value == 0.0:
            continue
        if value not in (1.0, -1.0) or chosen != spec.sample:
            raise StageError(
                f"toys: held-out resampling draws {process!r} at nominal or at one shape systematic's +-1 sigma "
                f"sample only, not {modifier.parameter}={value:g}; declare a truth with a generator"
            )
        chosen = model.ratios[modifier.up if value > 0 else modifier.down].numerator
    return chosen


def holdout_generator(
    model: Model, like: Likelihood, tables: Mapping[str, Table], values: Mapping[str, float]
) -> Callable[[np.random.Generator], dict[str, Table]]:
    """Poisson(expected) events per process, drawn (with replacement, probability ~ weight) from held-out samples.

    The tables already carry the ratios (``infer`` evaluated them), so a toy costs only an index draw.
    """
    counts = expected_counts(like, values)
    pools: dict[str, dict[str, tuple[Table, FloatArray]]] = {}
    for term in like.regions:
        if isinstance(term, BinnedTerm):
            raise StageError(f"toys: held-out resampling covers unbinned regions only; region {term.name!r} is binned")
        pools[term.name] = {}
        for p in term.processes:
            name = _varied_sample(model, term.name, p.name, values)
            if name not in tables:
                raise StageError(f"toys: no sample {name!r} among the inputs to resample {p.name!r} from")
            w = tables[name].weights
            if np.any(w < 0):
                raise StageError(f"toys: sample {name!r} has negative weights; resampling needs a truth generator")
            pools[term.name][p.name] = (tables[name], w / w.sum())

    def draw(rng: np.random.Generator) -> dict[str, Table]:
        out = {}
        for region, per_process in pools.items():
            parts = []
            for process, (pool, prob) in per_process.items():
                n = int(rng.poisson(max(counts[region][process], 0.0)))
                parts.append(pool.take(rng.choice(len(pool), size=n, p=prob)))
            joined = concatenate(parts, "toy")
            joined.columns["weight"] = np.ones(len(joined))
            out[region] = joined
        return out

    return draw
