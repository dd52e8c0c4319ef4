"""Exact Gaussian-process regression in float64 with gpytorch: the oracle for GP priors.

The marginal likelihood at given hyperparameters, as a value or a differentiable function
of them, and ML-II fitting of them, on the model of `pfnkit.reference.exact_gp_model`.
The posterior predictive lives in `pfnkit.reference.exact_gp_posterior`; it, KERNELS and
GPHyperparameters are re-exported here, so every name this module always had is still here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence

import gpytorch
import torch
from linear_operator.utils import errors
from torch import Tensor
from torch.func import functional_call

from pfnkit.reference.exact_gp_model import (
    KERNELS,
    GPHyperparameters,
    build_model,
    check_context,
    check_kernel,
    check_lengthscale,
    exact_settings,
    fixed_model,
    set_hyperparameters,
)
from pfnkit.reference.exact_gp_posterior import (
    GaussianPredictive,
    exact_gp_predictive,
    exact_gp_predictive_batch,
)

__all__ = [
    "KERNELS",
    "GPHyperparameters",
    "GaussianPredictive",
    "exact_gp_predictive",
    "exact_gp_predictive_batch",
    "fit_ml2",
    "log_marginal_likelihood",
    "log_marginal_likelihood_fn",
]

logger = logging.getLogger(__name__)

_DTYPE = torch.float64


def log_marginal_likelihood(x_ctx_ND: Tensor, y_ctx_N: Tensor, hyper: GPHyperparameters) -> Tensor:
    """Exact log marginal likelihood ``log p(y_ctx | x_ctx, hyper)`` (total, not per point).

    Args:
        x_ctx_ND: context inputs, shape (N, D).
        y_ctx_N: context targets, shape (N,).
        hyper: kernel, lengthscales, outputscale and noise variance.

    Returns:
        Scalar float64 tensor, differentiable with respect to the data.
    """
    check_context(x_ctx_ND, y_ctx_N)
    check_lengthscale(hyper.lengthscale.numel(), x_ctx_ND.shape[1])
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE), y_ctx_N.to(_DTYPE)
    model, likelihood = fixed_model(x_ctx_ND, y_ctx_N, hyper)
    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    with exact_settings():
        # ExactMarginalLogLikelihood divides by N; undo it to get the total.
        return mll(model(x_ctx_ND), y_ctx_N) * y_ctx_N.shape[0]


class _MarginalLikelihood(torch.nn.Module):
    """``mll(model(x), y)`` as one module, so `functional_call` covers the lazy kernel too."""

    def __init__(self, mll: gpytorch.mlls.ExactMarginalLogLikelihood) -> None:
        super().__init__()
        self.mll = mll

    def forward(self, x_ND: Tensor, y_N: Tensor) -> Tensor:
        return self.mll(self.mll.model(x_ND), y_N)


def log_marginal_likelihood_fn(
    x_ctx_ND: Tensor, y_ctx_N: Tensor, *, kernel: str
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """`log_marginal_likelihood` as a function of the hyperparameters, differentiable in them.

    The gpytorch model is built once; each call swaps the hyperparameter tensors in with
    `torch.func.functional_call`, so their autograd graph reaches the result. This is the
    log density a sampler over GP hyperparameters (e.g. NUTS) needs.

    Args:
        x_ctx_ND: context inputs, shape (N, D).
        y_ctx_N: context targets, shape (N,).
        kernel: one of ``KERNELS``.

    Returns:
        ``lml(lengthscale_D, outputscale, noise)``: lengthscales of shape (D,) (or (1,),
        shared), a 0-d outputscale and a 0-d noise variance, all positive float64 tensors,
        to the scalar ``log p(y_ctx | x_ctx, hyperparameters)`` (total, not per point).
    """
    check_context(x_ctx_ND, y_ctx_N)
    check_kernel(kernel)
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    model, likelihood = build_model(x_ctx_ND, y_ctx_N, kernel, noise_lower_bound=0.0)
    for param in (*model.parameters(), *likelihood.parameters()):
        param.requires_grad_(False)
    model.train()
    likelihood.train()
    objective = _MarginalLikelihood(gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model))
    scale_kernel = model.covar_module
    lengthscale_constraint = scale_kernel.base_kernel.raw_lengthscale_constraint
    outputscale_constraint = scale_kernel.raw_outputscale_constraint
    noise_constraint = likelihood.noise_covar.raw_noise_constraint
    n_points, n_features = x_ctx_ND.shape

    def lml(lengthscale_D: Tensor, outputscale: Tensor, noise: Tensor) -> Tensor:
        check_lengthscale(lengthscale_D.numel(), n_features)
        lengthscale_1D = lengthscale_D.to(_DTYPE).reshape(1, -1).expand(1, n_features)
        raw = {
            "mll.model.covar_module.base_kernel.raw_lengthscale": (
                lengthscale_constraint.inverse_transform(lengthscale_1D)
            ),
            "mll.model.covar_module.raw_outputscale": outputscale_constraint.inverse_transform(
                outputscale.to(_DTYPE).reshape(())
            ),
            "mll.likelihood.noise_covar.raw_noise": noise_constraint.inverse_transform(
                noise.to(_DTYPE).reshape(1)
            ),
        }
        with exact_settings():  # the kernel is evaluated lazily: keep the swap until the end
            value = functional_call(objective, raw, (x_ctx_ND, y_ctx_N))
        return value * n_points  # ExactMarginalLogLikelihood divides by N

    return lml


def _optimise(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    init: GPHyperparameters,
    *,
    steps: int,
    lr: float,
    noise_lower_bound: float,
) -> GPHyperparameters:
    """One L-BFGS run on the exact marginal likelihood from ``init``."""
    model, likelihood = build_model(x_ctx_ND, y_ctx_N, init.kernel, noise_lower_bound)
    set_hyperparameters(model, likelihood, init)
    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.LBFGS(
        model.parameters(),  # includes the likelihood's noise
        lr=lr,
        max_iter=steps,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = -mll(model(x_ctx_ND), y_ctx_N)
        loss.backward()
        return loss

    with exact_settings():
        optimizer.step(closure)
    return GPHyperparameters(
        lengthscale=model.covar_module.base_kernel.lengthscale.detach().reshape(-1).cpu(),
        outputscale=model.covar_module.outputscale.item(),
        noise=likelihood.noise.item(),
        kernel=init.kernel,
    )


def _check_ml2_arguments(
    kernel: str, steps: int, lr: float, noise_lower_bound: float, lengthscale_inits: Sequence
) -> None:
    """Raise a ValueError for a `fit_ml2` setting it cannot run with."""
    check_kernel(kernel)
    if steps < 1 or not lr > 0 or not noise_lower_bound >= 0 or len(lengthscale_inits) == 0:
        raise ValueError(
            "need steps >= 1, lr > 0, noise_lower_bound >= 0 and at least one lengthscale init; "
            f"got steps={steps}, lr={lr}, noise_lower_bound={noise_lower_bound}, "
            f"lengthscale_inits={lengthscale_inits}"
        )


def _ml2_starts(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    kernel: str,
    noise_lower_bound: float,
    lengthscale_inits: Sequence[float],
) -> Iterator[tuple[float, GPHyperparameters]]:
    """Each restart's lengthscale factor and start (scaled by the data, as `fit_ml2` says)."""
    n_points = x_ctx_ND.shape[0]
    feature_std_D = x_ctx_ND.std(dim=0) if n_points > 1 else torch.ones(x_ctx_ND.shape[1])
    feature_std_D = torch.where(feature_std_D > 0, feature_std_D, 1.0).cpu()
    y_var = float(y_ctx_N.var()) if n_points > 1 else 0.0
    y_var = y_var if y_var > 0 else 1.0
    for factor in lengthscale_inits:
        init = GPHyperparameters(
            lengthscale=factor * feature_std_D,
            outputscale=y_var,
            noise=max(y_var / 10.0, 10.0 * noise_lower_bound),
            kernel=kernel,
        )
        yield factor, init


