"""Adversarial attacks on observed data, scored by KL(q(·|D) ‖ q(·|D+δ)).

Following Glöckler, Deistler & Macke (arXiv 2305.14984), an attack looks for the
perturbation δ of the observed data D, inside a ball of radius ε, that moves an inferred
distribution the most in KL divergence. ε is in units of the data's standard deviation:
per task, and per attacked quantity (each input feature, the targets, each observation
dimension). The optimiser is `pfnkit.robustness.pgd`; this module says what is perturbed and how
the divergence is measured:

- `attack_context`: the context inputs and/or targets of any predictor
  ``(x_ctx, y_ctx, x_qry) -> Distribution`` with batch shape (B, M), such as a `PFN` or
  `exact_gp_predictor`. The objective is the mean over query points of the pointwise KL,
  from ``torch.distributions.kl_divergence``: exact for two bar distributions on the same
  borders, closed form for two Gaussians.
- `attack_observations`: the observations of a posterior ``obs_BND -> MixtureSameFamily``
  over parameters θ. The KL is estimated by Monte Carlo with samples from the clean
  posterior, held fixed across steps (common random numbers); gradients flow only
  through the perturbed posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    MixtureSameFamily,
    Normal,
    kl_divergence,
)

from pfnkit.mixtures import sample_mixture
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive_batch
from pfnkit.robustness.pgd import AttackConfig, attack_eps_path

__all__ = [
    "TARGETS",
    "ContextAttack",
    "ObservationAttack",
    "PosteriorFn",
    "Predictor",
    "attack_context",
    "attack_observations",
    "data_scale",
    "exact_gp_predictor",
]

TARGETS: tuple[str, ...] = ("y", "x", "xy")

Predictor = Callable[[Tensor, Tensor, Tensor], Distribution]
"""``(x_ctx_BND, y_ctx_BN, x_qry_BMD) -> Distribution`` with batch shape (B, M)."""

PosteriorFn = Callable[[Tensor], MixtureSameFamily]
"""``obs_BND -> MixtureSameFamily`` over θ with batch shape (B,)."""


@dataclass(frozen=True)
class ContextAttack:
    """The worst context found for each task at one radius.

    Attributes:
        eps: radius, in units of the data's standard deviation.
        kl_B: mean KL over query points at the attacked context, shape (B,), float64.
        x_ctx_BND: attacked context inputs (equal to the clean ones unless x is a target).
        y_ctx_BN: attacked context targets (equal to the clean ones unless y is a target).
    """

    eps: float
    kl_B: Tensor
    x_ctx_BND: Tensor
    y_ctx_BN: Tensor


@dataclass(frozen=True)
class ObservationAttack:
    """The worst observations found for each task at one radius.

    Attributes:
        eps: radius, in units of the observations' standard deviation.
        kl_B: Monte Carlo KL at the attacked observations, shape (B,), float64.
        obs_BND: attacked observations.
    """

    eps: float
    kl_B: Tensor
    obs_BND: Tensor


def data_scale(values: Tensor) -> Tensor:
    """Per-task standard deviation over points (dim 1), kept as a size-1 dim.

    Uses the population std (so one point gives 0). Where it is 0, the scale is 1, so a
    constant quantity is still attacked, in its own units.

    Args:
        values: (B, N) or (B, N, D).

    Returns:
        (B, 1) or (B, 1, D), in the values' dtype.
    """
    if values.ndim < 2 or values.shape[1] == 0:
        raise ValueError(f"need values of shape (B, N, ...) with N >= 1, got {values.shape}")
    std = values.detach().std(dim=1, keepdim=True, correction=0)
    return torch.where(std > 0, std, torch.ones_like(std))


class _ContextPerturbation:
    """Maps standardised perturbations (B, C) onto the attacked parts of a context."""

    def __init__(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor, target: str) -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
        if x_ctx_BND.ndim != 3 or y_ctx_BN.shape != x_ctx_BND.shape[:2]:
            raise ValueError(
                f"expected x_ctx (B, N, D) and y_ctx (B, N), got {tuple(x_ctx_BND.shape)} "
                f"and {tuple(y_ctx_BN.shape)}"
            )
        self.x_ctx_BND, self.y_ctx_BN = x_ctx_BND.detach(), y_ctx_BN.detach()
        self.target = target
        b, n, d = x_ctx_BND.shape
        self.n_x = n * d if "x" in target else 0
        self.n_y = n if "y" in target else 0
        self.shape = (b, self.n_x + self.n_y)
        self.scale_x_B1D = data_scale(self.x_ctx_BND)
        self.scale_y_B1 = data_scale(self.y_ctx_BN)

    def apply(self, u_BC: Tensor) -> tuple[Tensor, Tensor]:
        """The perturbed (x_ctx, y_ctx), differentiable in ``u_BC``."""
        x_BND, y_BN = self.x_ctx_BND, self.y_ctx_BN
        if self.n_x:
            u_BND = u_BC[:, : self.n_x].reshape(x_BND.shape).to(x_BND.dtype)
            x_BND = x_BND + self.scale_x_B1D * u_BND
        if self.n_y:
            y_BN = y_BN + self.scale_y_B1 * u_BC[:, self.n_x :].to(y_BN.dtype)
        return x_BND, y_BN


def attack_context(
    predictor: Predictor,
    x_ctx_BND: Tensor,
    y_ctx_BN: Tensor,
    x_qry_BMD: Tensor,
    eps: Sequence[float],
    *,
    target: str = "y",
    config: AttackConfig | None = None,
    generator: torch.Generator,
    on_eval: Callable[[], None] | None = None,
) -> list[ContextAttack]:
    """Worst-case context perturbations of a predictive distribution, per radius.

    The objective is ``mean_m KL(p(y_m | D) ‖ p(y_m | D+δ))`` over the query points, which
    stay clean. The worst-case KL never decreases along ``eps`` (see `attack_eps_path`).
    Perturbations are drawn and optimised in float64 and cast to the inputs' dtype, so a
    float32 PFN and the float64 exact GP start from the same points for the same seed.

    Args:
        predictor: a `PFN`, `exact_gp_predictor(hyper)`, or any callable with that
            signature whose distributions `kl_divergence` knows.
        x_ctx_BND: clean context inputs (B, N, D).
        y_ctx_BN: clean context targets (B, N).
        x_qry_BMD: query inputs (B, M, D).
        eps: non-decreasing radii, in units of each task's std of each attacked quantity.
        target: "y", "x" or "xy" (one ball over both).
        config: attack settings (default `AttackConfig()`).
        generator: source of the random starts.
        on_eval: called after every objective evaluation.

    Returns:
        One `ContextAttack` per radius.
    """
    config = config or AttackConfig()
    perturbation = _ContextPerturbation(x_ctx_BND, y_ctx_BN, target)
    with torch.no_grad():
        clean = predictor(perturbation.x_ctx_BND, perturbation.y_ctx_BN, x_qry_BMD)

    def objective(u_BC: Tensor) -> Tensor:
        attacked = predictor(*perturbation.apply(u_BC), x_qry_BMD)
        return kl_divergence(clean, attacked).mean(-1)

    path = attack_eps_path(
        objective,
        perturbation.shape,
        eps,
        config,
        generator=generator,
        device=x_ctx_BND.device,
        on_eval=on_eval,
        divergence=True,
    )
    attacks = []
    for result in path:
        x_BND, y_BN = perturbation.apply(result.u_BC)
        attacks.append(ContextAttack(result.eps, result.kl_B, x_BND, y_BN))
    return attacks


def exact_gp_predictor(hyper: GPHyperparameters) -> Predictor:
    """The exact GP predictive at fixed hyperparameters as a `Predictor` (Normal, float64).

    Differentiable in the context inputs and targets; tasks run one after another.
    """

    def predict(x_ctx_BND: Tensor, y_ctx_BN: Tensor, x_qry_BMD: Tensor) -> Normal:
        return exact_gp_predictive_batch(x_ctx_BND, y_ctx_BN, x_qry_BMD, hyper).to_distribution()

    return predict


# ------------------------------------------------------------------ posteriors over θ
def _kl_terms(log_r: Tensor) -> Tensor:
    """Terms (r - 1) - log r, r = q/p at samples of p, whose mean estimates KL(p ‖ q).

    Since E_p[r] = 1 the mean is unbiased, like the mean of -log r, but every term is
    non-negative and second order in q - p: for a small perturbation the plain estimate
    is dominated by a first-order Monte Carlo term that an attack would exploit. log r is
    capped at 50 so that exp cannot overflow.
    """
    log_r = log_r.clamp(max=50.0)
    return torch.expm1(log_r) - log_r


def attack_observations(
    posterior_fn: PosteriorFn,
    obs_BND: Tensor,
    eps: Sequence[float],
    *,
    config: AttackConfig | None = None,
    n_samples: int = 256,
    generator: torch.Generator,
    on_eval: Callable[[], None] | None = None,
) -> list[ObservationAttack]:
    """Worst-case observation perturbations of a mixture posterior over θ, per radius.

    KL(q(·|D) ‖ q(·|D+δ)) is estimated with ``n_samples`` draws θ_s from the clean
    posterior, drawn once and reused at every step and radius, so the estimate is a
    fixed, smooth function of δ that is exactly 0 at δ = 0.

    Args:
        posterior_fn: observations (B, N, D) -> MixtureSameFamily with batch shape (B,),
            e.g. a Distribution Transformer or an analytic GMM posterior.
        obs_BND: clean observations (B, N, D).
        eps: non-decreasing radii, in units of each task's std of each dimension.
        config: attack settings (default `AttackConfig()`).
        n_samples: Monte Carlo samples per task.
        generator: source of the samples and the random starts.
        on_eval: called after every objective evaluation.

    Returns:
        One `ObservationAttack` per radius.
    """
    if obs_BND.ndim != 3:
        raise ValueError(f"obs must have shape (B, N, D), got {tuple(obs_BND.shape)}")
    config = config or AttackConfig()
    clean_obs_BND = obs_BND.detach()
    scale_B1D = data_scale(clean_obs_BND)
    with torch.no_grad():
        clean = posterior_fn(clean_obs_BND)
        theta_SB_ = sample_mixture(clean, n_samples, generator=generator)
        log_clean_SB = clean.log_prob(theta_SB_)

    def perturb(u_BC: Tensor) -> Tensor:
        u_BND = u_BC.reshape(clean_obs_BND.shape).to(clean_obs_BND.dtype)
        return clean_obs_BND + scale_B1D * u_BND

    def objective(u_BC: Tensor) -> Tensor:
        attacked = posterior_fn(perturb(u_BC))
        return _kl_terms(attacked.log_prob(theta_SB_) - log_clean_SB).mean(0)

    b = clean_obs_BND.shape[0]
    path = attack_eps_path(
        objective,
        (b, clean_obs_BND[0].numel()),
        eps,
        config,
        generator=generator,
        device=obs_BND.device,
        on_eval=on_eval,
        divergence=True,
    )
    return [ObservationAttack(r.eps, r.kl_B, perturb(r.u_BC)) for r in path]
