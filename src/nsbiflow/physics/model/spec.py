"""The statistical model file (``kind: Model``): pydantic v2 models, the single source of truth of its schema.

The unbinned counterpart of a pyhf workspace: parameters (of interest and nuisance), the ratio ensembles the
workflow trains (label -> numerator / denominator sample), and regions -- unbinned (NSBI) regions whose
processes have a per-event ratio, and binned regions with pyhf's modifier semantics -- each with processes,
their yields, coefficients (expressions of the parameters) and modifiers. ``docs/model.md`` documents every
field and the formulas; ``references`` lists the cross-reference errors (unknown parameter, ratio, ...)
with the path of the offending value, so the loader can point at the line.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nsbiflow.physics.model.expressions import ExpressionError, parse

NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
PARAMETER = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME, max_length=128)]
ParameterName = Annotated[str, Field(pattern=PARAMETER, max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    """Who the model is."""

    name: Name = Field(description="name of the model")
    description: str = Field("", description="free text")


class GaussianConstraint(_Strict):
    """A Gaussian auxiliary measurement of the parameter: ``((theta - center) / sigma)^2`` in ``-2 ln L``."""

    type: Literal["gaussian"] = "gaussian"
    sigma: float = Field(1.0, gt=0, description="width of the constraint (1 for a +-1 sigma nuisance)")
    center: float | None = Field(None, description="auxiliary measurement (nominal value); default: the init value")


class Parameter(_Strict):
    """One parameter of the fit."""

    poi: bool = Field(False, description="a parameter of interest")
    init: float | None = Field(None, description="starting value; default 1 (free) or the constraint centre / 0")
    bounds: tuple[float, float] | None = Field(
        None, description="allowed range; default [0, 10] for a free parameter, centre +-5 sigma for a constrained one"
    )
    constraint: Literal["gaussian", "none"] | GaussianConstraint | None = Field(
        None,
        description="'gaussian' (unit width), 'none' (free), or {type: gaussian, sigma, center}; "
        "default: none for a parameter of interest, a unit Gaussian for a nuisance parameter",
    )
    fixed: bool = Field(False, description="held at init in every fit")
    description: str = Field("", description="free text")

    def gaussian(self) -> GaussianConstraint | None:
        """The Gaussian constraint, or ``None`` for a free parameter."""
        c = self.constraint if self.constraint is not None else ("none" if self.poi else "gaussian")
        if c == "none":
            return None
        if c == "gaussian":
            return GaussianConstraint()
        assert isinstance(c, GaussianConstraint)
        return c

    def center(self) -> float:
        """The auxiliary measurement's nominal value (constrained), or the starting value (free)."""
        g = self.gaussian()
        if g is not None and g.center is not None:
            return g.center
        if self.init is not None:
            return self.init
        return 0.0 if g is not None else 1.0

    def start(self) -> float:
        """The starting value of every fit."""
        return self.init if self.init is not None else self.center()

    def limits(self) -> tuple[float, float]:
        """The allowed range."""
        if self.bounds is not None:
            return (float(self.bounds[0]), float(self.bounds[1]))
        g = self.gaussian()
        if g is None:
            return (0.0, 10.0)
        return (self.center() - 5 * g.sigma, self.center() + 5 * g.sigma)

    @model_validator(mode="after")
    def _check(self) -> Parameter:
        lo, hi = self.limits()
        if not lo < hi:
            raise ValueError(f"bounds [{lo}, {hi}] are empty: the lower bound must be below the upper")
        if not lo <= self.start() <= hi:
            raise ValueError(f"init {self.start()} is outside the bounds [{lo}, {hi}]")
        return self


class Ratio(_Strict):
    """An ensemble the workflow trains: ``log r = log p_numerator / p_denominator``."""

    numerator: Name = Field(description="sample of the numerator")
    denominator: Name = Field(description="sample of the denominator")
    description: str = ""


class SumOfWeights(_Strict):
    """The yield is the sum of the sample's event weights times ``scale``."""

    sum_of_weights: Literal[True] = Field(description="take the yield from the sample's weights")
    scale: float = Field(1.0, description="multiplies the sum of weights (e.g. luminosity x cross-section)")


Yield = float | SumOfWeights


class NormFactor(_Strict):
    """Multiplies the yield by a free parameter (pyhf ``normfactor``)."""

    type: Literal["normfactor"]
    parameter: ParameterName


class NormSys(_Strict):
    """Normalisation systematic: factor ``hi^theta`` / ``lo^-theta`` with code-4 interpolation (pyhf ``normsys``)."""

    type: Literal["normsys"]
    parameter: ParameterName
    lo: float = Field(gt=0, description="yield factor at theta = -1")
    hi: float = Field(gt=0, description="yield factor at theta = +1")


