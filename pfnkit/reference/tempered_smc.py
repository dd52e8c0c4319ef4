"""Tempered sequential Monte Carlo from a prior to a posterior, in an unconstrained space.

An SMC sampler (Del Moral, Doucet & Jasra, JRSS B 68:411, 2006, arXiv cond-mat/0212648)
moves N particles from the prior to the posterior along the tempered path

    π_β(u) ∝ p(u) L(u)^β,   β: 0 = β_0 < β_1 < ... < β_T = 1,

p the prior and L the likelihood. Each step picks the next β by bisection so that the
conditional ESS of the incremental weights L^(β_t − β_{t−1}) is ``cess_target`` · N
(adaptive tempering: Jasra, Stephens, Doucet & Tsagaris, Scand. J. Stat. 38:1, 2011; the
conditional ESS of Zhou, Johansen & Aston, JCGS 25:701, 2016, arXiv 1303.3123), reweights,
resamples (systematic) when the ESS falls below ``resample_below`` · N, and moves every
particle with random-walk Metropolis steps invariant for π_β whose proposal covariance is
the particles' weighted covariance times a scale adapted towards ``target_accept``. The
number of steps per temperature follows the last acceptance rate a so that a particle
moves with probability 1 − (1 − a)^steps ≥ 0.95, within ``[min_moves, max_moves]``
(Drovandi & Pettitt, Biometrics 67:225, 2011). The product of the mean incremental weights
estimates the evidence ∫ p L. Vectorised over particles; randomness from one generator.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Densities", "SMCConfig", "SMCRun", "run_tempered_smc"]

_BISECTIONS = 60  # halvings of the β increment: far below any useful resolution
_MOVE_PROBABILITY = 0.95  # a particle should move at least once per temperature this often
_JITTER = 1e-9  # added to the proposal covariance's diagonal
_SCALE_RATE = 1.0  # log-scale change per unit of (acceptance − target)


@dataclass(frozen=True, kw_only=True)
class SMCConfig:
    """Budget and gate of tempered SMC (see the module docstring).

    Attributes:
        particles: N, particles per run.
        runs: independent runs per task; the gate compares them (at least 2 to gate).
        cess_target: the conditional ESS each tempering step aims for, as a fraction of N.
        resample_below: resample when the ESS falls below this fraction of N.
        min_moves: random-walk Metropolis steps per temperature, at least.
        max_moves: and at most.
        target_accept: the acceptance rate the proposal scale is adapted towards.
        max_temperatures: a run that has not reached β = 1 after this many steps stops
            there, untrusted.
        min_ess_fraction: gate, the ESS at β = 1 as a fraction of N.
        agreement_nats: gate, the largest symmetrised KL divergence J between two runs'
            predictives, averaged over the gate inputs.
        gate_draws: values y per gate input drawn from each run's predictive.
    """

    particles: int = 3000
    runs: int = 2
    cess_target: float = 0.9
    resample_below: float = 0.5
    min_moves: int = 40
    max_moves: int = 150
    target_accept: float = 0.3
    max_temperatures: int = 500
    min_ess_fraction: float = 0.2
    agreement_nats: float = 0.1
    gate_draws: int = 64

    def __post_init__(self) -> None:
        if self.particles < 2 or self.runs < 1:
            raise ValueError(f"need particles >= 2 and runs >= 1, got {self.particles}, "
                             f"{self.runs}")  # fmt: skip
        fractions = (self.cess_target, self.resample_below, self.target_accept,
                     self.min_ess_fraction)  # fmt: skip
        if not all(0 < f < 1 for f in fractions):
            raise ValueError(
                "cess_target, resample_below, target_accept and min_ess_fraction must lie in "
                f"(0, 1), got {fractions}"
            )
        if not 1 <= self.min_moves <= self.max_moves or self.max_temperatures < 1:
            raise ValueError(
                f"need 1 <= min_moves <= max_moves and max_temperatures >= 1, got "
                f"{self.min_moves}, {self.max_moves}, {self.max_temperatures}"
            )
        if not self.agreement_nats > 0 or self.gate_draws < 1:
            raise ValueError("agreement_nats must be positive and gate_draws at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SMCConfig:
        return cls(**data)


@dataclass(frozen=True)
class SMCRun:
    """One run's equal-weight particles at its last β, and how it got there.

    Attributes:
        particles_NU: the particles after the last moves (resampled to equal weights).
        betas: the temperatures, from 0.
        log_evidence: the estimate of log ∫ p(u) L(u) du (of log ∫ p L^β for the last β).
        final_ess: the ESS right after the last reweighting, as a fraction of N.
        acceptance: the mean Metropolis acceptance rate at each temperature.
        moves: Metropolis steps made in all.
        seconds: wall time.
    """

    particles_NU: Tensor
    betas: list[float]
    log_evidence: float
    final_ess: float
    acceptance: list[float]
    moves: int
    seconds: float

    @property
    def reached_one(self) -> bool:
        return self.betas[-1] >= 1.0


def _ess_fraction(log_w_N: Tensor) -> float:
    """(Σ w)² / (N Σ w²) of unnormalised log weights."""
    return float((2 * log_w_N.logsumexp(0) - (2 * log_w_N).logsumexp(0)).exp()) / len(log_w_N)


def _next_beta(log_w_N: Tensor, log_lik_N: Tensor, beta: float, target: float) -> float:
    """The β' in (β, 1] whose conditional ESS fraction is `target` (1 when it stays above)."""
    log_norm_N = log_w_N - log_w_N.logsumexp(0)

    def cess(delta: float) -> float:
        inc_N = torch.where(torch.isfinite(log_lik_N), delta * log_lik_N, -math.inf)
        log_cess = 2 * (log_norm_N + inc_N).logsumexp(0) - (log_norm_N + 2 * inc_N).logsumexp(0)
        return float(log_cess.exp())  # W sums to 1: already a fraction of N

    if cess(1.0 - beta) >= target:
        return 1.0
    low, high = 0.0, 1.0 - beta
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if cess(middle) >= target else (low, middle)
    return beta + max(low, 1e-12)


