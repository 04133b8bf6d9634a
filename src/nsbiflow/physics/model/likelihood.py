"""``-2 ln L(theta)`` of a declared model on per-sample arrays, in torch (gradients by autograd).

Parameters form one vector ``theta`` (model order, implicit ``mcstat`` parameters appended). For an unbinned
region with reference density ``p_ref``, processes ``p`` with coefficients ``c_p(theta)`` (expressions of the
parameters), nominal yields ``nu_p``, yield factors ``F_p(theta)`` (normfactor, normsys, lumi), ratios
``r_p = p_p / p_ref`` and per-event shape factors ``G_p(x, theta) = prod_s g_s(x, theta)`` (shapesys, mcstat)::

    -2 ln L = 2 sum_p c_p nu_p F_p E_p[G_p 1_S]  -  2 sum_{i in S} w_i ln[ sum_p c_p nu_p F_p r_p(x_i) G_p(x_i) ]
              + sum_k 2 [nu_k - n_k ln nu_k],    nu_k = sum_p c_p nu_p F_p E_p[G_p 1_k]
              + sum_j ((theta_j - a_j) / sigma_j)^2

with ``E_p`` the weighted mean over the process's held-out sample, ``S`` the support and ``k`` the Poisson bins
of the events outside it. Because the yield carries ``E_p[G_p]``, the shape and the rate move together at every
parameter point (the normalisation identity; without it a shape nuisance away from 0 biases every fit).
The *exact* method replaces ``r_p G_p`` by the simulator's own density ``p_p(x | theta)`` (no support, no
interpolation). Binned regions follow pyhf: ``nu_k = c_p (h_pk + sum histosys shifts) prod F_p``.

A total density <= 0 at an event (possible with negative interference coefficients) never gives a NaN: the
logarithm is continued linearly below a tiny floor, which acts as a steep penalty, and the number of such
events at the best fit is reported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.model import jets, modifiers
from nsbiflow.physics.model.data import Table, require
from nsbiflow.physics.model.expressions import Expression, parse
from nsbiflow.physics.model.spec import (
    Asimov,
    BinnedRegion,
    Counts,
    McStat,
    Model,
    Process,
    QuantileBins,
    SumOfWeights,
    UnbinnedRegion,
    mcstat_parameter,
)

Method = Literal["nsbi", "exact"]
FloatArray = NDArray[np.float64]
_EPS = 1e-200


def safe_log(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``ln`` continued linearly below a tiny floor (a steep, finite penalty); also the count of values <= 0."""
    floor = torch.full_like(values, _EPS)
    bad = values <= _EPS
    logs = torch.where(bad, np.log(_EPS) + (values - _EPS) / 1e-3, torch.log(torch.where(bad, floor, values)))
    return logs, bad.sum()


@dataclass
class ParameterSet:
    """The fit's parameter vector: names, starts, bounds, fixed flags, Gaussian constraints."""

    names: list[str]
    init: FloatArray
    bounds: list[tuple[float, float]]
    fixed: NDArray[np.bool_]
    pois: list[str]
    constrained: NDArray[np.int64]  # indices of Gaussian-constrained parameters
    sigma: FloatArray
    aux: FloatArray  # auxiliary measurements (one per constrained parameter)

    def index(self) -> dict[str, int]:
        """Name -> position."""
        return {n: i for i, n in enumerate(self.names)}

    @staticmethod
    def of(model: Model) -> ParameterSet:
        """The model's parameters (plus implicit mcstat nuisances, unit Gaussians)."""
        names, init, bounds, fixed, cons, sigma, aux = [], [], [], [], [], [], []
        for name, p in model.parameters.items():
            names.append(name)
            init.append(p.start())
            bounds.append(p.limits())
            fixed.append(p.fixed)
            g = p.gaussian()
            if g is not None:
                cons.append(len(names) - 1)
                sigma.append(g.sigma)
                aux.append(p.center())
        for region_name, region in model.regions.items():
            for process_name, process in region.processes.items():
                for m in process.modifiers:
                    if isinstance(m, McStat) and m.parameter is None:
                        name = mcstat_parameter(region_name, process_name, m)
                        if name not in names:
                            names.append(name)
                            init.append(0.0)
                            bounds.append((-5.0, 5.0))
                            fixed.append(False)
                            cons.append(len(names) - 1)
                            sigma.append(1.0)
                            aux.append(0.0)
        return ParameterSet(
            names,
            np.array(init),
            bounds,
            np.array(fixed, bool),
            model.pois(),
            np.array(cons, np.int64),
            np.array(sigma),
            np.array(aux),
        )