def fit_ml2(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    *,
    kernel: str = "rbf",
    steps: int = 200,
    lr: float = 1.0,
    noise_lower_bound: float = 1e-6,
    lengthscale_inits: Sequence[float] = (0.3, 1.0, 3.0),
) -> GPHyperparameters:
    """Type-II maximum likelihood (ML-II) hyperparameters of a zero-mean GP.

    Maximises the exact marginal likelihood over ARD lengthscales, outputscale and noise
    variance with L-BFGS (strong-Wolfe line search) in float64. One deterministic restart per
    entry of ``lengthscale_inits``: lengthscales start at that factor times each feature's
    standard deviation, the outputscale at Var(y) and the noise at Var(y) / 10. The restart
    with the highest marginal likelihood wins. The model has no mean function, so centre y
    first if its mean is far from zero.

    Args:
        x_ctx_ND: inputs, shape (N, D).
        y_ctx_N: targets, shape (N,).
        kernel: one of ``KERNELS``.
        steps: maximum L-BFGS iterations per restart.
        lr: L-BFGS step size (1.0 is the natural value with a line search).
        noise_lower_bound: the noise variance is kept above this value.
        lengthscale_inits: initial lengthscales, in units of each feature's std.

    Returns:
        The best hyperparameters found.

    Raises:
        RuntimeError: if every restart failed numerically.
    """
    check_context(x_ctx_ND, y_ctx_N)
    _check_ml2_arguments(kernel, steps, lr, noise_lower_bound, lengthscale_inits)
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    best, best_lml = None, -math.inf
    starts = _ml2_starts(x_ctx_ND, y_ctx_N, kernel, noise_lower_bound, lengthscale_inits)
    for factor, init in starts:
        try:
            fitted = _optimise(
                x_ctx_ND, y_ctx_N, init, steps=steps, lr=lr, noise_lower_bound=noise_lower_bound
            )
            lml = log_marginal_likelihood(x_ctx_ND, y_ctx_N, fitted).item()
        except (ValueError, errors.NotPSDError, errors.NanError) as err:  # NaN: L-BFGS diverged
            logger.warning("ML-II restart from lengthscale factor %g failed: %s", factor, err)
            continue
        logger.debug("ML-II restart from lengthscale factor %g: lml=%.6f", factor, lml)
        if math.isfinite(lml) and lml > best_lml:
            best, best_lml = fitted, lml
    if best is None:
        raise RuntimeError(
            "every ML-II restart failed; standardise x and y or raise noise_lower_bound"
        )
    return best
