"""ML-II for a GP with a linear part: the marginal-likelihood maximum of stationary + linear ARD.

`pfnkit.reference.exact_gp.fit_ml2` fits a stationary GP (gpytorch). A prior whose tasks
have a linear part (``linear_weight`` on the card) needs the same kind of baseline for the
kernel it draws from, σ_f² k(|(x − x') / ℓ|) + Σ_j v_j x_j x'_j + σ_n² δ: this module
maximises `cholesky_lml_fn` (with its linear argument) over log ℓ, log σ_f², log v and
log (σ_n² − noise_lower_bound) with L-BFGS (strong-Wolfe line search) in float64, one
deterministic restart per lengthscale start, and keeps the best finite one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.reference.exact_gp_model import check_context, check_kernel
from pfnkit.reference.gp_cholesky import LinearGPHyperparameters, cholesky_lml_fn

__all__ = ["fit_ml2_linear"]

logger = logging.getLogger(__name__)

_DTYPE = torch.float64


def _start(
    x_ND: Tensor, y_N: Tensor, factor: float, noise_lower_bound: float
) -> Tensor:  # fmt: skip
    """φ at the start: ℓ = factor × std(x_j), σ_f² = Var(y) / 2, Σ_j v_j E[x_j²] = Var(y) / 2."""
    n_points, n_features = x_ND.shape
    std_D = x_ND.std(dim=0) if n_points > 1 else torch.ones(n_features, dtype=_DTYPE)
    std_D = torch.where(std_D > 0, std_D, 1.0)
    y_var = float(y_N.var()) if n_points > 1 else 0.0
    y_var = y_var if y_var > 0 else 1.0
    second_moment_D = x_ND.pow(2).mean(0)
    second_moment_D = torch.where(second_moment_D > 0, second_moment_D, 1.0)
    linear_D = y_var / (2 * n_features * second_moment_D)
    noise = max(y_var / 10.0, 10.0 * noise_lower_bound) - noise_lower_bound
    scalars = torch.tensor([y_var / 2, noise], dtype=_DTYPE)
    return torch.cat([(factor * std_D).log(), scalars.log(), linear_D.log()])


def _unpack(phi_P: Tensor, n_features: int, noise_lower_bound: float) -> tuple[Tensor, ...]:
    d = n_features
    noise = phi_P[d + 1].exp() + noise_lower_bound
    return phi_P[:d].exp(), phi_P[d].exp(), noise, phi_P[d + 2 :].exp()


def _maximise(
    lml: Callable[..., Tensor], start_P: Tensor, n_features: int, steps: int,
    noise_lower_bound: float,
) -> tuple[Tensor, float]:  # fmt: skip
    """One L-BFGS run from ``start_P``: (φ, lml at φ; -inf where φ maps outside (0, ∞))."""
    phi_P = start_P.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [phi_P], lr=1.0, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -lml(*_unpack(phi_P, n_features, noise_lower_bound))
        if torch.isfinite(loss):
            loss.backward()
        return loss

    try:
        optimizer.step(closure)
    except IndexError:  # torch's strong-Wolfe search fails on a non-finite bracket
        logger.debug("linear ML-II line search hit a non-finite loss; scoring the last point")
    with torch.no_grad():
        values = _unpack(phi_P, n_features, noise_lower_bound)
        lengthscale_D, outputscale, noise, linear_D = values
        usable = torch.cat([lengthscale_D, outputscale.reshape(1), noise.reshape(1)])
        if not (
            torch.isfinite(usable).all() and (usable > 0).all() and torch.isfinite(linear_D).all()
        ):
            return phi_P.detach(), -math.inf
        return phi_P.detach(), float(lml(*values))


def fit_ml2_linear(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    *,
    kernel: str = "matern52",
    steps: int = 200,
    noise_lower_bound: float = 1e-6,
    lengthscale_inits: Sequence[float] = (0.3, 1.0, 3.0),
) -> LinearGPHyperparameters:
    """Type-II maximum likelihood hyperparameters of a zero-mean GP with a linear ARD part.

    Args:
        x_ctx_ND: inputs, shape (N, D).
        y_ctx_N: targets, shape (N,).
        kernel: the stationary kernel, one of ``KERNELS``.
        steps: maximum L-BFGS iterations per restart.
        noise_lower_bound: the noise variance is kept above this value.
        lengthscale_inits: initial lengthscales, in units of each feature's std (one
            restart each; the outputscale and the linear part start at half of Var(y) each).

    Returns:
        The restart with the highest finite marginal likelihood.

    Raises:
        RuntimeError: if every restart ended at a non-finite marginal likelihood.
    """
    check_context(x_ctx_ND, y_ctx_N)
    check_kernel(kernel)
    if steps < 1 or not noise_lower_bound >= 0 or len(lengthscale_inits) == 0:
        raise ValueError(
            "need steps >= 1, noise_lower_bound >= 0 and at least one lengthscale init; got "
            f"{steps}, {noise_lower_bound} and {lengthscale_inits}"
        )
    x_ND, y_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    lml = cholesky_lml_fn(x_ND, y_N, kernel=kernel)
    n_features = x_ND.shape[1]
    best, best_lml = None, -math.inf
    for factor in lengthscale_inits:
        start_P = _start(x_ND, y_N, factor, noise_lower_bound)
        phi_P, value = _maximise(lml, start_P, n_features, steps, noise_lower_bound)
        logger.debug("linear ML-II restart from lengthscale factor %g: lml=%.6f", factor, value)
        if math.isfinite(value) and value > best_lml:
            best, best_lml = phi_P, value
    if best is None:
        raise RuntimeError(
            "every linear ML-II restart failed; standardise x and y or raise noise_lower_bound"
        )
    lengthscale_D, outputscale, noise, linear_D = _unpack(best, n_features, noise_lower_bound)
    stationary = GPHyperparameters(
        lengthscale=lengthscale_D, outputscale=float(outputscale), noise=float(noise),
        kernel=kernel,
    )  # fmt: skip
    return LinearGPHyperparameters(stationary=stationary, linear_variance=linear_D)
