"""The binned methods: each unbinned region as a binned region of one column, and the pyhf export.

Two binned baselines sit next to NSBI:

* ``histogram`` (best raw observable): the region binned in one observable; a ``shapesys`` becomes a
  ``histosys`` of its ratios' numerator samples (the +-1 sigma samples themselves);
* ``discriminant`` (the standard binned analysis): the region binned in a learned discriminant,
  ``D(x) = ln p(x | alt) / p(x | null)`` from the NSBI ratios (``p = sum_p c_p nu_p r_p``; with the POIs at 0
  for the null and at 1 for the alternative this is the log of ``1 / (1 - s/(s+b))``, monotone in the
  familiar ``s/(s+b)``); a ``shapesys`` becomes a ``histosys`` of the nominal sample reweighted by its learned
  +-1 sigma ratios (the very systematic NSBI fits, so both see the same variation).

Both keep every process (sample, yield, coefficient) and yield modifier, drop ``mcstat`` (an ensemble
property), and interpolate the converted shape systematics with ``interpolation`` (default multiplicative
code 4, the NSBI convention; ``code4p`` is pyhf's additive one). Binned regions declared by the model keep
their own settings. ``to_pyhf`` writes the pyhf workspace of a binned model when every coefficient is a number
or a single parameter (pyhf has no expression coefficients) and every constraint is pyhf's (unit Gaussians at
0, lumi); code-4 histosys are written as pyhf histosys (additive code 4p, pyhf has no multiplicative one),
and the note says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from nsbiflow.physics.model.data import Table
from nsbiflow.physics.model.expressions import parse
from nsbiflow.physics.model.likelihood import BinnedTerm, Likelihood
from nsbiflow.physics.model.spec import (
    BinnedRegion,
    HistoSys,
    Lumi,
    McStat,
    Model,
    NormFactor,
    NormSys,
    QuantileBins,
    ShapeSys,
    SumOfWeights,
    UnbinnedRegion,
)

Interpolation = Literal["code4", "code4p"]
DISCRIMINANT = "nsbi_discriminant"


def reweighted_name(sample: str, ratio: str) -> str:
    """The name of ``sample`` reweighted by the ratio ``ratio`` (a variation template of the discriminant)."""
    return f"{sample}__x__{ratio}"


def binned_model(
    model: Model,
    observable: str,
    bins: int,
    interpolation: Interpolation = "code4p",
    variations: Literal["samples", "reweighted"] = "samples",
) -> Model:
    """``model`` with every unbinned region histogrammed in ``observable`` (``bins`` quantile bins).

    ``variations``: the converted shape systematics' templates are the ratios' numerator samples
    (``samples``) or the nominal sample reweighted by the ratios (``reweighted``, see ``reweighted_tables``).
    """
    regions: dict[str, Any] = {}
    for name, region in model.regions.items():
        if not isinstance(region, UnbinnedRegion):
            regions[name] = region
            continue
        processes = {}
        for pname, process in region.processes.items():
            mods: list[Any] = []
            for m in process.modifiers:
                if isinstance(m, ShapeSys):
                    if variations == "reweighted":
                        up, down = reweighted_name(process.sample, m.up), reweighted_name(process.sample, m.down)
                    else:
                        up, down = model.ratios[m.up].numerator, model.ratios[m.down].numerator
                    mods.append(
                        HistoSys(type="histosys", parameter=m.parameter, up=up, down=down, interpolation=interpolation)
                    )
                elif not isinstance(m, McStat):
                    mods.append(m)
            processes[pname] = process.model_copy(update={"ratio": None, "modifiers": mods})
        data = region.data
        regions[name] = BinnedRegion(
            type="binned", observable=observable, edges=QuantileBins(bins=bins), data=data, processes=processes
        )
    return model.model_copy(update={"regions": regions})


def default_observable(model: Model, tables: Mapping[str, Table], observables: list[str]) -> str:
    """The support's observable, else the first observable of the samples."""
    for region in model.regions.values():
        if isinstance(region, UnbinnedRegion) and region.support is not None:
            return region.support.observable
    return observables[0]


