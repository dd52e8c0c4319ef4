"""Single learning curves from a mixture of parametric families (LC-PFN's prior, our priors).

The prior of LC-PFN (Adriaensen et al., arXiv 2310.20447), built on the families of
Domhan, Springenberg & Hutter (2015) in `priors.learning_curves_families`. One task is
one training run observed for its first epochs:

    w ~ Dirichlet(1, ..., 1) over K families,   θ_k ~ prior of family k,
    p(t) = Σ_k w_k p_k(t | θ_k),   y(t) = 1 − p(t) + σ ε   (orientation "error"),

with ε ~ N(0, 1) i.i.d. per epoch and log σ ~ N(noise_log_mean, noise_log_std²). The
noiseless curve is constrained: draws whose p leaves [0, 1] on epochs 1..T or ends no
better than it starts (p(T) ≤ p(1)) are rejected, so the prior is the product of the
parameter priors truncated to that set. The noisy values are not clipped (a value just
outside [0, 1] is possible when the curve runs near a bound).

Inputs have one column, the epoch fraction t / T. The context is epochs 1..n_ctx (a
partial curve), the queries are epochs drawn uniformly, with replacement, from
n_ctx + 1..T (its continuation), so n_ctx < T.

Parameters θ are laid out as ``param_names()``: the K weights, then each family's
parameters in `FAMILIES` order, then σ. ``log_joint`` is the unnormalised log posterior
density an MCMC reference needs (`pfnkit.data.LogJointPrior`); the truncation's
normaliser is a constant and is left out, and draws outside the support (weights off
the simplex, a rejected curve) get −inf.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Normal, constraints
from torch.distributions.constraints import Constraint

from pfnkit.data import Batch
from priors.learning_curves_families import FAMILIES, StackedParamPriors

__all__ = ["ORIENTATIONS", "ParametricCurvePrior", "ParametricCurvePriorConfig"]

ORIENTATIONS = ("error", "performance")
_SIMPLEX_ATOL = 1e-6  # weights whose sum is this far from 1 are off the simplex


@dataclass(frozen=True, kw_only=True)
class ParametricCurvePriorConfig:
    """A mixture of parametric curve families over epochs 1..T.

    Attributes:
        components: the families mixed (names in `FAMILIES`); LC-PFN's choice by default.
        max_epoch: T, epochs per curve.
        orientation: "error" (y = 1 − p, falling, e.g. validation error) or "performance"
            (y = p, rising, e.g. accuracy).
        noise_log_mean: mean of log σ (σ: the noise standard deviation).
        noise_log_std: standard deviation of log σ.
        max_rejection_rounds: give up after this many rounds of rejected curves.
    """

    components: tuple[str, ...] = ("pow3", "ilog2", "janoschek")
    max_epoch: int = 50
    orientation: str = "error"
    noise_log_mean: float = -4.0
    noise_log_std: float = 1.0
    max_rejection_rounds: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        unknown = [name for name in self.components if name not in FAMILIES]
        if unknown or not self.components or len(set(self.components)) < len(self.components):
            raise ValueError(
                f"components must be distinct names from {sorted(FAMILIES)}, got {self.components}"
            )
        if self.max_epoch < 2:
            raise ValueError(f"max_epoch must be at least 2, got {self.max_epoch}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")
        if not (math.isfinite(self.noise_log_std) and self.noise_log_std > 0):
            raise ValueError(f"noise_log_std must be positive, got {self.noise_log_std}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["components"] = list(self.components)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParametricCurvePriorConfig:
        return cls(**data)


def _valid_curve(p_ST: Tensor) -> Tensor:
    """p within [0, 1] (and finite) on every epoch, and p(T) > p(1); (S,) bool."""
    inside = ((p_ST >= 0) & (p_ST <= 1)).all(-1) & torch.isfinite(p_ST).all(-1)
    return inside & (p_ST[..., -1] > p_ST[..., 0])


class ParametricCurvePrior:
    """Batched sampler of single partial learning curves, with the log-joint for MCMC."""

    def __init__(self, config: ParametricCurvePriorConfig | None = None) -> None:
        self.config = config or ParametricCurvePriorConfig()
        self.families = [FAMILIES[name] for name in self.config.components]
        self._family_priors = StackedParamPriors([p for f in self.families for p in f.priors])
        self._reference: Tensor | None = None

    def param_names(self) -> list[str]:
        """Names of θ's entries: "w.<family>", then "<family>.<param>", then "noise_std"."""
        names = [f"w.{f.name}" for f in self.families]
        names += [f"{f.name}.{p}" for f in self.families for p in f.params]
        return [*names, "noise_std"]

    def _split(self, params_SP: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        k = len(self.families)
        if params_SP.shape[-1] != len(self.param_names()):
            raise ValueError(
                f"expected {len(self.param_names())} parameters {self.param_names()}, "
                f"got {params_SP.shape[-1]}"
            )
        blocks, start = [], k
        for family in self.families:
            blocks.append(params_SP[..., start : start + family.num_params])
            start += family.num_params
        return params_SP[..., :k], blocks, params_SP[..., -1]

    def epochs(self, like: Tensor | None = None) -> Tensor:
        """Epochs 1..T as float64 (or like `like`)."""
        kw = (
            {"dtype": torch.float64}
            if like is None
            else {"dtype": like.dtype, "device": like.device}
        )
        return torch.arange(1, self.config.max_epoch + 1, **kw)

    def performance(self, params_SP: Tensor, t_T: Tensor) -> Tensor:
        """The noiseless mixture p(t) = Σ_k w_k p_k(t | θ_k), shape (S, T)."""
        w_SK, blocks, _ = self._split(params_SP)
        curves = [f.curve(block, t_T) for f, block in zip(self.families, blocks, strict=True)]
        return (w_SK[..., None] * torch.stack(curves, dim=-2)).sum(-2)

    def mean_curve(self, params_SP: Tensor, t_T: Tensor) -> Tensor:
        """The noiseless curve in the prior's orientation: 1 − p(t) or p(t), shape (S, T)."""
        p_ST = self.performance(params_SP, t_T)
        return 1.0 - p_ST if self.config.orientation == "error" else p_ST

    def is_valid(self, params_SP: Tensor) -> Tensor:
        """The truncation: p within [0, 1] on epochs 1..T and p(T) > p(1); (S,) bool."""
        return _valid_curve(self.performance(params_SP, self.epochs(params_SP)))

    def _candidates(self, n: int, generator: torch.Generator) -> Tensor:
        cfg = self.config
        u_NK = torch.rand(n, len(self.families), generator=generator, dtype=torch.float64)
        exp_NK = -torch.log1p(-u_NK)
        w_NK = exp_NK / exp_NK.sum(-1, keepdim=True)
        thetas = [f.sample_params(n, generator) for f in self.families]
        z_N = torch.randn(n, generator=generator, dtype=torch.float64)
        sigma_N1 = torch.exp(cfg.noise_log_mean + cfg.noise_log_std * z_N)[:, None]
        return torch.cat([w_NK, *thetas, sigma_N1], dim=-1)

    def sample_params(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws of θ (n, P) from the truncated prior, by rejection, float64."""
        accepted, total = [], 0
        for _ in range(self.config.max_rejection_rounds):
            params = self._candidates(max(2 * (n - total), 64), generator)
            keep = params[self.is_valid(params)][: n - total]
            accepted.append(keep)
            total += keep.shape[0]
            if total == n:
                return torch.cat(accepted)
        raise RuntimeError(
            f"only {total} of {n} curves passed the [0, 1] and improvement constraints in "
            f"{self.config.max_rejection_rounds} rounds; widen the family priors or the epochs"
        )

    def log_prior(self, params_SP: Tensor) -> Tensor:
        """Unnormalised log prior density of θ (S,): −inf outside the support."""
        total = self._log_prior_untruncated(params_SP)
        return torch.where(self.is_valid(params_SP), total, -math.inf)

    def _log_prior_untruncated(self, params_SP: Tensor) -> Tensor:
        """The product of the parameter priors, before the truncation to valid curves."""
        cfg = self.config
        w_SK, _, sigma_S = self._split(params_SP)
        k = w_SK.shape[-1]
        on_simplex = (w_SK >= 0).all(-1) & ((w_SK.sum(-1) - 1).abs() < _SIMPLEX_ATOL)
        dirichlet = torch.full_like(sigma_S, math.lgamma(k))  # Dirichlet(1, ..., 1): Γ(K)
        total = torch.where(on_simplex, dirichlet, -math.inf)
        total = total + self._family_priors.log_prob(params_SP[..., k:-1])
        log_sigma_S = sigma_S.log()
        z_S = (log_sigma_S - cfg.noise_log_mean) / cfg.noise_log_std  # log σ ~ N(m, s²)
        log_density_S = -0.5 * z_S**2 - math.log(cfg.noise_log_std * math.sqrt(2 * math.pi))
        return total + torch.nan_to_num(log_density_S - log_sigma_S, nan=-math.inf)

    def log_likelihood(self, params_SP: Tensor, t_N: Tensor, y_N: Tensor) -> Tensor:
        """Σ_n log N(y_n | curve(t_n), σ²) for each of S draws, shape (S,)."""
        mean_SN = self.mean_curve(params_SP, t_N.to(params_SP))
        sigma_S1 = self._split(params_SP)[2][..., None]
        return Normal(mean_SN, sigma_S1, validate_args=False).log_prob(y_N.to(params_SP)).sum(-1)

    def log_joint(self, params_SP: Tensor, task: Batch) -> Tensor:
        """log p(θ) + log p(context | θ) for S draws of ONE task, shape (S,) (`LogJointPrior`)."""
        if task.batch_size != 1:
            raise ValueError(f"log_joint takes a one-task batch, got {task.batch_size} tasks")
        # the prior's epochs are whole numbers; rounding undoes the float32 rounding of t / T
        t_N = torch.round(task.x_ctx[0, :, 0].double() * self.config.max_epoch).long()
        prior_S = self._log_prior_untruncated(params_SP)
        finite = torch.isfinite(prior_S)
        safe_SP = torch.where(finite[:, None], params_SP, self._reference_params(params_SP))
        p_ST = self.performance(safe_SP, self.epochs(params_SP))  # once: truncation and fit
        curve_SN = (1.0 - p_ST if self.config.orientation == "error" else p_ST)[:, t_N - 1]
        sigma_S1 = self._split(safe_SP)[2][:, None]
        lik_S = (
            Normal(curve_SN, sigma_S1, validate_args=False)
            .log_prob(task.y_ctx[0].to(params_SP))
            .sum(-1)
        )
        return torch.where(finite & _valid_curve(p_ST), prior_S + lik_S, -math.inf)

    def _reference_params(self, like: Tensor) -> Tensor:
        """A fixed valid θ, put in place of invalid draws so no NaN reaches the gradient."""
        if self._reference is None:
            self._reference = self.sample_params(1, torch.Generator().manual_seed(0))
        return self._reference.to(like).expand(like.shape[0], -1)

    def param_supports(self) -> list[tuple[int, Constraint]]:
        """θ's layout as (length, support) blocks, for MCMC in an unconstrained space.

        The K weights on the simplex, then each family parameter's prior support in
        ``param_names()`` order, then σ > 0. The truncation to valid curves is not a
        support: ``log_joint`` is −inf there.
        """
        like = torch.zeros((), dtype=torch.float64)  # float64 bounds, as the log-joint's
        blocks = [(len(self.families), constraints.simplex)]
        for family in self.families:
            blocks += [(1, prior.distribution(like).support) for prior in family.priors]
        return [*blocks, (1, constraints.positive)]

    def observation_distribution(self, params_SP: Tensor, x_MD: Tensor) -> Normal:
        """y at inputs x (epoch fractions, (M, 1)) given each θ: N(curve(t), σ²), shape (S, M)."""
        t_M = torch.round(x_MD[:, 0].to(params_SP) * self.config.max_epoch)
        mean_SM = self.mean_curve(params_SP, t_M)
        sigma_SM = self._split(params_SP)[2][:, None].expand_as(mean_SM)
        return Normal(mean_SM, sigma_SM, validate_args=False)

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A regression PFN over one input, the epoch fraction (`pfnkit.data.PretrainPrior`)."""
        if kind != "pfn":
            raise ValueError(
                f"a learning-curve prior trains a PFN ([model] kind = 'pfn'), not {kind!r}"
            )
        return {"num_features": 1}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: the prior rescales no features."""
        if declared is not None and declared.get("pad_rescale", "none") != "none":
            raise ValueError(
                "a learning-curve prior rescales no features, so [card] data_mapping must not "
                f"set pad_rescale (got {declared['pad_rescale']!r})"
            )
        return declared

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        """Curves observed on epochs 1..n_ctx, queried at later epochs; meta "params" (B, P)."""
        t_max = self.config.max_epoch
        if not 0 <= n_ctx < t_max:
            raise ValueError(f"n_ctx must lie in [0, max_epoch - 1 = {t_max - 1}], got {n_ctx}")
        params_BP = self.sample_params(batch_size, generator)
        t_T = self.epochs()
        sigma_B1 = params_BP[:, -1:]
        eps_BT = torch.randn(batch_size, t_max, generator=generator, dtype=torch.float64)
        y_BT = self.mean_curve(params_BP, t_T) + sigma_B1 * eps_BT
        qry_BM = torch.randint(n_ctx, t_max, (batch_size, n_qry), generator=generator)
        ctx_BN = torch.arange(n_ctx).expand(batch_size, -1)
        s_T = t_T / t_max

        def take(index: Tensor) -> tuple[Tensor, Tensor]:
            return s_T[index][..., None].float(), torch.gather(y_BT, 1, index).float()

        (x_ctx, y_ctx), (x_qry, y_qry) = take(ctx_BN), take(qry_BM)
        return Batch(x_ctx=x_ctx, y_ctx=y_ctx, x_qry=x_qry, y_qry=y_qry,
                     meta={"params": params_BP.float()})  # fmt: skip
