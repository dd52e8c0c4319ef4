"""Student-t-process prior over regression tasks: a Gaussian process with an inverse-gamma scale.

Each task draws one output scale σ² ~ InvGamma(α, β) (density ∝ (σ²)^{-α-1} e^{-β/σ²}) and
then targets

    y | x, σ² ~ N(0, σ² (K(x, x) + σ_n² I)),

so the scale multiplies the kernel and the noise variance alike. Marginally y is
multivariate t with 2α degrees of freedom and scale matrix (β/α)(K + σ_n² I): a Student-t
process (Shah, Wilson & Ghahramani, arXiv 1402.4306), and as a prior on the last-layer
scale of an infinitely wide network, the scale mixture of NNGPs of Lee et al.
(arXiv 2107.01408). Because noise and signal share the scale, the posterior predictive
stays closed form (a Student-t per query point; see `pfnkit.reference.student_t`).

The kernel K is a stationary one of `priors.gp` ("rbf", "matern12", "matern32",
"matern52") or the NNGP kernel of `priors.nngp` ("nngp"). The shipped ``tp-rbf``
checkpoint uses the defaults: d = 1, x ~ U[0, 1], RBF lengthscale 0.2, outputscale 1,
noise variance 0.01, σ² ~ InvGamma(2, 2), so y is multivariate t with 4 degrees of freedom.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfnkit.data import Batch
from priors.gmm import _log_gamma_variates
from priors.gp import KERNELS as STATIONARY_KERNELS
from priors.gp import X_DISTRIBUTIONS, draw_inputs, kernel_matrix
from priors.nngp import NNGPKernelConfig, nngp_kernel_matrix

__all__ = ["TP_KERNELS", "StudentTPrior", "StudentTPriorConfig"]

TP_KERNELS = (*STATIONARY_KERNELS, "nngp")


@dataclass(frozen=True, kw_only=True)
class StudentTPriorConfig:
    """Tasks y = σ f(x) + σ ε with f ~ GP(0, k), ε ~ N(0, σ_n²) and σ² ~ InvGamma(α, β).

    Attributes:
        kernel: "rbf", "matern12", "matern32", "matern52" (stationary, from `priors.gp`)
            or "nngp" (an infinitely wide network, from `priors.nngp`).
        num_features: input dimension D.
        lengthscale: one lengthscale for every dimension, or one per dimension (ARD);
            stationary kernels only.
        outputscale: variance of the base kernel before scaling; stationary kernels
            only (the NNGP's amplitude is set by its weight and bias variances).
        noise: observation noise variance σ_n² before scaling, > 0.
        nngp: the network behind the "nngp" kernel (a table of `NNGPKernelConfig` fields).
        scale_concentration: α of the inverse-gamma scale prior; y has 2α degrees of freedom.
        scale_rate: β of the inverse-gamma scale prior; E[σ²] = β / (α − 1) for α > 1.
        x_distribution: "uniform" (U[x_low, x_high] per feature), "normal" (N(0, 1)) or
            "clustered" (crowded around a few centres, `priors.clustered_inputs`).
        x_low: lower bound of the input cube.
        x_high: upper bound of the input cube.
    """

    kernel: str = "rbf"
    num_features: int = 1
    lengthscale: float | Sequence[float] = 0.2
    outputscale: float = 1.0
    noise: float = 0.01
    nngp: NNGPKernelConfig = NNGPKernelConfig()
    scale_concentration: float = 2.0
    scale_rate: float = 2.0
    x_distribution: str = "uniform"
    x_low: float = 0.0
    x_high: float = 1.0

    def __post_init__(self) -> None:
        if self.kernel not in TP_KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose from {TP_KERNELS}")
        if self.num_features < 1:
            raise ValueError(f"num_features must be positive, got {self.num_features}")
        raw = self.lengthscale
        scales = tuple(float(v) for v in raw) if isinstance(raw, Sequence) else (float(raw),)
        if len(scales) == 1:
            scales = scales * self.num_features
        if len(scales) != self.num_features:
            raise ValueError(f"got {len(scales)} lengthscales for num_features={self.num_features}")
        object.__setattr__(self, "lengthscale", scales)
        object.__setattr__(self, "nngp", NNGPKernelConfig.coerce(self.nngp))
        positive = ("outputscale", "noise", "scale_concentration", "scale_rate")
        for name, value in [
            *((n, getattr(self, n)) for n in positive),
            ("lengthscale", min(scales)),
        ]:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value}")
        if self.x_distribution not in X_DISTRIBUTIONS:
            raise ValueError(
                f"unknown x_distribution {self.x_distribution!r}; choose from {X_DISTRIBUTIONS}"
            )
        if not self.x_low < self.x_high:
            raise ValueError(f"need x_low < x_high, got {self.x_low}, {self.x_high}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lengthscale"] = list(self.lengthscale)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentTPriorConfig:
        return cls(**data)


class StudentTPrior:
    """Batched sampler of Student-t-process regression tasks (float64 inside, float32 out)."""

    def __init__(self, config: StudentTPriorConfig | None = None) -> None:
        self.config = config or StudentTPriorConfig()

    def kernel_matrix(self, x1_BND: Tensor, x2_BMD: Tensor) -> Tensor:
        """The base kernel K(x1, x2) of shape (B, N, M), float64: no noise, no scale σ².

        With `student_t_hyperparameters`, this is what the exact reference
        (`pfnkit.reference.student_t`) needs, so a validator never imports this module.
        """
        cfg = self.config
        x1_BND, x2_BMD = x1_BND.double(), x2_BMD.double()
        if cfg.kernel == "nngp":
            return nngp_kernel_matrix(x1_BND, x2_BMD, **cfg.nngp.to_dict())
        b = x1_BND.shape[0]
        like = {"dtype": torch.float64, "device": x1_BND.device}
        lengthscale_BD = torch.tensor(cfg.lengthscale, **like).expand(b, -1)
        outputscale_B = torch.full((b,), cfg.outputscale, **like)
        return kernel_matrix(cfg.kernel, x1_BND, x2_BMD, lengthscale_BD, outputscale_B)

    def student_t_hyperparameters(self) -> dict[str, float]:
        """The scale prior and noise as plain data: ``concentration`` α, ``rate`` β, ``noise``."""
        cfg = self.config
        return {
            "concentration": cfg.scale_concentration,
            "rate": cfg.scale_rate,
            "noise": cfg.noise,
        }

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A regression PFN's input width (`pfnkit.data.PretrainPrior`)."""
        if kind != "pfn":
            raise ValueError(f"a Student-t prior trains a PFN ([model] kind = 'pfn'), not {kind!r}")
        return {"num_features": self.config.num_features}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: the prior presents every feature as drawn, with no rescaling."""
        if declared is not None and declared.get("pad_rescale", "none") != "none":
            raise ValueError(
                f"a Student-t prior rescales no features, so [card] data_mapping must not set "
                f"pad_rescale (got {declared['pad_rescale']!r})"
            )
        return declared

    def sample_scale(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """σ² ~ InvGamma(α, β), one per task, float64 (B,): β / Gamma(α, 1)."""
        cfg = self.config
        log_gamma_B = _log_gamma_variates((batch_size,), cfg.scale_concentration, generator)
        return cfg.scale_rate * torch.exp(-log_gamma_B)

    def _meta(self, scale_B: Tensor) -> dict[str, Tensor]:
        cfg = self.config
        b = scale_B.shape[0]
        full = lambda value: torch.full((b,), float(value), dtype=torch.float64)  # noqa: E731
        meta = {
            "scale": scale_B,
            "noise": full(cfg.noise),
            "scale_concentration": full(cfg.scale_concentration),
            "scale_rate": full(cfg.scale_rate),
        }
        if cfg.kernel == "nngp":
            meta["weight_variance"] = full(cfg.nngp.weight_variance)
            meta["bias_variance"] = full(cfg.nngp.bias_variance)
        else:
            meta["lengthscale"] = torch.tensor([cfg.lengthscale], dtype=torch.float64).repeat(b, 1)
            meta["outputscale"] = full(cfg.outputscale)
        return meta

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        """Draw tasks: the scale σ², then the inputs, then y = σ · chol(K + σ_n² I) z.

        ``meta`` holds "scale" (σ², B), "noise" (σ_n² before scaling), "scale_concentration"
        and "scale_rate" (α, β), and the base kernel's hyperparameters: "lengthscale" (B, D)
        and "outputscale" for a stationary kernel, "weight_variance" and "bias_variance"
        for the NNGP.
        """
        cfg = self.config
        scale_B = self.sample_scale(batch_size, generator)
        t = n_ctx + n_qry
        x_BTD = draw_inputs(
            (batch_size, t, cfg.num_features), generator,
            distribution=cfg.x_distribution, low=cfg.x_low, high=cfg.x_high,
        )  # fmt: skip
        cov_BTT = self.kernel_matrix(x_BTD, x_BTD)
        cov_BTT = cov_BTT + cfg.noise * torch.eye(t, dtype=torch.float64)
        chol_BTT, info_B = torch.linalg.cholesky_ex(cov_BTT)
        if bool((info_B > 0).any()):
            raise RuntimeError(
                "the Student-t prior's covariance K + noise·I is not positive definite; "
                f"increase the noise variance (now {cfg.noise})"
            )
        z_BT1 = torch.randn(batch_size, t, 1, generator=generator, dtype=torch.float64)
        y_BT = scale_B.sqrt()[:, None] * (chol_BTT @ z_BT1).squeeze(-1)
        x_BTD, y_BT = x_BTD.float(), y_BT.float()
        return Batch(
            x_ctx=x_BTD[:, :n_ctx],
            y_ctx=y_BT[:, :n_ctx],
            x_qry=x_BTD[:, n_ctx:],
            y_qry=y_BT[:, n_ctx:],
            meta={k: v.float() for k, v in self._meta(scale_B).items()},
        )