def discriminant_tables(
    model: Model, tables: Mapping[str, Table], null: Mapping[str, float], alt: Mapping[str, float]
) -> dict[str, Table]:
    """``tables`` with the column ``nsbi_discriminant`` added where a region needs it, plus the reweighted
    variation samples of every ``shapesys`` (``reweighted_name``).

    ``D = ln sum_p c_p(alt) nu_p r_p(x) - ln sum_p c_p(null) nu_p r_p(x)`` over the unbinned region's processes
    at the nominal nuisance values (``null``/``alt``: parameter values over the model's initial ones). It is
    computed for the region's data, its processes' samples, and nothing else; a sample two unbinned regions
    share gets the first region's discriminant.
    """
    out = dict(tables)
    start = {name: p.start() for name, p in model.parameters.items()}
    done: set[str] = set()
    for region in model.regions.values():
        if not isinstance(region, UnbinnedRegion):
            continue
        terms = []
        for process in region.processes.values():
            expression = parse(process.coefficient)
            y = process.yield_
            nu = float(np.sum(tables[process.sample].weights)) * y.scale if isinstance(y, SumOfWeights) else float(y)
            terms.append(
                (float(expression({**start, **alt})) * nu, float(expression({**start, **null})) * nu, process.ratio)
            )
        names = [p.sample for p in region.processes.values()]
        if isinstance(region.data, str):
            names.append(region.data)
        for sample in dict.fromkeys(names):
            if sample in done or sample not in tables:
                continue
            t = tables[sample]
            numerator = sum(a * np.exp(t.col(f"logr_{ratio}")) for a, _, ratio in terms)
            denominator = sum(b * np.exp(t.col(f"logr_{ratio}")) for _, b, ratio in terms)
            d = np.log(np.maximum(numerator, 1e-300)) - np.log(np.maximum(denominator, 1e-300))
            out[sample] = Table(t.name, {**t.columns, DISCRIMINANT: np.asarray(d, dtype=np.float64)}, dict(t.meta))
            done.add(sample)
        for process in region.processes.values():
            for m in process.modifiers:
                if isinstance(m, ShapeSys):
                    base = out[process.sample]
                    for label in (m.up, m.down):
                        name = reweighted_name(process.sample, label)
                        w = base.weights * np.exp(base.col(f"logr_{label}"))
                        out[name] = Table(name, {**base.columns, "weight": w}, dict(base.meta))
    return out


def to_pyhf(like: Likelihood) -> tuple[dict[str, Any] | None, str]:
    """The pyhf workspace of a binned-only likelihood's model and data, or ``None`` and the reason."""
    model = like.model
    channels, observations = [], []
    used: dict[str, str] = {}
    for term in like.regions:
        if not isinstance(term, BinnedTerm):
            return None, f"region {term.name} is unbinned"
        samples = []
        for (pterm, nominal), (pname, process) in zip(term.processes, term.spec.processes.items(), strict=True):
            expression = parse(process.coefficient)
            data = nominal.numpy().copy()
            mods: list[dict[str, Any]] = []
            names = sorted(expression.names)
            if not names:
                data = data * float(expression({}))
            elif len(names) == 1 and expression.text.strip() == names[0]:
                mods.append({"name": names[0], "type": "normfactor", "data": None})
                used[names[0]] = "normfactor"
            else:
                return None, f"coefficient {expression.text!r} of {term.name}/{pname} is not a pyhf modifier"
            shapes = [h for h in process.modifiers if isinstance(h, HistoSys)]
            for h, bin_term in zip(shapes, pterm.bin_terms, strict=True):
                mods.append(
                    {
                        "name": h.parameter,
                        "type": "histosys",
                        "data": {"hi_data": bin_term.up.tolist(), "lo_data": bin_term.down.tolist()},
                    }
                )
                used[h.parameter] = "histosys"
            for m in process.modifiers:
                if isinstance(m, NormSys):
                    mods.append({"name": m.parameter, "type": "normsys", "data": {"hi": m.hi, "lo": m.lo}})
                    used[m.parameter] = "normsys"
                elif isinstance(m, NormFactor):
                    mods.append({"name": m.parameter, "type": "normfactor", "data": None})
                    used[m.parameter] = "normfactor"
                elif isinstance(m, Lumi):
                    mods.append({"name": m.parameter, "type": "lumi", "data": None})
                    used[m.parameter] = "lumi"
            samples.append({"name": pname, "data": [float(v) for v in data], "modifiers": mods})
        channels.append({"name": term.name, "samples": samples})
        observations.append({"name": term.name, "data": [float(v) for v in term.counts.numpy()]})
    config: list[dict[str, Any]] = []
    for name, kind in used.items():
        p = model.parameters[name]
        g = p.gaussian()
        entry: dict[str, Any] = {"name": name, "bounds": [list(p.limits())], "inits": [p.start()]}
        if p.fixed:
            entry["fixed"] = True
        if kind == "lumi":
            if g is None:
                return None, f"lumi parameter {name} needs a Gaussian constraint"
            entry.update({"auxdata": [p.center()], "sigmas": [g.sigma]})
        elif kind in ("normsys", "histosys"):
            if g is None or g.sigma != 1.0 or p.center() != 0.0:
                return None, f"{name}: pyhf's {kind} is a unit Gaussian at 0"
        elif g is not None:
            return None, f"{name}: a constrained normfactor has no pyhf form"
        config.append(entry)
    pois = model.pois()
    spec = {
        "version": "1.0.0",
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": model.metadata.name, "config": {"poi": pois[0], "parameters": config}}],
    }
    return spec, ""
