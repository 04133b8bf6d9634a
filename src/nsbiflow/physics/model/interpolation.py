"""HistFactory interpolation codes in torch (differentiable): code 4 (multiplicative) and code 4p (additive).

Code 4 (pyhf ``normsys``, and per event for ``shapesys``): ``f(theta) = hi^theta`` for theta >= 1,
``lo^-theta`` for theta <= -1, and inside a 6th-order polynomial ``1 + sum_i a_i theta^i`` matching value,
slope and curvature of the exponentials at +-1. Code 4p (pyhf ``histosys``): an additive shift,
linear beyond +-1 and a polynomial inside. Formulas as in pyhf's ``interpolators`` (written here in torch so
gradients flow through them and so an event-wise version exists, which pyhf has no use for).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.autograd.function import once_differentiable

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
        """``sum_s log f_s(theta_s)`` per element (``theta`` of shape ``(S,)``), differentiable in ``theta``.

        One pass over the ``(S, 6, n)`` coefficients gives the polynomials and their derivatives together (a
        batched matrix product with the rows ``theta^k`` and ``k theta^(k-1)``), and the backward pass is one
        matrix-vector product with the saved ``d log f / d theta`` (no autograd graph over ``(S, 6, n)``
        tensors). Each branch uses ``theta`` with the other branches' entries set to 0, which contribute exactly
        nothing there, so no per-call indexing of the coefficients (a copy of the largest array) is needed.
        """
        return _Code4Log.apply(theta, self)

    def forward_parts(self, theta: torch.Tensor, with_derivative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``sum_s log f_s`` per element and, if asked, ``d log f_s / d theta_s`` of shape ``(S, n)``."""
        values = theta.detach().numpy()
        above_np, below_np = values >= 1, values <= -1
        inside_np = ~(above_np | below_np)
        n = self.log_up.shape[1]
        total = torch.zeros(n, dtype=torch.float64)
        derivative = torch.zeros((len(values), n), dtype=torch.float64) if with_derivative else None
        t = theta.detach()
        zero = torch.zeros_like(t)
        if above_np.any():
            above = torch.from_numpy(above_np)
            total = total + torch.where(above, t, zero) @ self.log_up
            if derivative is not None:
                derivative[above] = self.log_up[above]
        if below_np.any():
            below = torch.from_numpy(below_np)
            total = total - torch.where(below, t, zero) @ self.log_down
            if derivative is not None:
                derivative[below] = -self.log_down[below]
        if inside_np.any():
            inner = torch.where(torch.from_numpy(inside_np), t, zero)
            rows = [inner[:, None] ** self._powers]  # (S, 6); rows of other branches are 0
            if derivative is not None:  # k theta^(k-1); rows of other branches are 0 too
                slope = self._powers * inner[:, None] ** (self._powers - 1)
                rows.append(torch.where(torch.from_numpy(inside_np)[:, None], slope, torch.zeros_like(slope)))
            polys = torch.bmm(torch.stack(rows, dim=1), self.coefficients)  # (S, 1 or 2, n)
            raw = 1.0 + polys[:, 0]
            factors = torch.clamp(raw, min=FLOOR)
            total = total + torch.log(factors.prod(0) if factors.shape[0] > 1 else factors[0])
            if derivative is not None:
                ratio = torch.where(raw > FLOOR, polys[:, 1] / factors, torch.zeros_like(raw))
                if inside_np.all():
                    derivative = ratio
                else:
                    inside_rows = torch.from_numpy(np.flatnonzero(inside_np))
                    derivative[inside_rows] = ratio[inside_rows]
        return total, derivative

    def jet(self, theta: torch.Tensor, part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``sum_s log f_s``, ``d log f_s / d theta_s`` and ``d^2 log f_s / d theta_s^2`` on the elements ``part``.

        The second derivatives are exact (each ``f_s`` depends on ``theta_s`` only, so the Hessian of the sum is
        diagonal): 0 on the exponential branches, ``p''/p - (p'/p)^2`` on the polynomial. One batched product
        with the rows ``theta^k``, ``k theta^(k-1)`` and ``k (k-1) theta^(k-2)`` gives the three polynomials.
        """
        t = theta.detach().to(torch.float64)
        above, below = t >= 1, t <= -1
        inside = ~(above | below)
        lu, ld = self.log_up[:, part], self.log_down[:, part]
        total = torch.zeros(lu.shape[1], dtype=torch.float64)
        first = second = torch.zeros(lu.shape, dtype=torch.float64)
        if bool(inside.any()):
            inner = torch.where(inside, t, torch.zeros_like(t))[:, None]
            k = self._powers
            keep = inside[:, None].to(torch.float64)  # rows of the other branches: 0 (their polynomials vanish)
            rows = torch.stack(
                [inner**k, keep * k * inner ** (k - 1), keep * k * (k - 1) * inner ** torch.clamp(k - 2, min=0)], dim=1
            )
            coefficients = self.coefficients[:, :, part]
            polys = torch.bmm(rows.to(coefficients.dtype), coefficients).to(torch.float64)  # (S, 3, m)
            raw = polys[:, 0] + 1.0
            if float(raw.min()) > FLOOR:  # the usual case: no factor at the floor
                inverse = torch.reciprocal(raw)
                first = polys[:, 1] * inverse
                second = polys[:, 2] * inverse
                second.addcmul_(first, first, value=-1.0)
                total = total + torch.log(raw.prod(0) if raw.shape[0] > 1 else raw[0])
            else:
                ok = raw > FLOOR
                factors = torch.where(ok, raw, torch.full_like(raw, FLOOR))
                total = total + torch.log(factors.prod(0) if factors.shape[0] > 1 else factors[0])
                first = torch.where(ok, polys[:, 1] / factors, torch.zeros_like(raw))
                second = torch.where(ok, polys[:, 2] / factors - first**2, torch.zeros_like(raw))
        if bool(above.any()):
            total = total + torch.where(above, t, torch.zeros_like(t)) @ lu
            first = first + above[:, None] * lu
        if bool(below.any()):
            total = total - torch.where(below, t, torch.zeros_like(t)) @ ld
            first = first - below[:, None] * ld
        return total, first, second


class _Code4Log(torch.autograd.Function):
    """``Code4Batch.log`` with a hand-written backward: ``grad_theta = (d log f / d theta) @ grad``.

    The backward is itself differentiable (``_Code4Slope`` carries the exact second derivatives), so the
    Hessian of a small term (normalisation systematics, binned code 4) comes from autograd; with no graph
    requested the saved derivative is used as it is.
    """

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, batch: Code4Batch) -> torch.Tensor:
        total, derivative = batch.forward_parts(theta, bool(ctx.needs_input_grad[0]))
        if derivative is not None:
            ctx.batch = batch
            ctx.save_for_backward(theta, derivative)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        theta, derivative = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient is wanted (second derivatives)
            derivative = _Code4Slope.apply(theta, ctx.batch, derivative)
        return derivative @ grad_output, None


class _Code4Slope(torch.autograd.Function):
    """``d log f_s / d theta_s`` as a function of ``theta`` (its derivative: the diagonal second derivatives)."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, batch: Code4Batch, derivative: torch.Tensor) -> torch.Tensor:
        ctx.batch = batch
        ctx.save_for_backward(theta)
        return derivative.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (theta,) = ctx.saved_tensors
        _, _, second = ctx.batch.jet(theta)
        return (grad_output * second).sum(1), None, None


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