class Lumi(_Strict):
    """Multiplies the yield by the luminosity parameter (pyhf ``lumi``; constrain it with sigma = lumi uncertainty)."""

    type: Literal["lumi"]
    parameter: ParameterName


class ShapeSys(_Strict):
    """Unbinned shape systematic from the +-1 sigma ratio ensembles ``up`` and ``down`` (varied / nominal)."""

    type: Literal["shapesys"]
    parameter: ParameterName
    up: Name = Field(description="ratio label of the +1 sigma variation over the nominal process")
    down: Name = Field(description="ratio label of the -1 sigma variation over the nominal process")


class HistoSys(_Strict):
    """Binned shape systematic: the ``up``/``down`` samples histogrammed (pyhf ``histosys``, code 4p by default)."""

    type: Literal["histosys"]
    parameter: ParameterName
    up: Name = Field(description="sample of the +1 sigma variation")
    down: Name = Field(description="sample of the -1 sigma variation")
    interpolation: Literal["code4p", "code4"] = Field(
        "code4p",
        description="code4p: pyhf's additive per-bin interpolation; code4: multiplicative per bin (up/nominal, "
        "down/nominal), the convention of normsys and of the unbinned shapesys",
    )


class McStat(_Strict):
    """The ensemble spread as a Monte-Carlo-statistics nuisance: ``r(x) -> r(x) exp(theta * std log r(x))``."""

    type: Literal["mcstat"]
    parameter: ParameterName | None = Field(
        None, description="its nuisance parameter (unit Gaussian); default mcstat_<region>_<process>, implicit"
    )


Modifier = Annotated[NormFactor | NormSys | Lumi | ShapeSys | HistoSys | McStat, Field(discriminator="type")]


class Process(_Strict):
    """One process of a region."""

    sample: Name = Field(description="held-out sample: yield from weights, normalisation E_p[g], templates, Asimov")
    ratio: Name | None = Field(None, description="ratio label giving its per-event density (unbinned regions)")
    yield_: Yield = Field(alias="yield", description="expected events at coefficient 1, or {sum_of_weights: true}")
    coefficient: str | float = Field("1", description="expression of the parameters, e.g. 'mu - sqrt(mu)'; may be < 0")
    modifiers: list[Modifier] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Asimov(_Strict):
    """An Asimov dataset: the expectation at the given parameter values (others at their starting values)."""

    asimov: dict[ParameterName, float] = Field(default_factory=dict)


class Counts(_Strict):
    """Observed counts of a binned region given in the file."""

    counts: list[float]


class Support(_Strict):
    """Events outside the ratios' support go to Poisson bins of ``observable``."""

    observable: str = Field(description="observable histogrammed outside the support")
    bins: int = Field(5, ge=1, le=1000, description="number of bins (quantiles of the processes' samples)")


class UnbinnedRegion(_Strict):
    """An NSBI region: per-event ratios against the common ``reference``."""

    type: Literal["unbinned"]
    data: Name | Asimov = Field(description="sample of the observed events, or {asimov: {...}}")
    reference: Name = Field(description="the common denominator sample of the processes' ratios")
    support: Support | None = None
    processes: dict[Name, Process] = Field(min_length=1)


class QuantileBins(_Strict):
    """``bins`` edges with equal content of the first process's sample."""

    bins: int = Field(ge=1, le=1000)


class BinnedRegion(_Strict):
    """A histogram region with pyhf's modifier semantics."""

    type: Literal["binned"]
    observable: str = Field(description="observable histogrammed")
    edges: list[float] | QuantileBins = Field(description="bin edges, or {bins: n}")
    data: Name | Counts | Asimov = Field(description="sample histogrammed, {counts: [...]} or {asimov: {...}}")
    processes: dict[Name, Process] = Field(min_length=1)


Region = Annotated[UnbinnedRegion | BinnedRegion, Field(discriminator="type")]


class Truth(_Strict):
    """The simulator whose exact densities the fit's exact method evaluates at every parameter point."""

    simulator: Name = Field(description="name in the physics.truth registry")
    config: dict[str, Any] = Field(default_factory=dict, description="simulator configuration")
    processes: dict[Name, Name] = Field(default_factory=dict, description="model process -> simulator process")
    nuisances: dict[ParameterName, str] = Field(default_factory=dict, description="parameter -> simulator nuisance")


