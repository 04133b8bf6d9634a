"""Exact value, gradient and Hessian of ``-2 ln L`` in one pass over the events (what the Newton fits use).

An unbinned region's ``-2 ln L`` depends on the parameters only through the process scales
``s_p = c_p nu_p F_p(theta)`` (a handful of numbers, differentiated by autograd in ``Likelihood.jet``) and
the per-event log factors ``u_pi = ln r_p(x_i) + ln G_p(x_i, theta_E)`` of the *event parameters* ``theta_E``
(shape systematics, mcstat), whose exact first and diagonal second derivatives the event terms give
(``EventJet``). With ``f_i = sum_p s_p e^{u_pi}``, ``e_pi = e^{u_pi} / f_i``, ``pi_pi = s_p e_pi`` and
``v_i = sum_p pi_pi du_pi/dtheta``, the data term ``D = -2 sum_i w_i ln f_i`` has, in ``z = (s, theta_E)``::

    dD/ds_p = -2 sum w e_p                 d2D/ds_p ds_q = 2 sum w e_p e_q
    dD/dtheta = -2 sum w v                 d2D/ds_p dtheta = -2 sum w e_p (du_p/dtheta - v)
    d2D/dtheta dtheta' = -2 sum w [sum_p pi_p (du_p du_p' + diag d2u_p) - v v']

and the yields ``nu_k = sum_p s_p m_pk(theta_E)``, ``m_pk = E_p[G_p 1_k]``, enter ``2 nu_0 + sum_k 2 (nu_k -
n_k ln nu_k)`` with ``dm = E[G 1_k du]`` and ``d2m = E[G 1_k (du du' + diag d2u)]``. Everything is exact (no
Gauss-Newton approximation): the Hessian at the minimum is the one the errors need. The events are taken in
chunks so the per-event temporaries stay in cache; only the stored inputs stream from memory.

A region this cannot treat (the exact method, an event term without ``log_factor_jet``, a density <= 0 at
an event or an empty Poisson bin, where ``safe_log``'s linear continuation applies) answers ``None`` and the
fit uses the gradient path instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from nsbiflow.physics.model.likelihood import UnbinnedTerm

FloatArray = NDArray[np.float64]
CHUNK = 16384
"""Events per chunk: large enough that Python's per-op overhead is small, small enough to stay in cache."""
_EPS = 1e-200  # safe_log's floor: below it the gradient path's linear continuation applies


@dataclass
class RegionJet:
    """``-2 ln L`` of one region with its gradient and Hessian in ``z = (s_1..s_P, theta_E)``."""

    value: float
    grad: FloatArray  # (P + E,)
    hess: FloatArray  # (P + E, P + E)
    event_parameters: list[int]  # positions in theta of theta_E


def supported(term: UnbinnedTerm) -> bool:
    """Whether ``region_jet`` can treat this region (nsbi method, every event term with a jet)."""
    if term.method != "nsbi":
        return False
    return all(hasattr(e, "log_factor_jet") for p in term.processes for e in p.event_terms)


def _event_parameters(term: UnbinnedTerm, theta: torch.Tensor) -> list[int]:
    """The parameters any process's per-event factors depend on (sorted positions in theta)."""
    assert term.data_block is not None
    found: set[int] = set()
    for p in term.processes:
        for e, prepared in zip(p.event_terms, term.data_block.prepared[p.name], strict=True):
            found.update(e.log_factor_jet(prepared, theta, slice(0, 1)).indices)
    return sorted(found)


def _parts(
    terms: Sequence[Any], prepared: Sequence[Any], theta: torch.Tensor, part: slice, pos: dict[int, int], m: int
) -> tuple[torch.Tensor, list[int], torch.Tensor | None, torch.Tensor | None]:
    """Sum of the event terms' log factors on ``part``: value, rows (positions in theta_E), first, second."""
    value = torch.zeros(m, dtype=torch.float64)
    rows: list[int] = []
    firsts: list[torch.Tensor] = []
    seconds: list[torch.Tensor] = []
    for e, prep in zip(terms, prepared, strict=True):
        jet = e.log_factor_jet(prep, theta, part)
        value = value + jet.value
        rows.extend(pos[i] for i in jet.indices)
        firsts.append(jet.first)
        seconds.append(jet.second if jet.second is not None else torch.zeros_like(jet.first))
    if not firsts:
        return value, rows, None, None
    if len(firsts) == 1:
        return value, rows, firsts[0], seconds[0]
    return value, rows, torch.cat(firsts), torch.cat(seconds)


