"""Observables derived from a collection of objects, and the projections the closure diagnostics compare.

Event-level observables (defined where the event has the objects they need): the multiplicity ``n_obj``,
``ht`` (sum of pt), ``sum_e`` (sum of energies), the leading and sub-leading ``pt1``, ``pt2``, ``eta1``,
``eta2``, and the leading pair's invariant mass ``m12`` (massless objects) and angular distance ``dr12``.
Object-level projections are every object's field (``obj_pt``, ...), each object carrying its event's weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from nsbiflow.physics.objects import ObjectEvents

FloatArray = NDArray[np.float64]
KINEMATIC = ("pt", "eta", "phi")
SUMMARY = ("n_obj", "ht", "pt1", "pt2", "eta1", "eta2")
"""The event-level summary a generator writes as flat columns (0 where an event lacks the object)."""


@dataclass
class Projection:
    """Values of one observable and the event each value belongs to (``rows``: indices into the sample)."""

    values: FloatArray
    rows: NDArray[np.int64]
    level: str  # "event" or "object"


def _leading(ev: ObjectEvents, rank: int) -> NDArray[np.int64]:
    """Index (into the flat objects) of each event's ``rank``-th object in pt, -1 where it has fewer."""
    pt = ev.fields["pt"]
    event = ev.event_of_object
    order = np.lexsort((-pt, event))
    offsets = ev.offsets
    index = np.full(len(ev), -1, dtype=np.int64)
    has = ev.counts > rank
    index[has] = order[offsets[:-1][has] + rank]
    return index


def derived(ev: ObjectEvents) -> dict[str, Projection]:
    """The event-level observables of ``ev`` (those its fields allow: every one needs pt, eta and phi)."""
    n = len(ev)
    all_rows = np.arange(n, dtype=np.int64)
    out = {"n_obj": Projection(ev.counts.astype(np.float64), all_rows, "event")}
    if not all(f in ev.fields for f in KINEMATIC):
        return out
    pt, eta, phi = (ev.fields[f] for f in KINEMATIC)
    e = ev.fields["e"] if "e" in ev.fields else pt * np.cosh(eta)
    event = ev.event_of_object
    out["ht"] = Projection(np.bincount(event, weights=pt, minlength=n).astype(np.float64), all_rows, "event")
    out["sum_e"] = Projection(np.bincount(event, weights=e, minlength=n).astype(np.float64), all_rows, "event")
    first, second = _leading(ev, 0), _leading(ev, 1)
    one = np.flatnonzero(first >= 0)
    two = np.flatnonzero(second >= 0)
    out["pt1"] = Projection(pt[first[one]], one, "event")
    out["eta1"] = Projection(eta[first[one]], one, "event")
    out["pt2"] = Projection(pt[second[two]], two, "event")
    out["eta2"] = Projection(eta[second[two]], two, "event")
    i, j = first[two], second[two]
    deta = eta[i] - eta[j]
    dphi = np.mod(phi[i] - phi[j] + np.pi, 2 * np.pi) - np.pi
    m2 = 2 * pt[i] * pt[j] * (np.cosh(deta) - np.cos(dphi))
    out["m12"] = Projection(np.sqrt(np.maximum(m2, 0.0)), two, "event")
    out["dr12"] = Projection(np.hypot(deta, dphi), two, "event")
    return out


def summary(ev: ObjectEvents) -> tuple[FloatArray, list[str]]:
    """The flat event-level summary (``SUMMARY``) as a matrix; 0 where an event lacks the object."""
    obs = derived(ev)
    x = np.zeros((len(ev), len(SUMMARY)))
    for j, name in enumerate(SUMMARY):
        x[obs[name].rows, j] = obs[name].values
    return x, list(SUMMARY)


def projections(ev: ObjectEvents) -> dict[str, Projection]:
    """Every projection of ``ev``: the derived observables, the flat observables of the file that are not
    derived ones, and every object field."""
    out = derived(ev)
    rows = np.arange(len(ev), dtype=np.int64)
    for j, name in enumerate(ev.events.observables):
        out.setdefault(name, Projection(ev.events.x[:, j], rows, "event"))
    event = ev.event_of_object
    for name, values in ev.fields.items():
        out[ev.column(name)] = Projection(values, event, "object")
    return out
