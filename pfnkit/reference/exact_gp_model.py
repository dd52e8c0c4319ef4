"""The float64 gpytorch model behind the exact-GP oracle: hyperparameters, model, settings."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gpytorch
import torch
from torch import Tensor

from pfnkit.data import check_finite

__all__ = [
    "KERNELS",
    "GPHyperparameters",
    "ZeroMeanGP",
    "build_model",
    "check_context",
    "check_kernel",
    "check_lengthscale",
    "exact_settings",
    "fixed_model",
    "set_hyperparameters",
]

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
        check_kernel(self.kernel)

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


class ZeroMeanGP(gpytorch.models.ExactGP):
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
        """The prior over f at inputs x (N, D)."""
        return gpytorch.distributions.MultivariateNormal(
            self.mean_module(x_ND), self.covar_module(x_ND)
        )


@contextlib.contextmanager
def exact_settings() -> Iterator[None]:
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


def check_context(x_ctx_ND: Tensor, y_ctx_N: Tensor) -> None:
    """Raise a ValueError unless x (N, D) and y (N,) are a finite, non-empty context."""
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


def check_query(x_ctx_ND: Tensor, x_qry_MD: Tensor) -> None:
    """Raise a ValueError unless x_qry (M, D) is finite, non-empty and as wide as x_ctx."""
    if x_qry_MD.ndim != 2 or x_qry_MD.shape[1] != x_ctx_ND.shape[1]:
        raise ValueError(
            f"x_qry must have shape (M, {x_ctx_ND.shape[1]}) to match x_ctx, "
            f"got {tuple(x_qry_MD.shape)}"
        )
    if x_qry_MD.shape[0] == 0:
        raise ValueError("x_qry is empty; pass at least one query point")
    check_finite("x_qry", x_qry_MD)


def check_lengthscale(n_lengthscales: int, n_features: int) -> None:
    """Raise a ValueError unless there is one lengthscale, or one per feature."""
    if n_lengthscales not in (1, n_features):
        raise ValueError(
            f"lengthscale has {n_lengthscales} entries but x has {n_features} "
            "features; pass one per feature or a single shared value"
        )


def check_kernel(kernel: str) -> None:
    """Raise a ValueError unless `kernel` is one of ``KERNELS``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")


def build_model(
    x_ND: Tensor, y_N: Tensor, kernel: str, noise_lower_bound: float
) -> tuple[ZeroMeanGP, gpytorch.likelihoods.GaussianLikelihood]:
    """A float64 model on the inputs' device whose train data keeps its autograd graph."""
    constraint = gpytorch.constraints.GreaterThan(noise_lower_bound)
    likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=constraint)
    model = ZeroMeanGP(x_ND.detach(), y_N.detach(), likelihood, kernel)
    model.to(device=x_ND.device, dtype=_DTYPE)
    likelihood.to(device=x_ND.device, dtype=_DTYPE)
    model.set_train_data(inputs=x_ND, targets=y_N, strict=False)
    return model, likelihood


def set_hyperparameters(
    model: ZeroMeanGP,
    likelihood: gpytorch.likelihoods.GaussianLikelihood,
    hyper: GPHyperparameters,
) -> None:
    """Set the model's lengthscales and outputscale and the likelihood's noise to `hyper`."""
    n_features = model.train_inputs[0].shape[-1]
    device = model.train_inputs[0].device
    lengthscale = hyper.lengthscale.to(device).expand(n_features).reshape(1, n_features)
    model.covar_module.base_kernel.lengthscale = lengthscale
    model.covar_module.outputscale = torch.tensor(hyper.outputscale, dtype=_DTYPE, device=device)
    likelihood.noise = torch.tensor([hyper.noise], dtype=_DTYPE, device=device)


def fixed_model(
    x_ctx_ND: Tensor, y_ctx_N: Tensor, hyper: GPHyperparameters
) -> tuple[ZeroMeanGP, gpytorch.likelihoods.GaussianLikelihood]:
    """A model at the fixed hyperparameters `hyper`, with no trainable parameters."""
    model, likelihood = build_model(x_ctx_ND, y_ctx_N, hyper.kernel, noise_lower_bound=0.0)
    set_hyperparameters(model, likelihood, hyper)
    for param in (*model.parameters(), *likelihood.parameters()):
        param.requires_grad_(False)
    return model, likelihood
