"""The exact GP in plain torch (one Cholesky): a stationary kernel plus an optional linear part.

The covariance of y at inputs x (model units) is

    K(x, x') = σ_f² k(|(x − x') / ℓ|) + Σ_j v_j x_j x'_j + σ_n² δ(x, x'),

with k one of ``KERNELS`` (RBF or Matérn), ARD lengthscales ℓ, outputscale σ_f², noise
variance σ_n² and, when present, the linear ARD part with weight variances v_j ≥ 0 (a GP
whose functions include x·β with β_j ~ N(0, v_j)). `cholesky_lml_fn` gives the log
marginal likelihood NUTS calls thousands of times per task; `cholesky_gp_predictive` the
posterior predictive of y at query points. Both form distances from explicit differences,
so they agree with gpytorch's `exact_gp` (which has no linear part) to rounding, as tests
check, and with a dense Gaussian computed independently when the linear part is on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pfnkit.data import check_finite
from pfnkit.reference.exact_gp import KERNELS, GaussianPredictive, GPHyperparameters
from pfnkit.reference.exact_gp_model import check_context, check_lengthscale, check_query

__all__ = [
    "LinearGPHyperparameters",
    "cholesky_gp_predictive",
    "cholesky_lml_fn",
    "gp_covariance",
]

_DTYPE = torch.float64
_TINY_SQUARED_DISTANCE = 1e-300  # the diagonal's distance is 0: keeps sqrt's gradient finite


@dataclass(frozen=True, kw_only=True)
class LinearGPHyperparameters:
    """A stationary GP (`GPHyperparameters`) plus a linear ARD part Σ_j v_j x_j x'_j.

    Attributes:
        stationary: kernel, lengthscales, outputscale and noise variance.
        linear_variance: the weight variances v_j, shape (D,), finite and >= 0 (float64).
    """

    stationary: GPHyperparameters
    linear_variance: Tensor

    def __post_init__(self) -> None:
        variance = torch.as_tensor(self.linear_variance, dtype=_DTYPE).detach()
        if variance.ndim != 1 or variance.numel() == 0:
            raise ValueError(
                f"linear_variance must be a (D,) vector, got shape {tuple(variance.shape)}"
            )
        if not (torch.isfinite(variance).all() and (variance >= 0).all()):
            raise ValueError(
                f"linear_variance must be finite and non-negative, got {variance.tolist()}"
            )
        check_lengthscale(self.stationary.lengthscale.numel(), variance.numel())
        object.__setattr__(self, "linear_variance", variance)

    @property
    def kernel(self) -> str:
        return self.stationary.kernel


def _kernel_of_distance(kernel: str, r: Tensor) -> Tensor:
    """k(r) / outputscale for the scaled distance r = |(x - x') / lengthscale|."""
    if kernel == "rbf":
        return torch.exp(-0.5 * r * r)
    if kernel == "matern12":
        return torch.exp(-r)
    if kernel == "matern32":
        s = math.sqrt(3.0) * r
        return (1.0 + s) * torch.exp(-s)
    s = math.sqrt(5.0) * r  # matern52
    return (1.0 + s + s * s / 3.0) * torch.exp(-s)


def _stationary(
    kernel: str, diff_ABD: Tensor, lengthscale_D: Tensor, outputscale: Tensor
) -> Tensor:
    """σ_f² k(|(x − x') / ℓ|) from the differences x − x' of shape (A, B, D); shape (A, B)."""
    squared_AB = (diff_ABD / lengthscale_D.to(_DTYPE).reshape(-1)).pow(2).sum(-1)
    r_AB = squared_AB.clamp_min(_TINY_SQUARED_DISTANCE).sqrt()
    return outputscale.to(_DTYPE) * _kernel_of_distance(kernel, r_AB)


def _linear(x1_AD: Tensor, x2_BD: Tensor, linear_variance_D: Tensor) -> Tensor:
    """Σ_j v_j x1_j x2_j, shape (A, B)."""
    return (x1_AD * linear_variance_D.to(_DTYPE)) @ x2_BD.T


def _parts(
    hyper: GPHyperparameters | LinearGPHyperparameters,
) -> tuple[GPHyperparameters, Tensor | None]:
    """The stationary hyperparameters and the linear weight variances (None: no linear part)."""
    if isinstance(hyper, LinearGPHyperparameters):
        return hyper.stationary, hyper.linear_variance
    return hyper, None


def gp_covariance(
    x1_AD: Tensor, x2_BD: Tensor, hyper: GPHyperparameters | LinearGPHyperparameters
) -> Tensor:
    """The noise-free covariance K(x1, x2) of f, shape (A, B), float64 (module docstring)."""
    gp, linear_variance_D = _parts(hyper)
    x1_AD, x2_BD = x1_AD.to(_DTYPE), x2_BD.to(_DTYPE)
    check_lengthscale(gp.lengthscale.numel(), x1_AD.shape[1])
    outputscale = torch.tensor(gp.outputscale, dtype=_DTYPE)
    cov_AB = _stationary(
        gp.kernel, x1_AD[:, None, :] - x2_BD[None, :, :], gp.lengthscale, outputscale
    )
    if linear_variance_D is not None:
        cov_AB = cov_AB + _linear(x1_AD, x2_BD, linear_variance_D)
    return cov_AB


def cholesky_lml_fn(x_ctx_ND: Tensor, y_ctx_N: Tensor, *, kernel: str) -> Callable[..., Tensor]:
    """The exact GP log marginal likelihood as a plain-torch function of the hyperparameters.

    Same contract as `exact_gp.log_marginal_likelihood_fn` (zero mean, a scaled ARD kernel,
    Gaussian noise; lengthscales (D,) or (1,), 0-d outputscale and noise; the total
    ``log p(y | x, θ)``), but one Cholesky factorisation with no gpytorch model in between:
    NUTS calls it thousands of times per task. An optional fourth argument, the linear
    weight variances v (D,), adds the linear part Σ_j v_j x_j x'_j to the covariance; None
    (the default) leaves it out. It returns -inf where the covariance is not numerically
    positive definite, which NUTS treats as a divergence.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    check_finite("x_ctx", x_ctx_ND)
    check_finite("y_ctx", y_ctx_N)
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    n_points, n_features = x_ctx_ND.shape
    diff_NND = x_ctx_ND[:, None, :] - x_ctx_ND[None, :, :]
    eye_NN = torch.eye(n_points, dtype=_DTYPE)
    constant = 0.5 * n_points * math.log(2.0 * math.pi)

    def lml(
        lengthscale_D: Tensor, outputscale: Tensor, noise: Tensor,
        linear_variance_D: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        check_lengthscale(lengthscale_D.numel(), n_features)
        cov_NN = _stationary(kernel, diff_NND, lengthscale_D, outputscale)
        cov_NN = cov_NN + noise.to(_DTYPE) * eye_NN
        if linear_variance_D is not None:
            if linear_variance_D.shape != (n_features,):
                raise ValueError(
                    f"linear_variance must have shape ({n_features},), one per feature of "
                    f"x, got {tuple(linear_variance_D.shape)}"
                )
            cov_NN = cov_NN + _linear(x_ctx_ND, x_ctx_ND, linear_variance_D)
        chol_NN, info = torch.linalg.cholesky_ex(cov_NN)
        if int(info) != 0:
            return lengthscale_D.sum() * 0.0 - math.inf
        alpha_N = torch.cholesky_solve(y_ctx_N[:, None], chol_NN)[:, 0]
        return -0.5 * (y_ctx_N @ alpha_N) - chol_NN.diagonal().log().sum() - constant

    return lml


def cholesky_gp_predictive(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    x_qry_MD: Tensor,
    hyper: GPHyperparameters | LinearGPHyperparameters,
) -> GaussianPredictive:
    """Exact posterior predictive of y at query points under fixed hyperparameters.

    The GP posterior given the context, by one Cholesky factorisation in float64: mean
    K_qc K_cc⁻¹ y and variance k(x*, x*) − K_qc K_cc⁻¹ K_cq + σ_n², where K includes the
    linear part when ``hyper`` is `LinearGPHyperparameters`.

    Args:
        x_ctx_ND: context inputs, shape (N, D).
        y_ctx_N: context targets, shape (N,).
        x_qry_MD: query inputs, shape (M, D).
        hyper: the stationary GP's hyperparameters, with or without a linear part.

    Returns:
        Predictive mean and variance of y (noise included), each shape (M,), float64.

    Raises:
        ValueError: the context covariance is not numerically positive definite.
    """
    check_context(x_ctx_ND, y_ctx_N)
    check_query(x_ctx_ND, x_qry_MD)
    gp, linear_variance_D = _parts(hyper)
    x_ctx_ND, y_ctx_N, x_qry_MD = (t.to(_DTYPE) for t in (x_ctx_ND, y_ctx_N, x_qry_MD))
    cov_NN = gp_covariance(x_ctx_ND, x_ctx_ND, hyper)
    cov_NN = cov_NN + gp.noise * torch.eye(x_ctx_ND.shape[0], dtype=_DTYPE)
    cross_MN = gp_covariance(x_qry_MD, x_ctx_ND, hyper)
    prior_var_M = torch.full((x_qry_MD.shape[0],), gp.outputscale, dtype=_DTYPE)  # k(0) = 1
    if linear_variance_D is not None:
        prior_var_M = prior_var_M + (x_qry_MD.pow(2) * linear_variance_D).sum(-1)
    chol_NN, info = torch.linalg.cholesky_ex(cov_NN)
    if int(info) != 0:
        raise ValueError(
            "the context covariance is not positive definite; raise the noise variance"
        )
    mean_M = cross_MN @ torch.cholesky_solve(y_ctx_N[:, None], chol_NN)[:, 0]
    half_NM = torch.linalg.solve_triangular(chol_NN, cross_MN.T, upper=False)
    variance_M = (prior_var_M - half_NM.pow(2).sum(0)).clamp_min(0.0) + gp.noise
    return GaussianPredictive(mean=mean_M, variance=variance_M)