def _systematic(log_w_N: Tensor, generator: torch.Generator) -> Tensor:
    """Indices of N systematic-resampling draws from normalised weights exp(log_w)."""
    n = len(log_w_N)
    cumulative_N = (log_w_N - log_w_N.logsumexp(0)).exp().cumsum(0)
    offset = torch.rand((), generator=generator, dtype=log_w_N.dtype)
    points_N = (torch.arange(n, dtype=log_w_N.dtype) + offset) / n
    return torch.searchsorted(cumulative_N, points_N).clamp_max(n - 1)


def _proposal_factor(u_NU: Tensor, log_w_N: Tensor) -> Tensor:
    """A Cholesky factor of the particles' weighted covariance (U, U)."""
    w_N = (log_w_N - log_w_N.logsumexp(0)).exp()
    centred_NU = u_NU - w_N @ u_NU
    cov_UU = (w_N[:, None] * centred_NU).T @ centred_NU
    jitter = _JITTER * (1.0 + cov_UU.diagonal().mean())
    return torch.linalg.cholesky(cov_UU + jitter * torch.eye(u_NU.shape[1], dtype=u_NU.dtype))


@dataclass
class _Cloud:
    """The particles, their prior and likelihood terms, and their log weights."""

    u_NU: Tensor
    log_prior_N: Tensor
    log_lik_N: Tensor
    log_w_N: Tensor

    def take(self, index: Tensor) -> None:
        self.u_NU, self.log_prior_N = self.u_NU[index], self.log_prior_N[index]
        self.log_lik_N, self.log_w_N = self.log_lik_N[index], torch.zeros_like(self.log_w_N)


Densities = Callable[[Tensor], tuple[Tensor, Tensor]]


