"""Exact Gaussian-process regression in float64 with gpytorch: the oracle for GP priors."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gpytorch
import torch
from linear_operator.utils import errors
from torch import Tensor
from torch.distributions import Normal
from torch.func import functional_call

from pfnkit.data import check_finite

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

KERNELS: tuple[str, ...] = ("rbf", "matern12", "matern32", "matern52")
_MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}
_DTYPE = torch.float64
_MAX_CHOLESKY_SIZE = 2**31 - 1  # never fall back to CG / Lanczos


@dataclass(frozen=True, kw_only=True)
class GPHyperparameters:
    """Fixed hyperparameters of a zero-mean GP with a scaled stationary kernel.

    The covariance is ``outputscale * k(x / lengthscale, x' / lengthscale)`` and targets are
    observed with i.i.d. Gaussian noise of variance ``noise``.

    Attributes:
        lengthscale: per-feature lengthscales, shape (D,), or a scalar / (1,) shared by all
            features. Stored as a float64 tensor; pass float64 (or Python floats) to avoid
            float32 rounding.
        outputscale: kernel amplitude (signal variance), > 0.
        noise: observation-noise variance, > 0.
        kernel: one of ``KERNELS``: "rbf", "matern12", "matern32", "matern52".
    """

    lengthscale: Tensor
    outputscale: float
    noise: float
    kernel: str = "rbf"

    def __post_init__(self) -> None:
        lengthscale = torch.as_tensor(self.lengthscale, dtype=_DTYPE).detach()
        if lengthscale.ndim > 1:
            raise ValueError(
                "lengthscale must be a scalar or a (D,) vector, "
                f"got shape {tuple(lengthscale.shape)}"
            )
        if lengthscale.numel() == 0:
            raise ValueError("lengthscale is empty; pass a scalar or one value per feature")
        if not (torch.isfinite(lengthscale).all() and (lengthscale > 0).all()):
            raise ValueError(f"lengthscale must be finite and positive, got {lengthscale.tolist()}")
        object.__setattr__(self, "lengthscale", lengthscale.reshape(-1))
        for name in ("outputscale", "noise"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value}")
            object.__setattr__(self, name, value)
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose one of {KERNELS}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists and floats) for JSON."""
        return {
            "lengthscale": self.lengthscale.tolist(),
            "outputscale": self.outputscale,
            "noise": self.noise,
            "kernel": self.kernel,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPHyperparameters:
        """Inverse of `to_dict`."""
        return cls(**{**data, "lengthscale": torch.tensor(data["lengthscale"], dtype=_DTYPE)})


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


class _ZeroMeanGP(gpytorch.models.ExactGP):
    """Zero-mean exact GP with an ARD ``ScaleKernel`` over RBF or Matérn."""

    def __init__(
        self,
        x_ND: Tensor,
        y_N: Tensor,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        kernel: str,
    ) -> None:
        super().__init__(x_ND, y_N, likelihood)
        n_features = x_ND.shape[-1]
        if kernel == "rbf":
            base = gpytorch.kernels.RBFKernel(ard_num_dims=n_features)
        else:
            base = gpytorch.kernels.MaternKernel(nu=_MATERN_NU[kernel], ard_num_dims=n_features)
        self.mean_module = gpytorch.means.ZeroMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(base)

    def forward(self, x_ND: Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(
            self.mean_module(x_ND), self.covar_module(x_ND)
        )


@contextlib.contextmanager
def _exact_settings() -> Iterator[None]:
    """Force Cholesky solves, exact predictive variances and differentiable caches."""
    with (
        gpytorch.settings.fast_computations(
            covar_root_decomposition=False, log_prob=False, solves=False
        ),
        gpytorch.settings.max_cholesky_size(_MAX_CHOLESKY_SIZE),
        gpytorch.settings.fast_pred_var(False),
        gpytorch.settings.skip_posterior_variances(False),
        gpytorch.settings.detach_test_caches(False),
        gpytorch.settings.debug(False),
    ):
        yield


def _check_context(x_ctx_ND: Tensor, y_ctx_N: Tensor) -> None:
    if x_ctx_ND.ndim != 2:
        raise ValueError(f"x_ctx must have shape (N, D), got {tuple(x_ctx_ND.shape)}")
    if y_ctx_N.ndim != 1 or y_ctx_N.shape[0] != x_ctx_ND.shape[0]:
        raise ValueError(
            f"y_ctx must have shape ({x_ctx_ND.shape[0]},) to match x_ctx "
            f"{tuple(x_ctx_ND.shape)}, got {tuple(y_ctx_N.shape)}"
        )
    if x_ctx_ND.shape[0] == 0:
        raise ValueError("the context is empty; the GP needs at least one observation")
    if x_ctx_ND.shape[1] == 0:
        raise ValueError("x_ctx has zero features; pass at least one input column")
    check_finite("x_ctx", x_ctx_ND)
    check_finite("y_ctx", y_ctx_N)


def _check_lengthscale(hyper: GPHyperparameters, n_features: int) -> None:
    if hyper.lengthscale.numel() not in (1, n_features):
        raise ValueError(
            f"lengthscale has {hyper.lengthscale.numel()} entries but x has {n_features} "
            "features; pass one per feature or a single shared value"
        )


def _build(
    x_ND: Tensor, y_N: Tensor, kernel: str, noise_lower_bound: float
) -> tuple[_ZeroMeanGP, gpytorch.likelihoods.GaussianLikelihood]:
    """A float64 model on the inputs' device whose train data keeps its autograd graph."""
    constraint = gpytorch.constraints.GreaterThan(noise_lower_bound)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=constraint)
    model = _ZeroMeanGP(x_ND.detach(), y_N.detach(), likelihood, kernel)
    model.to(device=x_ND.device, dtype=_DTYPE)
    likelihood.to(device=x_ND.device, dtype=_DTYPE)
    model.set_train_data(inputs=x_ND, targets=y_N, strict=False)
    return model, likelihood


def _set_hyper(
    model: _ZeroMeanGP,
    likelihood: gpytorch.likelihoods.GaussianLikelihood,
    hyper: GPHyperparameters,
) -> None:
    n_features = model.train_inputs[0].shape[-1]
    device = model.train_inputs[0].device
    lengthscale = hyper.lengthscale.to(device).expand(n_features).reshape(1, n_features)
    model.covar_module.base_kernel.lengthscale = lengthscale
    model.covar_module.outputscale = torch.tensor(hyper.outputscale, dtype=_DTYPE, device=device)
    likelihood.noise = torch.tensor([hyper.noise], dtype=_DTYPE, device=device)


def _fixed_model(
    x_ctx_ND: Tensor, y_ctx_N: Tensor, hyper: GPHyperparameters
) -> tuple[_ZeroMeanGP, gpytorch.likelihoods.GaussianLikelihood]:
    model, likelihood = _build(x_ctx_ND, y_ctx_N, hyper.kernel, noise_lower_bound=0.0)
    _set_hyper(model, likelihood, hyper)
    for param in (*model.parameters(), *likelihood.parameters()):
        param.requires_grad_(False)
    return model, likelihood


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
    _check_context(x_ctx_ND, y_ctx_N)
    if x_qry_MD.ndim != 2 or x_qry_MD.shape[1] != x_ctx_ND.shape[1]:
        raise ValueError(
            f"x_qry must have shape (M, {x_ctx_ND.shape[1]}) to match x_ctx, "
            f"got {tuple(x_qry_MD.shape)}"
        )
    if x_qry_MD.shape[0] == 0:
        raise ValueError("x_qry is empty; pass at least one query point")
    check_finite("x_qry", x_qry_MD)
    _check_lengthscale(hyper, x_ctx_ND.shape[1])
    x_ctx_ND, y_ctx_N, x_qry_MD = (t.to(_DTYPE) for t in (x_ctx_ND, y_ctx_N, x_qry_MD))
    model, likelihood = _fixed_model(x_ctx_ND, y_ctx_N, hyper)
    model.eval()
    likelihood.eval()
    means, variances = [], []
    with _exact_settings():
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


def log_marginal_likelihood(x_ctx_ND: Tensor, y_ctx_N: Tensor, hyper: GPHyperparameters) -> Tensor:
    """Exact log marginal likelihood ``log p(y_ctx | x_ctx, hyper)`` (total, not per point).

    Args:
        x_ctx_ND: context inputs, shape (N, D).
        y_ctx_N: context targets, shape (N,).
        hyper: kernel, lengthscales, outputscale and noise variance.

    Returns:
        Scalar float64 tensor, differentiable with respect to the data.
    """
    _check_context(x_ctx_ND, y_ctx_N)
    _check_lengthscale(hyper, x_ctx_ND.shape[1])
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE), y_ctx_N.to(_DTYPE)
    model, likelihood = _fixed_model(x_ctx_ND, y_ctx_N, hyper)
    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    with _exact_settings():
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
    _check_context(x_ctx_ND, y_ctx_N)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    model, likelihood = _build(x_ctx_ND, y_ctx_N, kernel, noise_lower_bound=0.0)
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
        if lengthscale_D.numel() not in (1, n_features):
            raise ValueError(
                f"lengthscale has {lengthscale_D.numel()} entries but x has {n_features} "
                "features; pass one per feature or a single shared value"
            )
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
        with _exact_settings():  # the kernel is evaluated lazily: keep the swap until the end
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
    model, likelihood = _build(x_ctx_ND, y_ctx_N, init.kernel, noise_lower_bound)
    _set_hyper(model, likelihood, init)
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

    with _exact_settings():
        optimizer.step(closure)
    return GPHyperparameters(
        lengthscale=model.covar_module.base_kernel.lengthscale.detach().reshape(-1).cpu(),
        outputscale=model.covar_module.outputscale.item(),
        noise=likelihood.noise.item(),
        kernel=init.kernel,
    )


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
    _check_context(x_ctx_ND, y_ctx_N)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    if steps < 1 or not lr > 0 or not noise_lower_bound >= 0 or len(lengthscale_inits) == 0:
        raise ValueError(
            "need steps >= 1, lr > 0, noise_lower_bound >= 0 and at least one lengthscale init; "
            f"got steps={steps}, lr={lr}, noise_lower_bound={noise_lower_bound}, "
            f"lengthscale_inits={lengthscale_inits}"
        )
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    n_points = x_ctx_ND.shape[0]
    feature_std_D = x_ctx_ND.std(dim=0) if n_points > 1 else torch.ones(x_ctx_ND.shape[1])
    feature_std_D = torch.where(feature_std_D > 0, feature_std_D, 1.0).cpu()
    y_var = float(y_ctx_N.var()) if n_points > 1 else 0.0
    y_var = y_var if y_var > 0 else 1.0
    best, best_lml = None, -math.inf
    for factor in lengthscale_inits:
        init = GPHyperparameters(
            lengthscale=factor * feature_std_D,
            outputscale=y_var,
            noise=max(y_var / 10.0, 10.0 * noise_lower_bound),
            kernel=kernel,
        )
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