class Model(_Strict):
    """A statistical model (``kind: Model``)."""

    api_version: Literal["nsbiflow/v1"] = Field(alias="apiVersion")
    kind: Literal["Model"]
    metadata: Metadata
    truth: Truth | None = None
    parameters: dict[ParameterName, Parameter] = Field(min_length=1)
    ratios: dict[Name, Ratio] = Field(default_factory=dict)
    regions: dict[Name, Region] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def pois(self) -> list[str]:
        """Names of the parameters of interest, in file order."""
        return [n for n, p in self.parameters.items() if p.poi]

    def used_ratios(self) -> list[str]:
        """Every ratio label the regions use (processes and shape systematics)."""
        seen: dict[str, None] = {}
        for region in self.regions.values():
            for process in region.processes.values():
                if process.ratio:
                    seen[process.ratio] = None
                for m in process.modifiers:
                    if isinstance(m, ShapeSys):
                        seen[m.up] = seen[m.down] = None
        return list(seen)

    def samples(self) -> list[str]:
        """Every sample name the model reads (data, references, processes, variations)."""
        seen: dict[str, None] = {}
        for region in self.regions.values():
            if isinstance(region.data, str):
                seen[region.data] = None
            if isinstance(region, UnbinnedRegion):
                seen[region.reference] = None
            for process in region.processes.values():
                seen[process.sample] = None
                for m in process.modifiers:
                    if isinstance(m, HistoSys):
                        seen[m.up] = seen[m.down] = None
        return list(seen)


Loc = tuple[str | int, ...]


def mcstat_parameter(region: str, process: str, modifier: McStat) -> str:
    """The nuisance parameter of an ``mcstat`` modifier."""
    return modifier.parameter or f"mcstat_{region}_{process}".replace("-", "_").replace(".", "_")


def references(model: Model) -> list[tuple[Loc, str]]:
    """Cross-reference errors, each with the path of the value at fault (empty when the model is consistent)."""
    found: list[tuple[Loc, str]] = []
    params = model.parameters
    if not model.pois():
        found.append((("parameters",), "no parameter of interest: mark one with 'poi: true'"))
    for region_name, region in model.regions.items():
        base: Loc = ("regions", region_name)
        unbinned = isinstance(region, UnbinnedRegion)
        if isinstance(region.data, Asimov):
            for name in region.data.asimov:
                if name not in params:
                    found.append(((*base, "data", "asimov", name), f"unknown parameter {name!r} in the Asimov point"))
        if isinstance(region, BinnedRegion) and isinstance(region.edges, list):
            e = region.edges
            if len(e) < 2 or any(b <= a for a, b in pairwise(e)):
                found.append(((*base, "edges"), "edges must be at least two increasing numbers"))
        for process_name, process in region.processes.items():
            at: Loc = (*base, "processes", process_name)
            try:
                expression = parse(process.coefficient)
            except ExpressionError as error:
                found.append(((*at, "coefficient"), f"coefficient: {error}"))
            else:
                for name in sorted(expression.names - set(params)):
                    found.append(
                        ((*at, "coefficient"), f"coefficient uses {name!r}, which is not a declared parameter")
                    )
            if unbinned and process.ratio is None:
                found.append((at, f"process {process_name!r} of an unbinned region needs a 'ratio'"))
            if process.ratio is not None:
                if not unbinned:
                    found.append(((*at, "ratio"), "a binned region's process takes no ratio"))
                elif process.ratio not in model.ratios:
                    found.append(((*at, "ratio"), f"ratio {process.ratio!r} is not declared under 'ratios'"))
                elif isinstance(region, UnbinnedRegion) and model.ratios[process.ratio].denominator != region.reference:
                    found.append(
                        (
                            (*at, "ratio"),
                            f"ratio {process.ratio!r} is over {model.ratios[process.ratio].denominator!r}"
                            f", not the region's reference {region.reference!r}",
                        )
                    )
            seen_params: set[str] = set()
            for index, m in enumerate(process.modifiers):
                where: Loc = (*at, "modifiers", index)
                name = m.parameter if not isinstance(m, McStat) else mcstat_parameter(region_name, process_name, m)
                if name in seen_params:
                    found.append((where, f"parameter {name!r} modifies this process twice"))
                seen_params.add(name)
                if isinstance(m, McStat):
                    if not unbinned:
                        found.append((where, "mcstat applies to unbinned regions (the ensemble spread)"))
                    if m.parameter is not None and m.parameter not in params:
                        found.append(((*where, "parameter"), f"parameter {m.parameter!r} is not declared"))
                    continue
                if name not in params:
                    found.append(((*where, "parameter"), f"parameter {name!r} is not declared under 'parameters'"))
                if isinstance(m, ShapeSys):
                    if not unbinned:
                        found.append((where, "shapesys is for unbinned regions; use histosys in a binned region"))
                    for side in ("up", "down"):
                        label = getattr(m, side)
                        if label not in model.ratios:
                            found.append(((*where, side), f"ratio {label!r} is not declared under 'ratios'"))
                if isinstance(m, HistoSys) and unbinned:
                    found.append((where, "histosys is for binned regions; use shapesys in an unbinned region"))
    if model.truth is not None:
        for name in model.truth.nuisances:
            if name not in params:
                found.append((("truth", "nuisances", name), f"parameter {name!r} is not declared"))
    return found
