"""HistFactory interpolation codes in torch (differentiable): code 4 (multiplicative) and code 4p (additive).

Code 4 (pyhf ``normsys``, and per event for ``shapesys``): ``f(theta) = hi^theta`` for theta >= 1,
``lo^-theta`` for theta <= -1, and inside a 6th-order polynomial ``1 + sum_i a_i theta^i`` matching value,
slope and curvature of the exponentials at +-1. Code 4p (pyhf ``histosys``): an additive shift,
linear beyond +-1 and a polynomial inside. Formulas as in pyhf's ``interpolators`` (written here in torch so
gradients flow through them and so an event-wise version exists, which pyhf has no use for).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

_A = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [-1, 1, -1, 1, -1, 1],
        [1, 2, 3, 4, 5, 6],
        [1, -2, 3, -4, 5, -6],
        [0, 2, 6, 12, 20, 30],
        [0, 2, -6, 12, -20, 30],
    ],
    dtype=np.float64,
)
_A_INV = np.linalg.inv(_A)
FLOOR = 1e-12


class Code4Batch:
    """Code-4 factors of ``S`` parameters over ``n`` elements: ``sum_s log f_s(x_i, theta_s)`` in a few tensor ops.

    ``log_up``/``log_down`` have shape ``(S, n)``: row ``s`` holds the +-1 sigma log factors of parameter ``s``
    (per event for shape systematics, ``n = 1`` for normalisation systematics). Parameters are grouped by the
    branch they are in (above +1, below -1, inside), so the cost does not grow with Python-level loops over
    parameters -- that is what keeps a fit with tens of nuisance parameters on 1e6 events fast.
    """

    def __init__(self, log_up: NDArray[np.float64], log_down: NDArray[np.float64]) -> None:
        lu = np.atleast_2d(np.asarray(log_up, dtype=np.float64))
        ld = np.atleast_2d(np.asarray(log_down, dtype=np.float64))
        lu = np.clip(lu, np.log(FLOOR), 50.0)
        ld = np.clip(ld, np.log(FLOOR), 50.0)
        up, down = np.exp(lu), np.exp(ld)
        b = np.stack([up - 1, down - 1, lu * up, -ld * down, lu**2 * up, ld**2 * down], axis=1)  # (S, 6, n)
        self.log_up = torch.from_numpy(lu.copy())
        self.log_down = torch.from_numpy(ld.copy())
        self.coefficients = torch.from_numpy(np.einsum("ij,sjn->sin", _A_INV, b))  # (S, 6, n)
        self._powers = torch.arange(1, 7, dtype=torch.float64)

    def log(self, theta: torch.Tensor) -> torch.Tensor:
        """``sum_s log f_s(theta_s)`` per element (``theta`` of shape ``(S,)``).

        No per-call indexing of the ``(S, 6, n)`` coefficients (a copy of the largest array): each branch uses
        ``theta`` with the other branches' entries set to 0, which contribute exactly nothing there.
        """
        values = theta.detach().numpy()
        above_np, below_np = values >= 1, values <= -1
        inside_np = ~(above_np | below_np)
        total = torch.zeros(self.log_up.shape[1], dtype=torch.float64)
        zero = torch.zeros_like(theta)
        if above_np.any():
            total = total + torch.where(torch.from_numpy(above_np), theta, zero) @ self.log_up
        if below_np.any():
            total = total - torch.where(torch.from_numpy(below_np), theta, zero) @ self.log_down
        if inside_np.any():
            inner = torch.where(torch.from_numpy(inside_np), theta, zero)
            powers = inner[:, None] ** self._powers  # (S, 6); rows of other branches are 0
            poly = torch.einsum("sk,skn->sn", powers, self.coefficients)
            factors = torch.clamp(1.0 + poly, min=FLOOR)
            total = total + torch.log(factors.prod(0) if factors.shape[0] > 1 else factors[0])
        return total


class Code4(Code4Batch):
    """Multiplicative code-4 interpolation between ``down`` (theta = -1), 1 and ``up`` (+1), element-wise."""

    def __init__(self, log_up: NDArray[np.float64], log_down: NDArray[np.float64]) -> None:
        super().__init__(np.reshape(log_up, (1, -1)), np.reshape(log_down, (1, -1)))

    def log(self, theta: torch.Tensor) -> torch.Tensor:
        """``log f(theta)`` per element (theta a 0-d tensor)."""
        return super().log(theta.reshape(1))

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        """``f(theta)`` per element."""
        return torch.exp(self.log(theta))


def code4p(theta: torch.Tensor, nominal: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """pyhf's additive code 4p: the shift of ``nominal`` at ``theta`` (per bin)."""
    delta_up = up - nominal
    delta_down = nominal - down
    value = float(theta.detach())
    if value >= 1:
        return theta * delta_up
    if value <= -1:
        return theta * delta_down
    s = 0.5 * (delta_up + delta_down)
    a = 0.0625 * (delta_up - delta_down)
    return theta * (s + theta * a * (15 + theta**2 * (3 * theta**2 - 10)))
