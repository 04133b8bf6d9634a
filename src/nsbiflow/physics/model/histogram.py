"""The histogram method: each unbinned region as a binned region of one observable, and the pyhf export.

The binned counterpart keeps every process (sample, yield, coefficient) and yield modifier; a ``shapesys``
becomes a ``histosys`` of its ratios' numerator samples (the +-1 sigma samples themselves); ``mcstat`` (an
ensemble property) is dropped. Binned regions then use pyhf's semantics, and ``to_pyhf`` writes the pyhf
workspace of a binned model when every coefficient is a number or a single parameter (pyhf has no
expression coefficients) and every constraint is pyhf's (unit Gaussians at 0, lumi).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    UnbinnedRegion,
)


def binned_model(model: Model, observable: str, bins: int) -> Model:
    """``model`` with every unbinned region histogrammed in ``observable`` (``bins`` quantile bins)."""
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
                    up, down = model.ratios[m.up].numerator, model.ratios[m.down].numerator
                    mods.append(HistoSys(type="histosys", parameter=m.parameter, up=up, down=down))
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