def region_jet(term: UnbinnedTerm, scales: FloatArray, theta: torch.Tensor) -> RegionJet | None:
    """The region's ``-2 ln L``, gradient and Hessian in ``(s, theta_E)`` (``None``: use the gradient path)."""
    if not supported(term) or term.data_block is None:
        return None
    theta = theta.detach()
    event_params = _event_parameters(term, theta)
    pos = {i: a for a, i in enumerate(event_params)}
    n_p, n_e = len(term.processes), len(event_params)
    s = torch.as_tensor(scales, dtype=torch.float64)
    grad = np.zeros(n_p + n_e)
    hess = np.zeros((n_p + n_e, n_p + n_e))
    value = 0.0
    block = term.data_block
    n = len(block.weights)
    shaped = [p for p, proc in enumerate(term.processes) if proc.event_terms]
    for start in range(0, n, CHUNK):
        part = slice(start, min(start + CHUNK, n))
        m = part.stop - part.start
        w = block.weights[part]
        exps, derivs = [], []
        for proc in term.processes:
            u, rows, first, second = _parts(proc.event_terms, block.prepared[proc.name], theta, part, pos, m)
            exps.append(torch.exp(block.log_r[proc.name][part] + u))
            derivs.append((rows, first, second))
        e_all = torch.stack(exps)  # (P, m)
        f = s @ e_all
        if bool((f <= _EPS).any()):
            return None
        value += float(-2.0 * torch.dot(w, torch.log(f)))
        e_all = e_all / f
        we = e_all * w  # (P, m)
        grad[:n_p] += (-2.0 * we.sum(1)).numpy()
        hess[:n_p, :n_p] += (2.0 * we @ e_all.T).numpy()
        if n_e == 0:
            continue
        if len(shaped) == 1 and len(set(derivs[shaped[0]][0])) == len(derivs[shaped[0]][0]):
            _one_shaped(shaped[0], derivs[shaped[0]], s, e_all, we, grad, hess, n_p)
        else:
            _many_shaped(derivs, s, e_all, we, w, grad, hess, n_p, n_e)
    # the yields: nu_k = sum_p s_p m_pk(theta_E), k = 0 (the support) and the Poisson bins outside it
    m0, dm, d2m = _yields(term, theta, pos, n_e)  # (P, K), (P, K, E), (P, K, E, E)
    sn = s.numpy()
    nu = sn @ m0  # (K,)
    counts = term.counts.numpy()
    if len(nu) > 1 and bool((nu[1:] <= _EPS).any()):
        return None
    c = np.full(len(nu), 2.0)
    d = np.zeros(len(nu))
    value += 2.0 * float(nu[0])
    if len(nu) > 1:
        value += float(np.sum(2.0 * (nu[1:] - counts * np.log(nu[1:]))))
        c[1:] = 2.0 * (1.0 - counts / nu[1:])
        d[1:] = 2.0 * counts / nu[1:] ** 2
    for k in range(len(nu)):
        g_k = np.concatenate([m0[:, k], np.einsum("p,pe->e", sn, dm[:, k])])
        h_k = np.zeros((n_p + n_e, n_p + n_e))
        h_k[:n_p, n_p:] = dm[:, k]
        h_k[n_p:, :n_p] = dm[:, k].T
        h_k[n_p:, n_p:] = np.einsum("p,pef->ef", sn, d2m[:, k])
        grad += c[k] * g_k
        hess += c[k] * h_k + d[k] * np.outer(g_k, g_k)
    return RegionJet(value, grad, 0.5 * (hess + hess.T), event_params)


