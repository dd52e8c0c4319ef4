"""Batched Gaussian-process prior over regression tasks, with fixed or hyperprior parameters.

Two regimes share one sampler:

* **Fixed hyperparameters** (the defaults; e.g. the shipped ``gp-rbf``): every task uses the
  same kernel, lengthscale, outputscale and noise, x ~ U[x_low, x_high]^D, all D features.
* **Hyperprior mode** (any hyperparameter with a non-"fixed" family; see
  `GPPriorConfig.general_purpose` for the configuration behind the general ``gp``
  checkpoint). Each task draws its ARD lengthscales, outputscale and noise variance, and
  its number of used features d ∈ [num_features_min, num_features]; unused features are
  zero (the estimators' ``features = "pad"`` mapping fills them the same way).

Scaling with d (``lengthscale_scaling = "sqrt"``, ``feature_rescale = "sqrt"``): with
standardized inputs (``x_distribution = "normal"``), E‖x − x'‖² = 2d, so a kernel whose
lengthscales do not grow with d gets rougher as features are added. Multiplying every
drawn lengthscale by √d keeps E‖(x − x')/ℓ‖² = 2 · mean_j ℓ_draw,j⁻² whatever d is (the
scaling of Hvarfner et al., arXiv 2402.02229), so one hyperprior fits all d. The used features are
then multiplied by √(num_features / d) before they reach the model (as in TabPFN,
arXiv 2207.01848): every task's inputs have the same squared norm on average, D, and in
the model's units the lengthscale prior is the same for every d (ℓ_model = √D · ℓ_draw).
Both maps are deterministic functions of d, which the model sees (the zero columns), so
they change no posterior; they only make tasks of different d look alike to the network.
``meta["lengthscale"]`` holds the lengthscales in the units of the returned x.
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
from priors.clustered_inputs import draw_clustered_unit
from priors.gp_kernels import KERNELS, kernel_matrix, linear_kernel_matrix
from priors.hyperprior import Hyperprior

# KERNELS, kernel_matrix (priors.gp_kernels) and Hyperprior (priors.hyperprior) are
# re-exported, so `from priors.gp import ...` keeps working for them.
__all__ = [
    "KERNELS",
    "SCALINGS",
    "X_DISTRIBUTIONS",
    "GPPrior",
    "GPPriorConfig",
    "Hyperprior",
    "draw_inputs",
    "kernel_matrix",
]

X_DISTRIBUTIONS = ("uniform", "normal", "clustered")
SCALINGS = ("none", "sqrt")
_MAX_JITTER = 1e-2


def draw_inputs(
    shape: tuple[int, int, int], generator: torch.Generator, *, distribution: str, low: float,
    high: float,
) -> Tensor:  # fmt: skip
    """Inputs x (float64): N(0, 1) for ``distribution = "normal"``, else in [low, high]^D.

    "uniform" draws them uniformly; "clustered" crowds them around a few centres per task,
    as a Bayesian-optimisation run does (`priors.clustered_inputs`).
    """
    if distribution == "normal":
        return torch.randn(shape, generator=generator, dtype=torch.float64)
    if distribution == "clustered":
        u_BTD = draw_clustered_unit(shape, generator)
    else:
        u_BTD = torch.rand(shape, generator=generator, dtype=torch.float64)
    return low + (high - low) * u_BTD


@dataclass(frozen=True, kw_only=True)
class GPPriorConfig:
    """Tasks y = f(x) + ε with f ~ GP(0, k), per-task hyperparameters and feature counts.

    The defaults reproduce the original fixed-hyperparameter prior exactly (same draws
    from the same generator): all features used, x ~ U[x_low, x_high]^D, no scaling.

    Attributes:
        kernel: one of "rbf", "matern12", "matern32", "matern52".
        num_features: input dimension D of every task (unused features are zero).
        lengthscale: one hyperprior for every dimension, or one per dimension (ARD);
            with a hyperprior, each dimension draws its own lengthscale.
        outputscale: kernel variance.
        noise: observation noise variance.
        x_low: lower bound of the input cube (``x_distribution = "uniform"``).
        x_high: upper bound of the input cube (``x_distribution = "uniform"``).
        num_features_min: fewest used features; each task draws d uniformly from
            [num_features_min, num_features] and zeroes features d+1..D. None (the
            default) means num_features: every task uses every feature.
        x_distribution: "uniform" (U[x_low, x_high] per feature), "normal" (N(0, 1)
            per feature, matching per-feature standardization of real data) or
            "clustered" (in [x_low, x_high]^D, crowded around a few centres per task as
            the points of a BO run are; `priors.clustered_inputs`).
        lengthscale_scaling: "none", or "sqrt" to multiply every drawn lengthscale by √d.
        feature_rescale: "none", or "sqrt" to multiply the used features by √(D / d);
            a checkpoint's card must then declare ``pad_rescale = "sqrt"`` in its
            data_mapping so the estimators do the same.
        linear_weight: None (no linear part), or the hyperprior of λ_j: every used feature
            draws one, and f gains a linear term z·β with β_j ~ N(0, σ_f² λ_j / d) over the
            inputs z before ``feature_rescale`` (so the linear part's variance is σ_f² times
            the mean λ_j). ``meta["linear_variance"]`` holds the v_j of the returned x.
    """

    kernel: str = "rbf"
    num_features: int = 1
    lengthscale: Hyperprior | Sequence[Hyperprior] = Hyperprior(a=0.2)
    outputscale: Hyperprior = Hyperprior(a=1.0)
    noise: Hyperprior = Hyperprior(a=0.01)
    x_low: float = 0.0
    x_high: float = 1.0
    num_features_min: int | None = None
    x_distribution: str = "uniform"
    lengthscale_scaling: str = "none"
    feature_rescale: str = "none"
    linear_weight: Hyperprior | None = None

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose from {KERNELS}")
        if self.num_features < 1:
            raise ValueError(f"num_features must be positive, got {self.num_features}")
        if not self.x_low < self.x_high:
            raise ValueError(f"need x_low < x_high, got {self.x_low}, {self.x_high}")
        d_min = self.num_features if self.num_features_min is None else self.num_features_min
        if not 1 <= d_min <= self.num_features:
            raise ValueError(
                f"num_features_min must lie in [1, num_features={self.num_features}], got {d_min}"
            )
        object.__setattr__(self, "num_features_min", d_min)
        if self.x_distribution not in X_DISTRIBUTIONS:
            raise ValueError(
                f"unknown x_distribution {self.x_distribution!r}; choose from {X_DISTRIBUTIONS}"
            )
        for name in ("lengthscale_scaling", "feature_rescale"):
            if getattr(self, name) not in SCALINGS:
                raise ValueError(f"{name} must be one of {SCALINGS}, got {getattr(self, name)!r}")
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
        if self.linear_weight is not None:
            object.__setattr__(self, "linear_weight", Hyperprior.coerce(self.linear_weight))

    @property
    def has_hyperpriors(self) -> bool:
        """True when any hyperparameter is drawn per task (the Bayes reference is then NUTS)."""
        drawn = (*self.lengthscale, self.outputscale, self.noise, self.linear_weight)
        return any(h is not None and h.family != "fixed" for h in drawn)

    @classmethod
    def general_purpose(cls, num_features: int = 10, kernel: str = "matern52") -> GPPriorConfig:
        """The hyperprior behind the general ``gp`` regressor (examples/configs/gp_hyper.toml).

        Real data reach the model standardized (each feature and the target to mean 0 and
        variance 1 over the context), so the prior is built for such data:

        * x ~ N(0, 1) per feature; d ~ U{1, ..., num_features} used features.
        * Lengthscales (ARD): log ℓ_draw ~ N(0, 1), i.e. median 1 and 95% in [0.14, 7.1],
          then ℓ = √d · ℓ_draw. A median of √d standardized units makes a typical function
          vary a few times over the data; the wide spread covers both rough features and
          nearly irrelevant ones (ℓ ≫ 1, which ARD uses to switch a feature off).
        * Outputscale: log σ_f² ~ N(0, 0.5²) (95% in [0.38, 2.7]): a standardized target
          has variance 1 = σ_f² + σ_n², so the signal variance sits near 1.
        * Noise variance: log-uniform on [1e-3, 1]: from nearly noiseless (simulators,
          make_friedman1 without noise) to a noise share of about one half, as in
          diabetes-like data where a GP explains about half the variance. Log-uniform
          treats every order of magnitude alike.
        * Matérn-5/2 kernel: twice-differentiable functions, rougher than RBF's, the usual
          default for real data (Rasmussen & Williams, 2006, ch. 4).
        """
        return cls(
            kernel=kernel,
            num_features=num_features,
            num_features_min=1,
            lengthscale=Hyperprior(family="lognormal", a=0.0, b=1.0),
            outputscale=Hyperprior(family="lognormal", a=0.0, b=0.5),
            noise=Hyperprior(family="loguniform", a=1e-3, b=1.0),
            x_distribution="normal",
            lengthscale_scaling="sqrt",
            feature_rescale="sqrt",
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lengthscale"] = [dataclasses.asdict(h) for h in self.lengthscale]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPPriorConfig:
        return cls(**data)


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

    def fixed_gp_hyperparameters(self) -> dict[str, Any]:
        """The one GP that every task is drawn from, as plain data (for exact references).

        Returns:
            "kernel", "lengthscale" (a list, one per feature, in the units of the sampled
            x), "outputscale" and "noise" (variances).

        Raises:
            ValueError: some hyperparameter, or a d-scaled lengthscale, varies per task,
                so the tasks come from no single GP.
        """
        cfg = self.config
        named = [("outputscale", cfg.outputscale), ("noise", cfg.noise)]
        named += [(f"lengthscale[{i}]", h) for i, h in enumerate(cfg.lengthscale)]
        drawn = {name: h.family for name, h in named if h.family != "fixed"}
        d_scaled = "sqrt" in (cfg.lengthscale_scaling, cfg.feature_rescale)
        if cfg.num_features_min < cfg.num_features and d_scaled:
            drawn["lengthscale"] = "scaled by the drawn feature count"
        if cfg.linear_weight is not None:
            drawn["linear_weight"] = "a linear part, which the exact GP reference lacks"
        if drawn:
            raise ValueError(
                f"this GP prior draws hyperparameters per task ({drawn}), so its tasks come "
                "from no single GP; fix them (family 'fixed') for an exact reference"
            )
        factor = math.sqrt(cfg.num_features) if cfg.lengthscale_scaling == "sqrt" else 1.0
        return {
            "kernel": cfg.kernel,
            "lengthscale": [h.a * factor for h in cfg.lengthscale],
            "outputscale": cfg.outputscale.a,
            "noise": cfg.noise.a,
        }

    def input_range(self) -> tuple[float, float] | None:
        """The interval (x_low, x_high) every input feature is drawn from; None if unbounded."""
        cfg = self.config
        if cfg.x_distribution == "normal" or cfg.feature_rescale != "none":
            return None
        return (cfg.x_low, cfg.x_high)

    @property
    def has_hyperpriors(self) -> bool:
        """True when tasks draw their hyperparameters (`pfnkit.data.GPRegressionPrior`)."""
        return self.config.has_hyperpriors

    def feature_range(self) -> tuple[int, int]:
        """The fewest and the most used features d a task has."""
        return self.config.num_features_min, self.config.num_features

    def gp_hyperparameters(self, task: Batch) -> dict[str, Any]:
        """The GP a one-task batch was drawn from (its meta), in the units of its x."""
        if task.batch_size != 1:
            raise ValueError(f"gp_hyperparameters takes a one-task batch, got {task.batch_size}")
        meta = task.meta
        return {
            "kernel": self.config.kernel,
            "lengthscale": meta["lengthscale"][0].double(),
            "outputscale": float(meta["outputscale"][0]),
            "noise": float(meta["noise"][0]),
        }

    def sample_hyperparameters(self, batch_size: int, generator: torch.Generator) -> dict:
        """Drawn lengthscales (B, D), outputscale (B,) and noise (B,), before any d-scaling."""
        cfg = self.config
        lengthscale = torch.stack(
            [h.sample((batch_size,), generator) for h in cfg.lengthscale], dim=-1
        )
        hyper = {
            "lengthscale": lengthscale,
            "outputscale": cfg.outputscale.sample((batch_size,), generator),
            "noise": cfg.noise.sample((batch_size,), generator),
        }
        if cfg.linear_weight is not None:  # drawn last: the other draws keep their stream
            shape = (batch_size, cfg.num_features)
            hyper["linear_weight"] = cfg.linear_weight.sample(shape, generator)
        return hyper

    def _used_features(
        self, batch_size: int, num_used_features: int | None, generator: torch.Generator
    ) -> Tensor:
        """Per-task feature counts d, shape (B,), int64."""
        cfg = self.config
        if num_used_features is not None:
            if not cfg.num_features_min <= num_used_features <= cfg.num_features:
                raise ValueError(
                    f"num_used_features={num_used_features} lies outside this prior's range "
                    f"[{cfg.num_features_min}, {cfg.num_features}]"
                )
            return torch.full((batch_size,), num_used_features, dtype=torch.int64)
        if cfg.num_features_min == cfg.num_features:  # draws nothing: the old random stream
            return torch.full((batch_size,), cfg.num_features, dtype=torch.int64)
        return torch.randint(
            cfg.num_features_min, cfg.num_features + 1, (batch_size,), generator=generator
        )

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A regression PFN's input width (`pfnkit.data.PretrainPrior`)."""
        if kind != "pfn":
            raise ValueError(f"a GP prior trains a PFN ([model] kind = 'pfn'), not {kind!r}")
        return {"num_features": self.config.num_features}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` with pad_rescale set to (and checked against) the prior's feature_rescale."""
        rescale = self.config.feature_rescale
        given = declared or {}
        if given.get("pad_rescale", rescale) != rescale or (
            rescale != "none" and given.get("features") != "pad"
        ):
            raise ValueError(
                f"[prior] feature_rescale = {rescale!r} needs [card] data_mapping with "
                f'features = "pad" and pad_rescale = {rescale!r} (got {declared}), so that '
                "the estimators rescale padded features as the prior did"
            )
        if declared is None or rescale == "none":
            return declared
        return {**declared, "pad_rescale": rescale}

    def sample(
        self,
        batch_size: int,
        n_ctx: int,
        n_qry: int,
        *,
        generator: torch.Generator,
        num_used_features: int | None = None,
    ) -> Batch:
        """Draw tasks; ``num_used_features`` fixes d for every task (else d is drawn).

        ``meta`` holds "lengthscale" (B, D) in the units of the returned x (after the
        d-scalings), "outputscale" (B,), "noise" (B,) and "num_used_features" (B,); with a
        linear part also "linear_weight" (λ, B × D) and "linear_variance" (v, B × D).
        """
        cfg = self.config
        hyper = self.sample_hyperparameters(batch_size, generator)
        d_B = self._used_features(batch_size, num_used_features, generator)
        d_B1 = d_B.to(torch.float64)[:, None]
        used_BD = torch.arange(cfg.num_features) < d_B[:, None]
        x_scale_B1 = torch.ones_like(d_B1)
        if cfg.feature_rescale == "sqrt":
            x_scale_B1 = (cfg.num_features / d_B1).sqrt()
        lengthscale_BD = hyper["lengthscale"] * x_scale_B1
        if cfg.lengthscale_scaling == "sqrt":
            lengthscale_BD = lengthscale_BD * d_B1.sqrt()
        t = n_ctx + n_qry
        x_BTD = draw_inputs(
            (batch_size, t, cfg.num_features), generator,
            distribution=cfg.x_distribution, low=cfg.x_low, high=cfg.x_high,
        )  # fmt: skip
        if not bool(used_BD.all()) or cfg.feature_rescale != "none":
            x_BTD = x_BTD * (used_BD * x_scale_B1)[:, None, :]
        cov_BTT = kernel_matrix(cfg.kernel, x_BTD, x_BTD, lengthscale_BD, hyper["outputscale"])
        cov_BTT = cov_BTT + hyper["noise"][:, None, None] * torch.eye(t, dtype=torch.float64)
        if cfg.linear_weight is not None:  # v_j = σ_f² λ_j / (d s²) in the units of x = s z
            v_BD = hyper["outputscale"][:, None] * hyper["linear_weight"] * used_BD
            hyper["linear_variance"] = v_BD / (d_B1 * x_scale_B1**2)
            cov_BTT = cov_BTT + linear_kernel_matrix(x_BTD, x_BTD, hyper["linear_variance"])
        z_BT1 = torch.randn(batch_size, t, 1, generator=generator, dtype=torch.float64)
        y_BT = (_cholesky_with_jitter(cov_BTT) @ z_BT1).squeeze(-1).float()
        x_BTD = x_BTD.float()
        meta = {**hyper, "lengthscale": lengthscale_BD, "num_used_features": d_B1[:, 0]}
        return Batch(
            x_ctx=x_BTD[:, :n_ctx],
            y_ctx=y_BT[:, :n_ctx],
            x_qry=x_BTD[:, n_ctx:],
            y_qry=y_BT[:, n_ctx:],
            meta={k: v.float() for k, v in meta.items()},
        )
