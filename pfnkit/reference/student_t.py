"""Exact Student-t-process regression: the scale posterior, the predictive, the marginal likelihood.

The model is a Gaussian process whose covariance and noise share one inverse-gamma scale:

    σ² ~ InvGamma(α, β),    y | σ² ~ N(0, σ² C),    C = K + σ_n² I,

i.e. y is multivariate t with 2α degrees of freedom and scale matrix (β/α) C (a Student-t
process; Shah, Wilson & Ghahramani, arXiv 1402.4306, whose TP(ν, φ, K) is this model with
ν = 2α and K = β/(α − 1) · C when α > 1). With n context points and the Mahalanobis
term m = yᵀ C⁻¹ y, conjugacy gives

    σ² | y ~ InvGamma(α + n/2, β + m/2),
    y* | y ~ t_{2α+n}(k*ᵀ C⁻¹ y, (2β + m)/(2α + n) · (k** + σ_n² − k*ᵀ C⁻¹ k*)),

one Student-t per query point (its scale² is the Gaussian predictive variance times a
data-dependent factor: a Gaussian-process posterior whose uncertainty grows when the
context is surprising). Functions take kernel matrices, not priors: the caller computes
K with any kernel. Everything runs in float64 through a Cholesky factor of C.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import InverseGamma, StudentT

from pfnkit.data import check_finite

__all__ = [
    "student_t_log_marginal_likelihood",
    "student_t_predictive",
    "student_t_scale_posterior",
]

_DTYPE = torch.float64


def _per_task(name: str, value: float | Tensor, batch_size: int, like: Tensor) -> Tensor:
    """A positive scalar or (B,) tensor as a float64 (B,) tensor on `like`'s device."""
    tensor = torch.as_tensor(value, dtype=_DTYPE, device=like.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(batch_size)
    if tuple(tensor.shape) != (batch_size,):
        raise ValueError(f"{name} must be a scalar or ({batch_size},), got {tuple(tensor.shape)}")
    if not bool((torch.isfinite(tensor) & (tensor > 0)).all()):
        raise ValueError(f"{name} must be finite and positive, got {tensor.tolist()}")
    return tensor


def _context_cholesky(k_ctx_BNN: Tensor, noise_B: Tensor) -> Tensor:
    """Lower Cholesky factor of C = K + σ_n² I, with an error that says what to do."""
    n = k_ctx_BNN.shape[-1]
    eye = torch.eye(n, dtype=_DTYPE, device=k_ctx_BNN.device)
    chol_BNN, info_B = torch.linalg.cholesky_ex(k_ctx_BNN + noise_B[:, None, None] * eye)
    if bool((info_B > 0).any()):
        bad = (info_B > 0).nonzero().flatten().tolist()
        raise ValueError(
            f"K + noise·I is not positive definite for task(s) {bad}; check that the kernel "
            "matrix is symmetric positive semi-definite and the noise variance positive"
        )
    return chol_BNN


def _whitened_context(
    k_ctx_BNN: Tensor, y_ctx_BN: Tensor, noise: float | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(L, L⁻¹y, m = yᵀC⁻¹y) in float64, after checking shapes and values."""
    if k_ctx_BNN.ndim != 3 or y_ctx_BN.ndim != 2:
        raise ValueError(
            f"expected k_ctx (B, N, N) and y_ctx (B, N), got {tuple(k_ctx_BNN.shape)} "
            f"and {tuple(y_ctx_BN.shape)}"
        )
    b, n = y_ctx_BN.shape
    if tuple(k_ctx_BNN.shape) != (b, n, n):
        raise ValueError(f"k_ctx must have shape {(b, n, n)}, got {tuple(k_ctx_BNN.shape)}")
    check_finite("k_ctx", k_ctx_BNN)
    check_finite("y_ctx", y_ctx_BN)
    k_ctx_BNN, y_ctx_BN = k_ctx_BNN.to(_DTYPE), y_ctx_BN.to(_DTYPE)
    chol_BNN = _context_cholesky(k_ctx_BNN, _per_task("noise", noise, b, k_ctx_BNN))
    white_BN = torch.linalg.solve_triangular(chol_BNN, y_ctx_BN[..., None], upper=False)[..., 0]
    return chol_BNN, white_BN, (white_BN**2).sum(-1)


def student_t_scale_posterior(
    k_ctx_BNN: Tensor,
    y_ctx_BN: Tensor,
    *,
    concentration: float | Tensor,
    rate: float | Tensor,
    noise: float | Tensor,
) -> InverseGamma:
    """The posterior of the scale σ² given the context: InvGamma(α + n/2, β + yᵀC⁻¹y/2).

    Args:
        k_ctx_BNN: base kernel matrix of the context, K(x_ctx, x_ctx), shape (B, N, N).
        y_ctx_BN: context targets, shape (B, N).
        concentration: α of the scale prior, a float or (B,).
        rate: β of the scale prior, a float or (B,).
        noise: noise variance σ_n² before scaling, a float or (B,).

    Returns:
        ``InverseGamma`` with batch_shape (B,), float64.
    """
    _, _, mahal_B = _whitened_context(k_ctx_BNN, y_ctx_BN, noise)
    b, n = y_ctx_BN.shape
    alpha_B = _per_task("concentration", concentration, b, mahal_B)
    beta_B = _per_task("rate", rate, b, mahal_B)
    return InverseGamma(alpha_B + 0.5 * n, beta_B + 0.5 * mahal_B)


def student_t_predictive(
    k_ctx_BNN: Tensor,
    k_qry_ctx_BMN: Tensor,
    k_qry_BM: Tensor,
    y_ctx_BN: Tensor,
    *,
    concentration: float | Tensor,
    rate: float | Tensor,
    noise: float | Tensor,
    observed: bool = True,
) -> StudentT:
    """The exact posterior predictive of a Student-t process at M query points.

    Args:
        k_ctx_BNN: base kernel matrix of the context, K(x_ctx, x_ctx), shape (B, N, N).
        k_qry_ctx_BMN: cross-covariances K(x_qry, x_ctx), shape (B, M, N).
        k_qry_BM: prior variances k(x*, x*) of the query points, shape (B, M).
        y_ctx_BN: context targets, shape (B, N); N = 0 gives the prior predictive.
        concentration: α of the scale prior, a float or (B,).
        rate: β of the scale prior, a float or (B,).
        noise: noise variance σ_n² before scaling, a float or (B,).
        observed: predict a noisy target y* (default) or the latent f(x*).

    Returns:
        ``StudentT(df, loc, scale)`` with batch_shape (B, M), float64; df = 2α + N.
    """
    chol_BNN, white_BN, mahal_B = _whitened_context(k_ctx_BNN, y_ctx_BN, noise)
    b, n = y_ctx_BN.shape
    m = k_qry_BM.shape[-1]
    if tuple(k_qry_ctx_BMN.shape) != (b, m, n) or tuple(k_qry_BM.shape) != (b, m):
        raise ValueError(
            f"expected k_qry_ctx {(b, m, n)} and k_qry {(b, m)}, got "
            f"{tuple(k_qry_ctx_BMN.shape)} and {tuple(k_qry_BM.shape)}"
        )
    check_finite("k_qry_ctx", k_qry_ctx_BMN)
    check_finite("k_qry", k_qry_BM)
    alpha_B = _per_task("concentration", concentration, b, mahal_B)
    beta_B = _per_task("rate", rate, b, mahal_B)
    noise_B = _per_task("noise", noise, b, mahal_B)
    cross_BNM = torch.linalg.solve_triangular(
        chol_BNN, k_qry_ctx_BMN.to(_DTYPE).transpose(-1, -2), upper=False
    )
    loc_BM = (cross_BNM * white_BN[..., None]).sum(-2)
    variance_BM = k_qry_BM.to(_DTYPE) - (cross_BNM**2).sum(-2)
    if observed:
        variance_BM = variance_BM + noise_B[:, None]
    variance_BM = variance_BM.clamp_min(torch.finfo(_DTYPE).tiny)
    df_B = 2.0 * alpha_B + n
    factor_B = (2.0 * beta_B + mahal_B) / df_B
    scale_BM = (factor_B[:, None] * variance_BM).sqrt()
    return StudentT(df_B[:, None].expand(b, m), loc_BM, scale_BM)


def student_t_log_marginal_likelihood(
    k_ctx_BNN: Tensor,
    y_ctx_BN: Tensor,
    *,
    concentration: float | Tensor,
    rate: float | Tensor,
    noise: float | Tensor,
) -> Tensor:
    """log p(y_ctx) under the Student-t process, shape (B,), float64.

    log p(y) = log Γ(α + n/2) − log Γ(α) − (n/2) log(2πβ) − ½ log|C| − (α + n/2) log(1 + m/(2β)),
    the multivariate t density with 2α degrees of freedom and scale matrix (β/α) C.
    """
    chol_BNN, _, mahal_B = _whitened_context(k_ctx_BNN, y_ctx_BN, noise)
    b, n = y_ctx_BN.shape
    alpha_B = _per_task("concentration", concentration, b, mahal_B)
    beta_B = _per_task("rate", rate, b, mahal_B)
    half_logdet_B = chol_BNN.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return (
        torch.lgamma(alpha_B + 0.5 * n)
        - torch.lgamma(alpha_B)
        - 0.5 * n * (math.log(2.0 * math.pi) + beta_B.log())
        - half_logdet_B
        - (alpha_B + 0.5 * n) * torch.log1p(mahal_B / (2.0 * beta_B))
    )