def _one_shaped(
    p: int,
    deriv: tuple[list[int], torch.Tensor | None, torch.Tensor | None],
    s: torch.Tensor,
    e_all: torch.Tensor,
    we: torch.Tensor,
    grad: FloatArray,
    hess: FloatArray,
    n_p: int,
) -> None:
    """One chunk's event-parameter terms when one process alone has per-event factors (the usual case).

    Then ``v = pi_p du_p`` and the theta-theta block is ``-2 sum w [pi_p (1 - pi_p) du du' + pi_p diag d2u]``;
    the s-theta block ``-2 sum w e_q (delta_qp - pi_p) du``: three matrix products, no per-event scatter.
    """
    rows, first, second = deriv
    assert first is not None
    pi = e_all[p] * s[p]
    wpi = we[p] * s[p]
    r = np.asarray(rows)
    grad[n_p + r] += (-2.0 * (first @ wpi)).numpy()
    curv = ((first * (wpi * (1.0 - pi))) @ first.T).numpy()
    if second is not None:
        curv[np.diag_indices(len(r))] += (second @ wpi).numpy()
    hess[np.ix_(n_p + r, n_p + r)] += -2.0 * curv
    mix = -we * pi  # (P, m): w e_q (delta_qp - pi_p)
    mix[p] += we[p]
    cross = (first @ mix.T).numpy()  # (S, P)
    hess[n_p + r, :n_p] += -2.0 * cross
    hess[:n_p, n_p + r] += -2.0 * cross.T


def _many_shaped(
    derivs: Sequence[tuple[list[int], torch.Tensor | None, torch.Tensor | None]],
    s: torch.Tensor,
    e_all: torch.Tensor,
    we: torch.Tensor,
    w: torch.Tensor,
    grad: FloatArray,
    hess: FloatArray,
    n_p: int,
    n_e: int,
) -> None:
    """One chunk's event-parameter terms in general (several processes with per-event factors)."""
    v = torch.zeros((n_e, len(w)), dtype=torch.float64)
    for p, (rows, first, _) in enumerate(derivs):
        if first is not None:
            v.index_add_(0, torch.tensor(rows), first * (s[p] * e_all[p]))
    vw = v * w
    grad[n_p:] += (-2.0 * vw.sum(1)).numpy()
    hh = (vw @ v.T).numpy()  # sum w v v'
    cross = -(vw @ e_all.T).numpy()  # (E, P): -sum w e_p v
    for p, (rows, first, second) in enumerate(derivs):
        if first is None:
            continue
        wp = we[p] * s[p]  # w pi_p
        own = np.zeros((n_e, n_e))
        np.add.at(own, np.ix_(rows, rows), ((first * wp) @ first.T).numpy())  # add.at: a parameter may name 2 rows
        if second is not None:
            np.add.at(own, (rows, rows), (second @ wp).numpy())
        hh -= own
        np.add.at(cross[:, p], rows, (first @ we[p]).numpy())
    hess[n_p:, n_p:] += 2.0 * hh
    hess[n_p:, :n_p] += -2.0 * cross
    hess[:n_p, n_p:] += -2.0 * cross.T


def _yields(
    term: UnbinnedTerm, theta: torch.Tensor, pos: dict[int, int], n_e: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per process ``m_pk = E_p[G_p 1_k]`` with its first and second derivatives in ``theta_E``."""
    out_m, out_d, out_d2 = [], [], []
    for proc, (w, onehot, prepared, _) in zip(term.processes, term.norm_blocks, strict=True):
        k = onehot.shape[0]
        m_k = np.zeros(k)
        d_k = np.zeros((k, n_e))
        d2_k = np.zeros((k, n_e, n_e))
        if not proc.event_terms:
            m_k = (onehot @ w).numpy()
        else:
            n = len(w)
            for start in range(0, n, CHUNK):
                part = slice(start, min(start + CHUNK, n))
                u, rows, first, second = _parts(proc.event_terms, prepared, theta, part, pos, part.stop - part.start)
                a = w[part] * torch.exp(u)
                hot = onehot[:, part]
                m_k += (hot @ a).numpy()
                if first is None:
                    continue
                np.add.at(d_k.T, rows, (hot * a @ first.T).numpy().T)  # columns: a parameter may name two rows
                for b in range(k):
                    ab = hot[b] * a
                    np.add.at(d2_k[b], np.ix_(rows, rows), ((first * ab) @ first.T).numpy())
                    if second is not None:
                        np.add.at(d2_k[b], (rows, rows), (second @ ab).numpy())
        out_m.append(m_k)
        out_d.append(d_k)
        out_d2.append(d2_k)
    return np.stack(out_m), np.stack(out_d), np.stack(out_d2)
