"""Batched Gaussian-process prior over regression tasks, with fixed or hyperprior parameters."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfnkit.data import Batch

__all__ = ["GPPrior", "GPPriorConfig", "Hyperprior", "KERNELS", "kernel_matrix"]

KERNELS = ("rbf", "matern12", "matern32", "matern52")
_FAMILIES = ("fixed", "lognormal", "uniform", "loguniform")
_MAX_JITTER = 1e-2


@dataclass(frozen=True, kw_only=True)
class Hyperprior:
    """A scalar hyperparameter: fixed, or drawn per task.

    Attributes:
        family: "fixed" (value ``a``), "lognormal" (log-value ~ N(a, b²)),
            "uniform" (U[a, b]) or "loguniform" (log-value ~ U[log a, log b]).
        a: first parameter (see family).
        b: second parameter (unused for "fixed").
    """

    family: str = "fixed"
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"unknown hyperprior family {self.family!r}; choose from {_FAMILIES}")
        if self.family == "fixed" and self.a <= 0:
            raise ValueError(f"a fixed GP hyperparameter must be positive, got {self.a}")
        if self.family == "lognormal" and self.b <= 0:
            raise ValueError(f"lognormal scale b must be positive, got {self.b}")
        if self.family in ("uniform", "loguniform") and not 0 < self.a < self.b:
            raise ValueError(f"{self.family} needs 0 < a < b, got a={self.a}, b={self.b}")

    @classmethod
    def coerce(cls, value: float | dict[str, Any] | Hyperprior) -> Hyperprior:
        """Accept a number (fixed), a dict of fields, or a Hyperprior."""
        if isinstance(value, Hyperprior):
            return value
        if isinstance(value, dict):
            return cls(**value)
        return cls(family="fixed", a=float(value))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """Draw float64 values of `shape`."""
        if self.family == "fixed":
            return torch.full(shape, self.a, dtype=torch.float64)
        if self.family == "lognormal":
            z = torch.randn(shape, generator=generator, dtype=torch.float64)
            return torch.exp(self.a + self.b * z)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        if self.family == "uniform":
            return self.a + (self.b - self.a) * u
        return torch.exp(math.log(self.a) + (math.log(self.b) - math.log(self.a)) * u)


@dataclass(frozen=True, kw_only=True)
class GPPriorConfig:
    """Tasks y = f(x) + ε with f ~ GP(0, k) and x ~ U[x_low, x_high]^D.

    Attributes:
        kernel: one of "rbf", "matern12", "matern32", "matern52".
        num_features: input dimension D.
        lengthscale: one hyperprior for every dimension, or one per dimension (ARD);
            with a hyperprior, each dimension draws its own lengthscale.
        outputscale: kernel variance.
        noise: observation noise variance.
        x_low: lower bound of the input cube.
        x_high: upper bound of the input cube.
    """

    kernel: str = "rbf"
    num_features: int = 1
    lengthscale: Hyperprior | Sequence[Hyperprior] = Hyperprior(a=0.2)
    outputscale: Hyperprior = Hyperprior(a=1.0)
    noise: Hyperprior = Hyperprior(a=0.01)
    x_low: float = 0.0
    x_high: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose from {KERNELS}")
        if self.num_features < 1:
            raise ValueError(f"num_features must be positive, got {self.num_features}")
        if not self.x_low < self.x_high:
            raise ValueError(f"need x_low < x_high, got {self.x_low}, {self.x_high}")
        raw = self.lengthscale
        if isinstance(raw, (list, tuple)):
            scales = tuple(Hyperprior.coerce(v) for v in raw)
            if len(scales) != self.num_features:
                raise ValueError(
                    f"got {len(scales)} ARD lengthscales for num_features={self.num_features}"
                )
        else:
            scales = (Hyperprior.coerce(raw),) * self.num_features
        object.__setattr__(self, "lengthscale", scales)
        object.__setattr__(self, "outputscale", Hyperprior.coerce(self.outputscale))
        object.__setattr__(self, "noise", Hyperprior.coerce(self.noise))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lengthscale"] = [dataclasses.asdict(h) for h in self.lengthscale]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPPriorConfig:
        return cls(**data)


def kernel_matrix(
    kernel: str, x1_BND: Tensor, x2_BMD: Tensor, lengthscale_BD: Tensor, outputscale_B: Tensor
) -> Tensor:
    """Stationary kernel matrix k(x1, x2) of shape (B, N, M)."""
    diff_BNMD = (x1_BND.unsqueeze(2) - x2_BMD.unsqueeze(1)) / lengthscale_BD[:, None, None, :]
    r2_BNM = diff_BNMD.pow(2).sum(-1)
    if kernel == "rbf":
        k_BNM = torch.exp(-0.5 * r2_BNM)
    else:
        r_BNM = r2_BNM.clamp_min(1e-300).sqrt() * (r2_BNM > 0)
        if kernel == "matern12":
            k_BNM = torch.exp(-r_BNM)
        elif kernel == "matern32":
            s_BNM = math.sqrt(3.0) * r_BNM
            k_BNM = (1 + s_BNM) * torch.exp(-s_BNM)
        elif kernel == "matern52":
            s_BNM = math.sqrt(5.0) * r_BNM
            k_BNM = (1 + s_BNM + s_BNM**2 / 3) * torch.exp(-s_BNM)
        else:
            raise ValueError(f"unknown kernel {kernel!r}; choose from {KERNELS}")
    return outputscale_B[:, None, None] * k_BNM


def _cholesky_with_jitter(cov_BTT: Tensor) -> Tensor:
    """Batched Cholesky that adds escalating diagonal jitter to the tasks that fail."""
    eye = torch.eye(cov_BTT.shape[-1], dtype=cov_BTT.dtype)
    scale = cov_BTT.diagonal(dim1=-2, dim2=-1).mean(-1)[:, None, None]
    chol, info = torch.linalg.cholesky_ex(cov_BTT)
    jitter = 1e-10
    while bool((info > 0).any()):
        if jitter > _MAX_JITTER:
            raise RuntimeError(
                "GP covariance is not positive definite even with relative jitter "
                f"{_MAX_JITTER}; increase the noise variance or the lengthscale lower bound"
            )
        bad = info > 0
        chol_bad, info_bad = torch.linalg.cholesky_ex(cov_BTT[bad] + jitter * scale[bad] * eye)
        chol[bad] = chol_bad
        info[bad] = info_bad
        jitter *= 10
    return chol


class GPPrior:
    """Batched sampler of GP regression tasks (float64 internally, float32 out)."""

    def __init__(self, config: GPPriorConfig | None = None) -> None:
        self.config = config or GPPriorConfig()

    def sample_hyperparameters(self, batch_size: int, generator: torch.Generator) -> dict:
        cfg = self.config
        lengthscale = torch.stack(
            [h.sample((batch_size,), generator) for h in cfg.lengthscale], dim=-1
        )
        return {
            "lengthscale": lengthscale,
            "outputscale": cfg.outputscale.sample((batch_size,), generator),
            "noise": cfg.noise.sample((batch_size,), generator),
        }

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        cfg = self.config
        hyper = self.sample_hyperparameters(batch_size, generator)
        t = n_ctx + n_qry
        u_BTD = torch.rand(
            batch_size, t, cfg.num_features, generator=generator, dtype=torch.float64
        )
        x_BTD = cfg.x_low + (cfg.x_high - cfg.x_low) * u_BTD
        cov_BTT = kernel_matrix(
            cfg.kernel, x_BTD, x_BTD, hyper["lengthscale"], hyper["outputscale"]
        )
        cov_BTT = cov_BTT + hyper["noise"][:, None, None] * torch.eye(t, dtype=torch.float64)
        z_BT1 = torch.randn(batch_size, t, 1, generator=generator, dtype=torch.float64)
        y_BT = (_cholesky_with_jitter(cov_BTT) @ z_BT1).squeeze(-1).float()
        x_BTD = x_BTD.float()
        return Batch(
            x_ctx=x_BTD[:, :n_ctx],
            y_ctx=y_BT[:, :n_ctx],
            x_qry=x_BTD[:, n_ctx:],
            y_qry=y_BT[:, n_ctx:],
            meta={k: v.float() for k, v in hyper.items()},
        )