# -- processes --------------------------------------------------------------------------------------------


@dataclass
class ProcessTerm:
    """One process of one region: coefficient, nominal yield, yield factors, shape terms."""

    name: str
    sample: str
    ratio: str | None
    coefficient: Expression
    nu: float
    yield_terms: list[Any]
    event_terms: list[Any]
    bin_terms: list[Any] = field(default_factory=list)
    truth_process: str | None = None
    truth_nuisances: list[tuple[int, str]] = field(default_factory=list)

    def scale(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``c_p(theta) * nu_p * F_p(theta)``."""
        value = self.coefficient(scope) * self.nu
        for term in self.yield_terms:
            value = value * term.factor(theta)
        return value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)


def _nominal_yield(process: Process, table: Table) -> float:
    y = process.yield_
    if isinstance(y, SumOfWeights):
        return float(np.sum(table.weights)) * y.scale
    return float(y)


def _terms(process: Process, ctx: modifiers.Context) -> tuple[list[Any], list[Any], list[Any]]:
    yields, events, bins = [], [], []
    for spec in process.modifiers:
        term = modifiers.build(spec, ctx)
        if isinstance(term, modifiers.EventTerm):
            events.append(term)
        elif isinstance(term, modifiers.BinTerm):
            bins.append(term)
        else:
            yields.append(term)
    return modifiers.group(yields), modifiers.group(events), bins


# -- the exact densities, differentiated by finite differences -------------------------------------------


class _Exact(torch.autograd.Function):
    """``p(x | nuisances)`` from a numpy callable, with central finite differences as the backward pass."""

    @staticmethod
    def forward(ctx: Any, nuisances: torch.Tensor, density: Callable[[FloatArray], FloatArray]) -> torch.Tensor:
        ctx.density = density
        ctx.save_for_backward(nuisances)
        return torch.from_numpy(density(nuisances.detach().numpy().copy()))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (nuisances,) = ctx.saved_tensors
        point = nuisances.detach().numpy().copy()
        grads = np.zeros_like(point)
        h = 1e-5
        for j in range(len(point)):
            up, down = point.copy(), point.copy()
            up[j] += h
            down[j] -= h
            diff = (ctx.density(up) - ctx.density(down)) / (2 * h)
            grads[j] = float(np.dot(grad_output.numpy(), diff))
        return torch.from_numpy(grads), None


@dataclass
class Block:
    """Events entering an unbinned region's sum: weights and, per process, what its density needs."""

    weights: torch.Tensor
    log_r: dict[str, torch.Tensor]  # nsbi: per-process log ratio
    prepared: dict[str, list[Any]]  # nsbi: per-process prepared event terms
    x: FloatArray | None = None  # exact: the observables


# -- regions ---------------------------------------------------------------------------------------------


class UnbinnedTerm:
    """An unbinned region (see the module docstring)."""

    def __init__(
        self,
        name: str,
        spec: UnbinnedRegion,
        model: Model,
        tables: Mapping[str, Table],
        index: Mapping[str, int],
        method: Method,
        truth: Any,
    ) -> None:
        self.name, self.spec, self.method, self.truth = name, spec, method, truth
        self.processes: list[ProcessTerm] = []
        self.observables: list[str] = list(truth.observables()) if truth is not None else []
        mapping = model.truth.processes if model.truth is not None else {}
        nuisance_map = model.truth.nuisances if model.truth is not None else {}
        for pname, process in spec.processes.items():
            table = tables[process.sample]
            ctx = modifiers.Context(name, pname, index, ratio=process.ratio)
            yields, events, _ = _terms(process, ctx)
            term = ProcessTerm(
                pname,
                process.sample,
                process.ratio,
                parse(process.coefficient),
                _nominal_yield(process, table),
                yields,
                events,
            )
            if method == "exact":
                term.event_terms = []
                term.truth_process = mapping.get(pname, pname)
                if term.truth_process not in truth.processes():
                    raise StageError(
                        f"fit: region {name}: process {pname!r} is simulator process {term.truth_process!r}, which "
                        f"{truth.name!r} does not know ({', '.join(truth.processes())}); map it under truth.processes"
                    )
                candidates = [
                    (index[param], nuisance_map.get(param, param))
                    for param in model.parameters
                    if nuisance_map.get(param, param) in truth.nuisances()
                ]
                probe = self._x(table)[:256]
                term.truth_nuisances = [c for c in candidates if _acts_on(truth, term.truth_process, c[1], probe)]
            self.processes.append(term)
        # the support's Poisson bins (nsbi only)
        self.edges: FloatArray | None = None
        if method == "nsbi" and spec.support is not None:
            values = [t.col(spec.support.observable)[~t.in_support] for t in (tables[p.sample] for p in self.processes)]
            joined = np.concatenate(values) if values else np.zeros(0)
            if len(joined):
                self.edges = quantile_edges(joined, np.ones(len(joined)), spec.support.bins)
        # per-process normalisation blocks: the process's own sample
        self.norm_blocks: list[tuple[torch.Tensor, torch.Tensor, list[Any], FloatArray | None]] = []
        for term in self.processes:
            table = tables[term.sample]
            w = torch.from_numpy(table.weights / np.sum(table.weights))
            onehot = self._bin_matrix(table)
            prepared = [e.prepare(table) for e in term.event_terms]
            x = self._x(table) if method == "exact" else None
            self.norm_blocks.append((w, onehot, prepared, x))
        self.data_block: Block | None = None
        self.counts = torch.zeros(0, dtype=torch.float64)
        self._constant: dict[str | None, tuple[FloatArray, torch.Tensor]] = {}

    # -- inputs
    def _x(self, table: Table) -> FloatArray:
        return np.stack(
            [table.col(o, "the exact method needs the simulator's observables") for o in self.observables], axis=1
        )

    def _bin_matrix(self, table: Table) -> torch.Tensor:
        """(n_bins + 1, n): row 0 = in the support, row k = outside, in bin k."""
        n = len(table)
        if self.method == "exact":
            return torch.ones((1, n), dtype=torch.float64)
        inside = table.in_support
        rows = [inside.astype(np.float64)]
        if self.edges is not None:
            values = table.col(self.spec.support.observable) if self.spec.support else np.zeros(n)
            which = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, len(self.edges) - 2)
            for k in range(len(self.edges) - 1):
                rows.append(((~inside) & (which == k)).astype(np.float64))
        return torch.from_numpy(np.stack(rows))

    def block(self, table: Table, weights: FloatArray | None = None) -> tuple[Block, torch.Tensor]:
        """The in-support events of ``table`` as a block, and the counts of the others per bin."""
        w = table.weights if weights is None else weights
        bins = self._bin_matrix(table).numpy()
        counts = torch.from_numpy(bins[1:] @ w) if bins.shape[0] > 1 else torch.zeros(0, dtype=torch.float64)
        inside = bins[0] > 0
        sub = table.select(inside)
        sw = np.asarray(w)[inside]
        if self.method == "exact":
            return Block(torch.from_numpy(sw), {}, {}, self._x(sub)), counts
        log_r = {p.name: torch.from_numpy(sub.col(f"logr_{p.ratio}").astype(np.float64)) for p in self.processes}
        prepared = {p.name: [e.prepare(sub) for e in p.event_terms] for p in self.processes}
        return Block(torch.from_numpy(sw), log_r, prepared), counts

    def set_data(self, table: Table, weights: FloatArray | None = None) -> None:
        """Use ``table`` as this region's observed events."""
        if self.method == "nsbi" and self.edges is None and not table.in_support.all():
            outside = int((~table.in_support).sum())
            raise StageError(
                f"fit: region {self.name}: {outside} observed events are outside the support but no simulated "
                "event is, so their Poisson bins are empty; raise the support's max_ratio or simulate more events"
            )
        self.data_block, self.counts = self.block(table, weights)

    # -- densities
    def _log_density(self, term: ProcessTerm, theta: torch.Tensor, block: Block) -> torch.Tensor:
        if self.method == "exact":
            assert block.x is not None
            return torch.log(torch.clamp(self._truth(term, theta, block.x), min=1e-300))
        value = block.log_r[term.name]
        for e, prepared in zip(term.event_terms, block.prepared[term.name], strict=True):
            value = value + e.log_factor(prepared, theta)
        return value

    def _truth(self, term: ProcessTerm, theta: torch.Tensor, x: FloatArray) -> torch.Tensor:
        indices = [i for i, _ in term.truth_nuisances]
        names = [n for _, n in term.truth_nuisances]
        process = term.truth_process

        def density(values: FloatArray) -> FloatArray:
            return np.asarray(
                self.truth.density(process, x, dict(zip(names, map(float, values), strict=True))), dtype=np.float64
            )

        if not indices:  # independent of the parameters: evaluated once per event set (the last one kept)
            cached = self._constant.get(process)
            if cached is None or cached[0] is not x:
                cached = (x, torch.from_numpy(density(np.zeros(0))))
                self._constant[process] = cached
            return cached[1]
        return _Exact.apply(theta[indices], density)

    def _density_signed(self, term: ProcessTerm, theta: torch.Tensor, block: Block) -> torch.Tensor:
        """``r_p G_p`` (nsbi) or ``p_p(x | theta)`` (exact), keeping the sign of a signed truth density."""
        if self.method == "exact":
            assert block.x is not None
            return self._truth(term, theta, block.x)
        return torch.exp(self._log_density(term, theta, block))

    def rates(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected events: [in the support, per outside bin]."""
        total = None
        for term, (w, onehot, prepared, _) in zip(self.processes, self.norm_blocks, strict=True):
            if self.method == "exact":
                integral = getattr(self.truth, "integral", None)
                frac = torch.ones(1, dtype=torch.float64)
                if callable(integral):
                    frac = frac * float(integral(term.truth_process))
            else:
                g = w
                if term.event_terms:
                    log_g = sum(e.log_factor(p, theta) for e, p in zip(term.event_terms, prepared, strict=True))
                    g = w * torch.exp(log_g)
                frac = onehot @ g
            rate = term.scale(theta, scope) * frac
            total = rate if total is None else total + rate
        assert total is not None
        return total

    def twice_nll(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """This region's ``-2 ln L`` and the number of events with a density <= 0."""
        assert self.data_block is not None, "set_data first"
        block = self.data_block
        density = None
        for term in self.processes:
            part = term.scale(theta, scope) * self._density_signed(term, theta, block)
            density = part if density is None else density + part
        assert density is not None
        logs, bad = safe_log(density)
        rates = self.rates(theta, scope)
        value = 2.0 * rates[0] - 2.0 * torch.dot(block.weights, logs)
        if len(rates) > 1:
            expected = rates[1:]
            log_e, bad_bins = safe_log(expected)
            value = value + torch.sum(2.0 * (expected - self.counts * log_e))
            bad = bad + bad_bins
        return value, bad

    def asimov(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor], tables: Mapping[str, Table]) -> None:
        """Make this region's data the expectation at ``theta``: the processes' samples, reweighted."""
        with torch.no_grad():
            parts: list[tuple[Table, FloatArray]] = []
            for term, (w, _, prepared, x) in zip(self.processes, self.norm_blocks, strict=True):
                scale = float(term.scale(theta, scope))
                if scale == 0.0:
                    continue
                weights = w.numpy() * scale
                if self.method == "exact":
                    assert x is not None
                    nominal = theta.clone()
                    for i, _ in term.truth_nuisances:
                        nominal[i] = 0.0
                    at = self._truth(term, theta, x).numpy()
                    base = self._truth(term, nominal, x).numpy()
                    ratio = np.divide(at, base, out=np.ones_like(at), where=base != 0)
                    weights = weights * ratio
                elif term.event_terms:
                    log_g = sum(e.log_factor(p, theta) for e, p in zip(term.event_terms, prepared, strict=True))
                    weights = weights * torch.exp(log_g).numpy()
                parts.append((tables[term.sample], weights))
            blocks = [self.block(t, wt) for t, wt in parts]
        self.data_block = _join([b for b, _ in blocks])
        self.counts = sum((c for _, c in blocks), torch.zeros_like(blocks[0][1]))


