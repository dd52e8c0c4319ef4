"""Closed-form conjugate posteriors: a Gaussian-mixture prior under a Gaussian likelihood.

A Gaussian mixture prior over a location θ with i.i.d. observations x_i ~ N(θ, Σ_obs)
gives a Gaussian mixture posterior. This is the exact oracle for the Distribution
Transformer (Whittle et al., arXiv 2502.02463) on conjugate tasks. Everything runs in
float64 with Cholesky factorisations; no matrix is inverted explicitly except through
its Cholesky factor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from pfnkit.data import check_finite

__all__ = ["conjugate_gmm_posterior", "gmm_from_covariances", "gmm_from_scale_tril"]

_DTYPE = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)


def _check_gmm_shapes(logits_BK: Tensor, means_BKD: Tensor, factor_BKDD: Tensor, what: str) -> None:
    if logits_BK.ndim != 2 or means_BKD.ndim != 3 or factor_BKDD.ndim != 4:
        raise ValueError(
            f"expected weights (B, K), means (B, K, d) and {what} (B, K, d, d); got "
            f"{tuple(logits_BK.shape)}, {tuple(means_BKD.shape)} and {tuple(factor_BKDD.shape)}"
        )
    b, k, d = means_BKD.shape
    if tuple(logits_BK.shape) != (b, k) or tuple(factor_BKDD.shape) != (b, k, d, d):
        raise ValueError(
            f"means {tuple(means_BKD.shape)} imply weights {(b, k)} and {what} {(b, k, d, d)}; "
            f"got {tuple(logits_BK.shape)} and {tuple(factor_BKDD.shape)}"
        )


def gmm_from_scale_tril(
    logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor
) -> MixtureSameFamily:
    """A batch of Gaussian mixtures from log weights, means and lower Cholesky factors.

    Args:
        logits_BK: unnormalised log mixture weights, shape (B, K).
        means_BKD: component means, shape (B, K, d).
        scale_tril_BKDD: lower-triangular Cholesky factors of the component covariances
            (positive diagonal), shape (B, K, d, d).

    Returns:
        ``MixtureSameFamily(Categorical, MultivariateNormal)`` with batch_shape (B,) and
        event_shape (d,), in the inputs' dtype.
    """
    _check_gmm_shapes(logits_BK, means_BKD, scale_tril_BKDD, "scale_tril")
    return MixtureSameFamily(
        Categorical(logits=logits_BK),
        MultivariateNormal(loc=means_BKD, scale_tril=scale_tril_BKDD),
    )


def gmm_from_covariances(
    weights_BK: Tensor, means_BKD: Tensor, covariances_BKDD: Tensor
) -> MixtureSameFamily:
    """A batch of Gaussian mixtures from weights, means and covariance matrices.

    Args:
        weights_BK: non-negative mixture weights, shape (B, K); normalised here.
        means_BKD: component means, shape (B, K, d).
        covariances_BKDD: symmetric positive definite covariances, shape (B, K, d, d).

    Returns:
        ``MixtureSameFamily(Categorical, MultivariateNormal)`` with batch_shape (B,).

    Raises:
        ValueError: on negative or all-zero weights, or a covariance that is not
            positive definite.
    """
    _check_gmm_shapes(weights_BK, means_BKD, covariances_BKDD, "covariances")
    if (weights_BK < 0).any() or not (weights_BK.sum(-1) > 0).all():
        raise ValueError("mixture weights must be non-negative with a positive sum per task")
    scale_tril_BKDD, info = torch.linalg.cholesky_ex(covariances_BKDD)
    if (info != 0).any():
        raise ValueError(
            f"{int((info != 0).sum())} component covariance(s) are not positive definite"
        )
    return gmm_from_scale_tril(weights_BK.log(), means_BKD, scale_tril_BKDD)


def _gaussian_log_density(x_BKD: Tensor, loc_BKD: Tensor, scale_tril_BKDD: Tensor) -> Tensor:
    """log N(x; loc, L Lᵀ) for each task and component, shape (B, K)."""
    diff_BKD1 = (x_BKD - loc_BKD).unsqueeze(-1)
    white_BKD = torch.linalg.solve_triangular(scale_tril_BKDD, diff_BKD1, upper=False).squeeze(-1)
    half_log_det_BK = scale_tril_BKDD.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white_BKD.pow(2).sum(-1) - half_log_det_BK - 0.5 * x_BKD.shape[-1] * _LOG_2PI


def _cholesky(matrix: Tensor, name: str) -> Tensor:
    """Cholesky factor of a symmetrised matrix, with an error naming it if that fails."""
    factor, info = torch.linalg.cholesky_ex(0.5 * (matrix + matrix.transpose(-1, -2)))
    if (info != 0).any():
        raise ValueError(f"{name} is not positive definite; check the prior and obs_cov")
    return factor


def _check_conjugate_inputs(
    logits_BK: Tensor,
    means_BKD: Tensor,
    scale_tril_BKDD: Tensor,
    x_BND: Tensor,
    obs_cov_DD: Tensor,
) -> None:
    """Raise a ValueError for shapes, log weights or values `conjugate_gmm_posterior` rejects."""
    _check_gmm_shapes(logits_BK, means_BKD, scale_tril_BKDD, "scale_tril")
    b, _, d = means_BKD.shape
    if x_BND.ndim != 3 or x_BND.shape[0] != b or x_BND.shape[2] != d:
        raise ValueError(f"observations must have shape ({b}, N, {d}), got {tuple(x_BND.shape)}")
    if tuple(obs_cov_DD.shape) != (d, d):
        raise ValueError(f"obs_cov must have shape ({d}, {d}), got {tuple(obs_cov_DD.shape)}")
    if torch.isnan(logits_BK).any() or (logits_BK == math.inf).any():
        raise ValueError("prior logits contain NaN or +inf; pass log weights (-inf means 0)")
    if not torch.isfinite(logits_BK).any(-1).all():
        raise ValueError("every task needs at least one component with a finite log weight")
    for name, tensor in (
        ("prior means", means_BKD),
        ("prior scale_tril", scale_tril_BKDD),
        ("observations", x_BND),
        ("obs_cov", obs_cov_DD),
    ):
        check_finite(name, tensor)
    if not (scale_tril_BKDD.diagonal(dim1=-2, dim2=-1) > 0).all():
        raise ValueError("prior scale_tril must have a strictly positive diagonal")


def _posterior_logits(
    logits_BK: Tensor,
    means_BKD: Tensor,
    scale_tril_BKDD: Tensor,
    x_bar_BD: Tensor,
    mean_obs_cov_DD: Tensor,
) -> Tensor:
    """Normalised posterior log weights: w'_k ∝ w_k N(x̄; μ_k, Σ_k + Σ_obs / N).

    ``mean_obs_cov_DD`` is Σ_obs / N, the covariance of the observations' mean x̄.
    """
    prior_cov_BKDD = scale_tril_BKDD.tril() @ scale_tril_BKDD.tril().transpose(-1, -2)
    marginal_chol_BKDD = _cholesky(prior_cov_BKDD + mean_obs_cov_DD, "marginal covariance")
    log_evidence_BK = _gaussian_log_density(
        x_bar_BD.unsqueeze(1).expand_as(means_BKD), means_BKD, marginal_chol_BKDD
    )
    return torch.log_softmax(torch.log_softmax(logits_BK, dim=-1) + log_evidence_BK, dim=-1)


def conjugate_gmm_posterior(
    logits_BK: Tensor,
    means_BKD: Tensor,
    scale_tril_BKDD: Tensor,
    x_BND: Tensor,
    obs_cov_DD: Tensor,
) -> MixtureSameFamily:
    """Exact posterior over θ for a Gaussian-mixture prior and x_i ~ N(θ, Σ_obs), i.i.d.

    With prior Σ_k w_k N(θ; μ_k, Σ_k), N observations with mean x̄ and known Σ_obs, the
    posterior is Σ_k w'_k N(θ; m_k, P_k) where

    - P_k = (Σ_k⁻¹ + N Σ_obs⁻¹)⁻¹,
    - m_k = P_k (Σ_k⁻¹ μ_k + N Σ_obs⁻¹ x̄),
    - w'_k ∝ w_k N(x̄; μ_k, Σ_k + Σ_obs / N), normalised in log space.

    The precision is a sum of two positive definite matrices, so it stays well
    conditioned; all solves go through Cholesky factors in float64. With N = 0 the prior
    itself is returned (in float64).

    Args:
        logits_BK: prior log mixture weights (normalisation not required), shape (B, K).
        means_BKD: prior component means, shape (B, K, d).
        scale_tril_BKDD: lower Cholesky factors of the prior component covariances,
            shape (B, K, d, d).
        x_BND: observations, shape (B, N, d); N may be 0.
        obs_cov_DD: observation covariance Σ_obs, shape (d, d), positive definite.

    Returns:
        float64 ``MixtureSameFamily(Categorical, MultivariateNormal)``, batch_shape (B,),
        event_shape (d,), on the inputs' device.
    """
    _check_conjugate_inputs(logits_BK, means_BKD, scale_tril_BKDD, x_BND, obs_cov_DD)
    b, k, d = means_BKD.shape
    logits_BK, means_BKD, scale_tril_BKDD, x_BND, obs_cov_DD = (
        t.to(_DTYPE) for t in (logits_BK, means_BKD, scale_tril_BKDD, x_BND, obs_cov_DD)
    )
    n_obs = x_BND.shape[1]
    if n_obs == 0:
        return gmm_from_scale_tril(logits_BK, means_BKD, scale_tril_BKDD.tril())

    obs_chol_DD = _cholesky(obs_cov_DD, "obs_cov")
    eye_DD = torch.eye(d, dtype=_DTYPE, device=x_BND.device)
    x_bar_BD = x_BND.mean(dim=1)
    # Precisions: Σ_k⁻¹ from the prior factors, Σ_obs⁻¹ from its factor.
    prior_prec_BKDD = torch.cholesky_inverse(scale_tril_BKDD.tril())
    obs_prec_DD = torch.cholesky_inverse(obs_chol_DD)
    post_prec_chol_BKDD = _cholesky(prior_prec_BKDD + n_obs * obs_prec_DD, "posterior precision")
    # m_k = P_k (Σ_k⁻¹ μ_k + N Σ_obs⁻¹ x̄)
    prior_term_BKD1 = torch.cholesky_solve(means_BKD.unsqueeze(-1), scale_tril_BKDD.tril())
    data_term_BD1 = n_obs * torch.cholesky_solve(x_bar_BD.unsqueeze(-1), obs_chol_DD)
    rhs_BKD1 = prior_term_BKD1 + data_term_BD1.unsqueeze(1)
    post_means_BKD = torch.cholesky_solve(rhs_BKD1, post_prec_chol_BKDD).squeeze(-1)
    post_cov_BKDD = torch.cholesky_solve(eye_DD.expand(b, k, d, d), post_prec_chol_BKDD)
    post_scale_tril_BKDD = _cholesky(post_cov_BKDD, "posterior covariance")
    post_logits_BK = _posterior_logits(
        logits_BK, means_BKD, scale_tril_BKDD, x_bar_BD, obs_cov_DD / n_obs
    )
    return gmm_from_scale_tril(post_logits_BK, post_means_BKD, post_scale_tril_BKDD)
