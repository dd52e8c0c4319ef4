"""Affine whitening of a log density around its mode (a Laplace fit), to precondition NUTS.

With the mode m of log p(θ) and the Hessian H of -log p there, θ = m + S z with
S = V Λ^{-1/2} (H = V Λ Vᵀ) makes the target roughly N(0, I) in z. NUTS on z then needs
few leapfrog steps per draw from the first iteration, instead of spending its warmup
learning the scales and correlations. The map is linear, so the draws of θ = m + S z
are exact draws of p(θ) whatever the quality of the fit: only efficiency depends on it.
Eigenvalues are clipped into [1 / MAX_SCALE², 1 / MIN_SCALE²], so flat or non-convex
directions get a bounded, sensible scale.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Whitening", "laplace_whitening"]

logger = logging.getLogger(__name__)

_DTYPE = torch.float64
MIN_SCALE = 1e-3  # smallest standard deviation a direction may get
MAX_SCALE = 3.0  # largest: flat directions (prior-dominated) keep an O(1) scale
_MODE_ITERATIONS = 100  # L-BFGS iterations when searching for the mode
_HESSIAN_STEP = 1e-4  # central-difference step of the gradient


@dataclass(frozen=True, kw_only=True)
class Whitening:
    """θ = center + scale_PP z.

    Attributes:
        center_P: the mode found (or the best start when the search failed).
        scale_PP: the square root of the Laplace covariance (identity when it failed).
    """

    center_P: Tensor
    scale_PP: Tensor

    def to_theta(self, z: Tensor) -> Tensor:
        """Map z of shape (..., P) to θ."""
        return self.center_P + z @ self.scale_PP.T

    def to_z(self, theta: Tensor) -> Tensor:
        """Map θ of shape (..., P) to z."""
        solved = torch.linalg.solve(self.scale_PP, (theta - self.center_P).unsqueeze(-1))
        return solved.squeeze(-1)

    def wrap(self, log_density: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        """The log density in z (the Jacobian |det S| is a constant and is left out)."""
        return lambda z_P: log_density(self.to_theta(z_P))


def _gradient(log_density: Callable[[Tensor], Tensor], theta_P: Tensor) -> Tensor:
    theta_P = theta_P.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_density(theta_P), theta_P)
    return grad


def _mode(log_density: Callable[[Tensor], Tensor], start_P: Tensor) -> Tensor:
    theta_P = start_P.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta_P], max_iter=_MODE_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -log_density(theta_P)
        if torch.isfinite(loss):
            loss.backward()
        return loss

    optimizer.step(closure)
    return theta_P.detach()


def _scale_from_hessian(log_density: Callable[[Tensor], Tensor], mode_P: Tensor) -> Tensor:
    """S = V Λ^{-1/2} from the central-difference Hessian of -log p, eigenvalues clipped."""
    p = mode_P.shape[0]
    columns = []
    for j in range(p):
        step = torch.zeros(p, dtype=_DTYPE)
        step[j] = _HESSIAN_STEP
        diff = _gradient(log_density, mode_P + step) - _gradient(log_density, mode_P - step)
        columns.append(-diff / (2 * _HESSIAN_STEP))
    hessian = torch.stack(columns, dim=1)
    eigenvalues, vectors = torch.linalg.eigh(0.5 * (hessian + hessian.T))
    clipped = eigenvalues.clamp(1 / MAX_SCALE**2, 1 / MIN_SCALE**2)
    return vectors * clipped.rsqrt()


def laplace_whitening(log_density: Callable[[Tensor], Tensor], starts_CP: Tensor) -> Whitening:
    """Fit `Whitening` from the best of the starts; fall back to no whitening on failure.

    Args:
        log_density: θ (P,) float64 to a differentiable 0-d log density.
        starts_CP: candidate starts (C, P); the mode search begins at the best of them.
    """
    starts_CP = starts_CP.detach().to(_DTYPE)
    with torch.no_grad():
        values = torch.stack([log_density(theta) for theta in starts_CP])
    best_P = starts_CP[int(values.argmax())]
    identity = Whitening(center_P=best_P, scale_PP=torch.eye(best_P.shape[0], dtype=_DTYPE))
    try:
        mode_P = _mode(log_density, best_P)
        with torch.no_grad():
            improved = float(log_density(mode_P)) >= float(values.max())
        if not (torch.isfinite(mode_P).all() and improved):
            raise ArithmeticError("the mode search did not improve on the starts")
        scale_PP = _scale_from_hessian(log_density, mode_P)
        if not torch.isfinite(scale_PP).all():
            raise ArithmeticError("the Hessian at the mode is not finite")
    except (ArithmeticError, RuntimeError) as error:
        logger.info("Laplace whitening failed (%s); sampling without it", error)
        return identity
    logger.debug("Laplace whitening: log-det of the scale %.3f", float(scale_PP.slogdet()[1]))
    if not math.isfinite(float(scale_PP.slogdet()[1])):
        return identity
    return Whitening(center_P=mode_P, scale_PP=scale_PP)