def _acts_on(truth: Any, process: str | None, nuisance: str, probe: FloatArray) -> bool:
    """Whether the truth density of ``process`` moves with ``nuisance`` (on a few of its own events).

    A nuisance that does not act on a process (the toy's signal and its detector scale) is left out of that
    process's density call, so its finite-difference gradient costs nothing: a third fewer density calls.
    """
    nominal = np.asarray(truth.density(process, probe, {}), dtype=np.float64)
    for value in (-0.5, 0.5):
        moved = np.asarray(truth.density(process, probe, {nuisance: value}), dtype=np.float64)
        if not np.array_equal(moved, nominal):
            return True
    return False


def _join(blocks: Sequence[Block]) -> Block:
    weights = torch.cat([b.weights for b in blocks])
    log_r = {k: torch.cat([b.log_r[k] for b in blocks]) for k in blocks[0].log_r}
    prepared: dict[str, list[Any]] = {}
    for name, terms in blocks[0].prepared.items():
        joined = []
        for j, first in enumerate(terms):
            joined.append(_join_prepared([b.prepared[name][j] for b in blocks], first))
        prepared[name] = joined
    x = None if blocks[0].x is None else np.concatenate([b.x for b in blocks if b.x is not None])
    return Block(weights, log_r, prepared, x)