def _move(
    cloud: _Cloud, densities: Densities, beta: float, steps: int, scale: float,
    generator: torch.Generator,
) -> float:  # fmt: skip
    """`steps` random-walk Metropolis steps for π_β on every particle; the acceptance rate."""
    factor_UU = scale * _proposal_factor(cloud.u_NU, cloud.log_w_N)
    accepted = 0.0
    for _ in range(steps):
        z_NU = torch.randn(cloud.u_NU.shape, generator=generator, dtype=cloud.u_NU.dtype)
        proposal_NU = cloud.u_NU + z_NU @ factor_UU.T
        prior_N, lik_N = densities(proposal_NU)
        log_ratio_N = prior_N + beta * lik_N - cloud.log_prior_N - beta * cloud.log_lik_N
        log_ratio_N = torch.nan_to_num(log_ratio_N, nan=-math.inf)
        uniform_N = torch.rand(log_ratio_N.shape, generator=generator, dtype=log_ratio_N.dtype)
        accept_N = uniform_N.log() < log_ratio_N
        cloud.u_NU = torch.where(accept_N[:, None], proposal_NU, cloud.u_NU)
        cloud.log_prior_N = torch.where(accept_N, prior_N, cloud.log_prior_N)
        cloud.log_lik_N = torch.where(accept_N, lik_N, cloud.log_lik_N)
        accepted += float(accept_N.double().mean())
    return accepted / steps


def _steps_for(acceptance: float, config: SMCConfig) -> int:
    """Steps that move a particle with probability `_MOVE_PROBABILITY` at this acceptance."""
    if acceptance >= _MOVE_PROBABILITY:
        return config.min_moves
    if acceptance <= 0:
        return config.max_moves
    wanted = math.ceil(math.log(1 - _MOVE_PROBABILITY) / math.log(1 - acceptance))
    return min(max(wanted, config.min_moves), config.max_moves)


def run_tempered_smc(
    densities: Densities, initial_NU: Tensor, config: SMCConfig, generator: torch.Generator
) -> SMCRun:
    """Tempered SMC from prior draws to the posterior (see the module docstring).

    Args:
        densities: maps u (S, U) to the log prior density (Jacobian included, −inf outside
            the support) and the log-likelihood, both (S,); the posterior is their sum.
        initial_NU: N exact prior draws in u, float64.
        config: the budget (``particles`` is taken from `initial_NU`'s rows).
        generator: the source of every random number.
    """
    started = time.perf_counter()
    log_prior_N, log_lik_N = densities(initial_NU)
    if not torch.isfinite(log_prior_N).all():
        raise ValueError("the initial particles must be prior draws with a finite prior density")
    cloud = _Cloud(initial_NU, log_prior_N, log_lik_N, torch.zeros_like(log_prior_N))
    betas, acceptance, log_evidence, moves = [0.0], [], 0.0, 0
    scale, rate, final_ess = 2.38 / math.sqrt(initial_NU.shape[1]), 0.0, 1.0
    while betas[-1] < 1.0 and len(betas) <= config.max_temperatures:
        beta = _next_beta(cloud.log_w_N, cloud.log_lik_N, betas[-1], config.cess_target)
        inc_N = torch.where(torch.isfinite(cloud.log_lik_N),
                            (beta - betas[-1]) * cloud.log_lik_N, -math.inf)  # fmt: skip
        log_norm_N = cloud.log_w_N - cloud.log_w_N.logsumexp(0)
        log_evidence += float((log_norm_N + inc_N).logsumexp(0))
        cloud.log_w_N = cloud.log_w_N + inc_N
        betas.append(beta)
        final_ess = _ess_fraction(cloud.log_w_N)
        if final_ess < config.resample_below:
            cloud.take(_systematic(cloud.log_w_N, generator))
        steps = _steps_for(rate, config) if acceptance else config.min_moves
        rate = _move(cloud, densities, beta, steps, scale, generator)
        acceptance.append(rate)
        moves += steps
        scale *= math.exp(_SCALE_RATE * (rate - config.target_accept))
    if _ess_fraction(cloud.log_w_N) < 1.0 - 1e-12:  # equal weights for the predictive
        cloud.take(_systematic(cloud.log_w_N, generator))
    return SMCRun(
        particles_NU=cloud.u_NU, betas=betas, log_evidence=log_evidence, final_ess=final_ess,
        acceptance=acceptance, moves=moves, seconds=time.perf_counter() - started,
    )  # fmt: skip
