"""The fit's methods by name: one owner for the list the fit step, the fit service and the archive's comparison share.

A leaf module (no torch, no pyhf), so the service's request schemas and the archive code can import it cheaply.
"""

from __future__ import annotations

from typing import Literal, get_args

Method = Literal["exact", "nsbi", "discriminant", "histogram"]
"""exact: the simulators' true densities; nsbi: the learned ratios, unbinned; discriminant: a histogram of the
learned discriminant; histogram: a histogram of one raw observable (pyhf)."""

ALL_METHODS: tuple[Method, ...] = get_args(Method)
"""Every method, in the order results tables show them."""