def _join_prepared(parts: Sequence[Any], first: Any) -> Any:
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    joined = copy.copy(first)
    for attr in ("log_up", "log_down"):  # Code4Batch: (S, n) and (S, 6, n)
        setattr(joined, attr, torch.cat([getattr(p, attr) for p in parts], dim=1))
    joined.coefficients = torch.cat([p.coefficients for p in parts], dim=2)
    return joined


def quantile_edges(values: FloatArray, weights: FloatArray, n_bins: int) -> FloatArray:
    """Bin edges with equal weighted content of ``values``, outer edges opened to +-1e30."""
    order = np.argsort(values)
    cw = np.cumsum(np.abs(weights[order]))
    cw /= cw[-1]
    inner = np.interp(np.linspace(0, 1, n_bins + 1)[1:-1], cw, values[order])
    return np.concatenate([[-1e30], np.unique(inner), [1e30]])


def histogram(values: FloatArray, weights: FloatArray, edges: FloatArray) -> FloatArray:
    """Weighted counts per bin."""
    return np.histogram(values, bins=edges, weights=weights)[0].astype(np.float64)


class BinnedTerm:
    """A binned region with pyhf's semantics: ``nu_k = sum_p c_p (h_pk + shifts_k) prod F_p``."""

    def __init__(self, name: str, spec: BinnedRegion, tables: Mapping[str, Table], index: Mapping[str, int]) -> None:
        self.name, self.spec = name, spec
        first = tables[next(iter(spec.processes.values())).sample]
        if isinstance(spec.edges, QuantileBins):
            self.edges = quantile_edges(first.col(spec.observable), first.weights, spec.edges.bins)
        else:
            self.edges = np.asarray(spec.edges, dtype=np.float64)
        self.processes: list[tuple[ProcessTerm, torch.Tensor]] = []
        for pname, process in spec.processes.items():
            table = tables[process.sample]
            nominal = self.template(process, tables, process.sample)

            def other(sample: str, process: Process = process) -> FloatArray:
                return self.template(process, tables, sample)

            ctx = modifiers.Context(name, pname, index, nominal=nominal, template=other)
            yields, _, bins = _terms(process, ctx)
            term = ProcessTerm(pname, process.sample, None, parse(process.coefficient), 1.0, yields, [], bins)
            _ = table
            self.processes.append((term, torch.from_numpy(nominal)))
        self.counts = torch.zeros(len(self.edges) - 1, dtype=torch.float64)

    def template(self, process: Process, tables: Mapping[str, Table], sample: str) -> FloatArray:
        """A sample's histogram as expected events (sum of weights x scale, or the yield's share)."""
        table = tables[sample]
        h = histogram(table.col(self.spec.observable), table.weights, self.edges)
        y = process.yield_
        if isinstance(y, SumOfWeights):
            return h * y.scale
        return h * float(y) / float(np.sum(table.weights))

    def set_data(self, table: Table | None, counts: Sequence[float] | None = None) -> None:
        """Observed counts: a sample's histogram, or given counts."""
        if counts is not None:
            if len(counts) != len(self.edges) - 1:
                raise StageError(f"fit: region {self.name}: {len(counts)} counts for {len(self.edges) - 1} bins")
            self.counts = torch.tensor(list(counts), dtype=torch.float64)
        else:
            assert table is not None
            self.counts = torch.from_numpy(histogram(table.col(self.spec.observable), table.weights, self.edges))

    def expected(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected counts per bin."""
        total = torch.zeros(len(self.edges) - 1, dtype=torch.float64)
        for term, nominal in self.processes:
            h = nominal
            for b in term.bin_terms:
                h = h + b.shift(theta)
            total = total + term.scale(theta, scope) * h
        return total

    def twice_nll(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Poisson ``-2 ln L`` (without the constant ``ln n!``), and the number of bins with expectation <= 0."""
        expected = self.expected(theta, scope)
        logs, bad = safe_log(expected)
        return torch.sum(2.0 * (expected - self.counts * logs)), bad

    def asimov(self, theta: torch.Tensor, scope: Mapping[str, torch.Tensor], tables: Mapping[str, Table]) -> None:
        """Counts at their expectation at ``theta``."""
        with torch.no_grad():
            self.counts = self.expected(theta, scope).clone()


# -- the whole likelihood --------------------------------------------------------------------------------


class Likelihood:
    """``-2 ln L(theta)`` of a model on per-sample tables, for one method (``nsbi`` or ``exact``)."""

    def __init__(self, model: Model, tables: Mapping[str, Table], method: Method = "nsbi", truth: Any = None) -> None:
        if method == "exact" and truth is None:
            raise StageError("fit: the exact method needs the model's truth (a simulator with known densities)")
        require(tables, [s for s in model.samples() if _is_sample_needed(model, s)], "fit")
        self.model, self.tables, self.method, self.truth = model, tables, method, truth
        self.parameters = ParameterSet.of(model)
        self.exact_hessian = True
        """Whether ``jet`` answers (False: the fits use the gradient path -- L-BFGS-B, finite-difference Hessians)"""
        self.index = self.parameters.index()
        self.aux = torch.from_numpy(self.parameters.aux.copy())
        self.regions: list[UnbinnedTerm | BinnedTerm] = []
        for name, region in model.regions.items():
            if isinstance(region, UnbinnedRegion):
                self.regions.append(UnbinnedTerm(name, region, model, tables, self.index, method, truth))
            else:
                self.regions.append(BinnedTerm(name, region, tables, self.index))
        self.set_observed()

    def scope(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter name -> value, for coefficient expressions."""
        return {n: theta[i] for n, i in self.index.items()}

    def point(self, values: Mapping[str, float] | None = None) -> torch.Tensor:
        """The starting vector with ``values`` set."""
        theta = torch.from_numpy(self.parameters.init.copy())
        for name, value in (values or {}).items():
            theta[self.index[name]] = float(value)
        return theta

    def set_observed(self) -> None:
        """Each region's data as the model declares it (a sample, counts, or an Asimov point)."""
        for term in self.regions:
            data = term.spec.data
            if isinstance(data, Asimov):
                theta = self.point(data.asimov)
                term.asimov(theta, self.scope(theta), self.tables)
            elif isinstance(data, Counts):
                assert isinstance(term, BinnedTerm)
                term.set_data(None, data.counts)
            else:
                term.set_data(self.tables[data])

    def set_data(self, data: Mapping[str, Table], aux: FloatArray | None = None) -> None:
        """Pseudo-data: region name -> events table (binned regions histogram it); optional auxiliary data."""
        for term in self.regions:
            if term.name in data:
                term.set_data(data[term.name])
        if aux is not None:
            self.aux = torch.as_tensor(np.asarray(aux, dtype=np.float64))

    def set_asimov(self, theta: FloatArray | torch.Tensor) -> None:
        """Asimov data at ``theta`` with the auxiliary measurements moved to ``theta`` (pyhf's construction)."""
        t = torch.as_tensor(np.asarray(theta, dtype=np.float64))
        for term in self.regions:
            term.asimov(t, self.scope(t), self.tables)
        self.aux = t[torch.from_numpy(self.parameters.constrained)].clone()

    def copy(self, exact_hessian: bool | None = None) -> Likelihood:
        """An independent likelihood sharing the (read-only) prepared inputs, so its data can change
        (``exact_hessian=False``: one whose fits take the gradient path)."""
        other = copy.copy(self)
        other.regions = [copy.copy(r) for r in self.regions]
        other.aux = self.aux.clone()
        if exact_hessian is not None:
            other.exact_hessian = exact_hessian
        return other

    def twice_nll(self, theta: torch.Tensor) -> torch.Tensor:
        """``-2 ln L(theta)``."""
        return self.evaluate(theta)[0]

    def evaluate(self, theta: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``-2 ln L(theta)`` and the number of events/bins with a density <= 0."""
        scope = self.scope(theta)
        value = torch.zeros((), dtype=torch.float64)
        bad = 0
        for term in self.regions:
            v, b = term.twice_nll(theta, scope)
            value = value + v
            bad += int(b)
        cons = torch.from_numpy(self.parameters.constrained)
        if len(cons):
            pull = (theta[cons] - self.aux) / torch.from_numpy(self.parameters.sigma)
            value = value + torch.sum(pull**2)
        return value, bad

    def value_and_grad(self, x: FloatArray) -> tuple[float, FloatArray]:
        """``-2 ln L`` and its gradient at the numpy vector ``x``."""
        theta = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        value = self.twice_nll(theta)
        (grad,) = torch.autograd.grad(value, theta)
        v = float(value.detach())
        g = grad.numpy().copy()
        if not np.isfinite(v) or not np.all(np.isfinite(g)):
            raise StageError("fit: the likelihood is not finite at " + _show(self.parameters.names, x))
        return v, g

    def jet(self, x: FloatArray) -> tuple[float, FloatArray, FloatArray] | None:
        """``-2 ln L``, its gradient and its exact Hessian at ``x``; ``None`` where ``jets`` cannot treat a region.

        The unbinned regions' event sums come from ``jets.region_jet`` in the process scales and the event
        parameters; the rest (the scales as functions of theta, binned regions, constraints) is small and is
        differentiated twice by autograd, then chained: ``H = J' H_z J + sum_p dPhi/ds_p d2 s_p + H_small``.
        """
        if not self.exact_hessian or not all(isinstance(t, BinnedTerm) or jets.supported(t) for t in self.regions):
            return None
        n = len(x)
        theta = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        scope = self.scope(theta)
        value = 0.0
        small = torch.zeros((), dtype=torch.float64)
        chained: list[tuple[jets.RegionJet, torch.Tensor]] = []
        for term in self.regions:
            if isinstance(term, BinnedTerm):
                v, bad = term.twice_nll(theta, scope)
                if int(bad):
                    return None
                small = small + v
                continue
            scales = torch.stack([torch.as_tensor(p.scale(theta, scope), dtype=torch.float64) for p in term.processes])
            found = jets.region_jet(term, scales.detach().numpy(), theta)
            if found is None:
                return None
            value += found.value
            # sum_p (dPhi/ds_p) s_p(theta): its autograd Hessian is the second-order chain term
            small = small + torch.dot(torch.from_numpy(found.grad[: len(term.processes)]), scales)
            chained.append((found, scales))
        cons = torch.from_numpy(self.parameters.constrained)
        if len(cons):
            small = small + torch.sum(((theta[cons] - self.aux) / torch.from_numpy(self.parameters.sigma)) ** 2)
        grad_t: torch.Tensor | None = None
        hess = np.zeros((n, n))
        if small.requires_grad:
            (grad_t,) = torch.autograd.grad(small, theta, create_graph=True)
            if grad_t.requires_grad:
                for i in range(n):
                    (row,) = torch.autograd.grad(grad_t[i], theta, retain_graph=True, allow_unused=True)
                    if row is not None:
                        hess[i] = row.numpy()
        grad = np.zeros(n) if grad_t is None else grad_t.detach().numpy().copy()
        # the value of `small` without the chain term
        value += float(small.detach())
        value -= sum(float(torch.dot(torch.from_numpy(j.grad[: len(sc)]), sc.detach())) for j, sc in chained)
        for found, scales in chained:
            n_p = len(scales)
            jac = np.zeros((n_p + len(found.event_parameters), n))
            for p in range(n_p):
                if scales[p].requires_grad:
                    (row,) = torch.autograd.grad(scales[p], theta, retain_graph=True, allow_unused=True)
                    if row is not None:
                        jac[p] = row.numpy()
            for a, i in enumerate(found.event_parameters):
                jac[n_p + a, i] = 1.0
            grad[found.event_parameters] += found.grad[n_p:]
            hess += jac.T @ found.hess @ jac
        hess = 0.5 * (hess + hess.T)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)) or not np.all(np.isfinite(hess)):
            return None
        return value, grad, hess

    def value(self, x: FloatArray) -> float:
        """``-2 ln L`` at the numpy vector ``x`` (no gradient)."""
        with torch.no_grad():
            return float(self.twice_nll(torch.as_tensor(np.asarray(x, dtype=np.float64))))


def _is_sample_needed(model: Model, sample: str) -> bool:
    return True


def _show(names: Sequence[str], x: FloatArray) -> str:
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, x, strict=False))
