"""The exact GP posterior predictive of y at query points, under fixed hyperparameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Normal

from pfnkit.reference.exact_gp_model import (
    GPHyperparameters,
    check_context,
    check_lengthscale,
    check_query,
    exact_settings,
    fixed_model,
)

__all__ = ["GaussianPredictive", "exact_gp_predictive", "exact_gp_predictive_batch"]

_DTYPE = torch.float64


@dataclass(frozen=True, kw_only=True)
class GaussianPredictive:
    """Independent Gaussian predictive distributions of y at query points.

    Attributes:
        mean: predictive mean of y, shape (M,) (or (B, M) from the batch function), float64.
        variance: predictive variance of y, observation noise included, same shape as mean.
    """

    mean: Tensor
    variance: Tensor

    def __post_init__(self) -> None:
        if self.mean.shape != self.variance.shape:
            raise ValueError(
                f"mean {tuple(self.mean.shape)} and variance {tuple(self.variance.shape)} differ"
            )

    def to_distribution(self) -> Normal:
        """The predictive as a `torch.distributions.Normal` with the same batch shape."""
        return Normal(self.mean, self.variance.sqrt())

    def log_prob(self, y: Tensor) -> Tensor:
        """Per-point Gaussian log density of observed targets ``y`` (same shape as mean)."""
        if y.shape != self.mean.shape:
            raise ValueError(f"y must have shape {tuple(self.mean.shape)}, got {tuple(y.shape)}")
        return self.to_distribution().log_prob(y.to(self.mean))

    def interval(self, level: float) -> tuple[Tensor, Tensor]:
        """Central predictive interval holding probability ``level`` (e.g. 0.9).

        Returns:
            (lower, upper), each shaped like mean.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        dist = self.to_distribution()
        tail = torch.full_like(self.mean, (1.0 - level) / 2.0)
        return dist.icdf(tail), dist.icdf(1.0 - tail)


def exact_gp_predictive(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    x_qry_MD: Tensor,
    hyper: GPHyperparameters,
    *,
    query_chunk_size: int = 4096,
) -> GaussianPredictive:
    """Exact posterior predictive of y at query points under fixed GP hyperparameters.

    Uses a Cholesky solve in float64 (no CG, no Lanczos) and is differentiable with respect
    to ``x_ctx_ND``, ``y_ctx_N`` and ``x_qry_MD``.

    Args:
        x_ctx_ND: context inputs, shape (N, D), N >= 1.
        y_ctx_N: context targets, shape (N,).
        x_qry_MD: query inputs, shape (M, D), M >= 1.
        hyper: kernel, lengthscales, outputscale and noise variance.
        query_chunk_size: queries per gpytorch call; the context solve is cached across
            chunks, and no (M, M) test covariance is ever formed beyond one chunk.

    Returns:
        Predictive mean and variance of y (noise included), each shape (M,), float64.
    """
    check_context(x_ctx_ND, y_ctx_N)
    check_query(x_ctx_ND, x_qry_MD)
    check_lengthscale(hyper.lengthscale.numel(), x_ctx_ND.shape[1])
    x_ctx_ND, y_ctx_N, x_qry_MD = (t.to(_DTYPE) for t in (x_ctx_ND, y_ctx_N, x_qry_MD))
    model, likelihood = fixed_model(x_ctx_ND, y_ctx_N, hyper)
    model.eval()
    likelihood.eval()
    means, variances = [], []
    with exact_settings():
        for chunk_CD in x_qry_MD.split(max(1, query_chunk_size)):
            predictive = likelihood(model(chunk_CD))
            means.append(predictive.mean)
            variances.append(predictive.variance)
    return GaussianPredictive(mean=torch.cat(means), variance=torch.cat(variances))


def exact_gp_predictive_batch(
    x_ctx_BND: Tensor,
    y_ctx_BN: Tensor,
    x_qry_BMD: Tensor,
    hyper: GPHyperparameters | Sequence[GPHyperparameters],
) -> GaussianPredictive:
    """`exact_gp_predictive` for each task of a batch (a loop over tasks).

    Args:
        x_ctx_BND: context inputs, shape (B, N, D).
        y_ctx_BN: context targets, shape (B, N).
        x_qry_BMD: query inputs, shape (B, M, D).
        hyper: one set of hyperparameters shared by all tasks, or one per task.

    Returns:
        Predictive mean and variance, each shape (B, M), float64.
    """
    if x_ctx_BND.ndim != 3 or y_ctx_BN.ndim != 2 or x_qry_BMD.ndim != 3:
        raise ValueError(
            "expected x_ctx (B, N, D), y_ctx (B, N) and x_qry (B, M, D), got "
            f"{tuple(x_ctx_BND.shape)}, {tuple(y_ctx_BN.shape)} and {tuple(x_qry_BMD.shape)}"
        )
    n_tasks = x_ctx_BND.shape[0]
    if y_ctx_BN.shape[0] != n_tasks or x_qry_BMD.shape[0] != n_tasks:
        raise ValueError("x_ctx, y_ctx and x_qry must share the batch size B")
    hypers = [hyper] * n_tasks if isinstance(hyper, GPHyperparameters) else list(hyper)
    if len(hypers) != n_tasks:
        raise ValueError(f"got {len(hypers)} hyperparameter sets for a batch of {n_tasks} tasks")
    if n_tasks == 0:
        raise ValueError("the batch is empty")
    results = [
        exact_gp_predictive(x_ctx_BND[b], y_ctx_BN[b], x_qry_BMD[b], hypers[b])
        for b in range(n_tasks)
    ]
    return GaussianPredictive(
        mean=torch.stack([r.mean for r in results]),
        variance=torch.stack([r.variance for r in results]),
    )
