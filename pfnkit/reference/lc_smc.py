"""Tempered SMC over a parametric learning-curve posterior, its gate and its predictive.

The particles of `pfnkit.reference.tempered_smc` live in the unconstrained space u ∈ ℝ^U
that NUTS samples in (`pfnkit.reference.lc_posterior.curve_bijection`, Jacobian included):
the prior p(u) and the context likelihood L(u) split the prior's ``log_joint`` (L is the
product of ``observation_distribution`` densities at the context). The particles start as
exact prior draws, so every mode of the family weights is populated before the likelihood
is switched on, and importance weights, not a chain, share the mass between the modes:
this is what NUTS's chains miss on a pinned curve. The posterior predictive at query
inputs is the equal-weight mixture (1/S) Σ_s N(y*; curve(t* | θ_s), σ_s²) over all runs'
particles, the `GaussianMixturePredictive` the NUTS reference gives.

The gate (`CurveSMC.trusted`): ``runs`` (≥ 2) independent runs each reach β = 1 within
``max_temperatures`` steps with an ESS at β = 1 (after the last reweighting, before
resampling) of at least ``min_ess_fraction`` · N, and every pair of runs agrees on the
posterior predictive at the gate inputs (the task's distinct query epochs): their
symmetrised KL divergence J = KL(p_i ‖ p_j) + KL(p_j ‖ p_i), averaged over those inputs
and estimated from ``gate_draws`` values y per input drawn from each run's mixture (its
own density taken without the component y came from, so two exact samplers give J ≈ 0),
is at most ``agreement_nats``. If the runs' log densities err independently by ε_i
(p_i = p(1 + ε_i)), J ≈ 2 E[ε²] and the pooled predictive's expected excess NLL is
KL(p ‖ p̄) ≈ E[ε²] / 4 ≈ J / 8. The check uses no observed query value. The predictive is
the equal-weight mixture over all runs' particles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Normal

from pfnkit.data import Batch
from pfnkit.reference.gp_nuts import GaussianMixturePredictive
from pfnkit.reference.lc_posterior import CurvePosteriorPrior, curve_bijection
from pfnkit.reference.tempered_smc import SMCConfig, SMCRun, run_tempered_smc

__all__ = ["DEFAULT_LC_SMC", "CurveSMC", "curve_posterior_smc", "run_agreement"]

_DTYPE = torch.float64

# 2 runs of 3000 particles, at least 40 Metropolis steps per temperature (fewer left the
# runs disagreeing: J of 0.13-0.64 at 20 steps). The gate's J <= 0.1 puts the pooled
# predictive's expected excess NLL near 0.1 / 8 = 0.0125 nats, a quarter of lc-curve's
# 0.05 target. Measured on one shared CPU core, one lc-curve task per context size 2, 5,
# 10, 20, 40: 15-39 s per task (both runs), 20-37 temperatures, acceptance 0.20-0.24.
DEFAULT_LC_SMC = SMCConfig()


@dataclass(frozen=True)
class CurveSMC:
    """SMC runs over one curve's θ, their gate and the pooled posterior predictive.

    Attributes:
        runs: the independent runs (particles in the unconstrained space).
        params_SP: θ of every run's particles, pooled (S = runs · N, P).
        observation: y | θ at inputs, the prior's ``observation_distribution``.
        agreement: the largest symmetrised KL divergence J between two runs' predictives,
            averaged over the gate inputs (None with one run).
        config: the budget and gate.
    """

    runs: list[SMCRun]
    params_SP: Tensor
    observation: Callable[[Tensor, Tensor], Normal]
    agreement: float | None
    config: SMCConfig

    @property
    def min_ess(self) -> float:
        return min(run.final_ess for run in self.runs)

    @property
    def reason(self) -> str:
        """Why the gate failed ("" when it passed)."""
        cfg = self.config
        if not all(run.reached_one for run in self.runs):
            return f"a run did not reach beta = 1 within {cfg.max_temperatures} temperatures"
        if self.min_ess < cfg.min_ess_fraction:
            return f"final ESS {self.min_ess:.2f} N is below {cfg.min_ess_fraction} N"
        if self.agreement is None:
            return "one run: nothing to compare it with"
        if self.agreement > cfg.agreement_nats:
            return f"runs disagree by {self.agreement:.4f} nats > {cfg.agreement_nats}"
        return ""

    @property
    def trusted(self) -> bool:
        return not self.reason

    def predictive(self, x_MD: Tensor) -> GaussianMixturePredictive:
        """(1/S) Σ_s N(curve(x | θ_s), σ_s²) at M inputs over all runs, batch shape (M,)."""
        obs = self.observation(self.params_SP, x_MD.to(_DTYPE))
        return GaussianMixturePredictive(obs.loc, obs.scale.square())


def _draws_and_log_densities(
    own: Normal, other: Normal, draws: int, generator: torch.Generator
) -> Tensor:
    """log p_own(y) − log p_other(y) (D, M) at y ~ p_own, leaving y's own component out.

    `own` and `other` are equal-weight mixtures with components along dim 0 (K, M). Leaving
    out the component y came from makes log p_own(y) as unbiased as log p_other(y).
    """
    k, m = own.loc.shape
    pick_DM = torch.randint(0, k, (draws, m), generator=generator)
    z_DM = torch.randn(pick_DM.shape, generator=generator, dtype=own.loc.dtype)
    y_DM = own.loc.gather(0, pick_DM) + own.scale.gather(0, pick_DM) * z_DM
    own_KDM = Normal(own.loc[:, None], own.scale[:, None]).log_prob(y_DM)
    total_DM = own_KDM.logsumexp(0)
    self_DM = own_KDM.gather(0, pick_DM[None]).squeeze(0)
    left_DM = total_DM + torch.log1p(-(self_DM - total_DM).exp().clamp_max(1 - 1e-15))
    other_DM = Normal(other.loc[:, None], other.scale[:, None]).log_prob(y_DM).logsumexp(0)
    return (left_DM - math.log(k - 1)) - (other_DM - math.log(other.loc.shape[0]))


def run_agreement(
    params_RNP: list[Tensor], observation: Callable[[Tensor, Tensor], Normal], x_MD: Tensor,
    draws: int, generator: torch.Generator,
) -> float:  # fmt: skip
    """Max over pairs of runs of their predictives' symmetrised KL divergence, averaged over x.

    KL(p_i ‖ p_j) + KL(p_j ‖ p_i) at each of the M inputs, by `draws` values y from each
    run's equal-weight mixture p_i (its own density taken without y's component).
    """
    obs = [observation(params_NP, x_MD) for params_NP in params_RNP]
    return max(
        float(
            _draws_and_log_densities(obs[i], obs[j], draws, generator).mean()
            + _draws_and_log_densities(obs[j], obs[i], draws, generator).mean()
        )
        for i in range(len(obs))
        for j in range(i + 1, len(obs))
    )


def curve_posterior_smc(
    prior: CurvePosteriorPrior,
    task: Batch,
    *,
    smc: SMCConfig = DEFAULT_LC_SMC,
    seed: int = 0,
    gate_x_MD: Tensor | None = None,
) -> CurveSMC:
    """Tempered SMC over θ given one task's context, `smc.runs` times, gated (module docstring).

    Args:
        prior: the curve prior (its log-joint, supports, draws and y | θ).
        task: a one-task batch; only its context is conditioned on.
        smc: the budget and gate.
        seed: seed of the parametrisation's noise floor, of the runs and of the gate's draws.
        gate_x_MD: inputs whose predictive the runs must agree on; the task's distinct
            query inputs when None.
    """
    task = task.to(_DTYPE)
    generator = torch.Generator().manual_seed(seed)
    bijection = curve_bijection(prior, task, generator)
    x_ctx_ND, y_ctx_N = task.x_ctx[0], task.y_ctx[0]
    gate_x_MD = torch.unique(task.x_qry[0], dim=0) if gate_x_MD is None else gate_x_MD.to(_DTYPE)

    def densities(u_SU: Tensor) -> tuple[Tensor, Tensor]:
        theta_SP, log_det_S = bijection(u_SU)
        joint_S = prior.log_joint(theta_SP, task)
        lik_S = prior.observation_distribution(theta_SP, x_ctx_ND).log_prob(y_ctx_N).sum(-1)
        finite_S = torch.isfinite(joint_S) & torch.isfinite(lik_S)
        log_prior_S = torch.where(finite_S, joint_S + log_det_S - lik_S, -math.inf)
        return log_prior_S, torch.where(finite_S, lik_S, -math.inf)

    runs = []
    for _ in range(smc.runs):
        run_generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (), generator=generator))
        )
        initial_NU = bijection.inverse(prior.sample_params(smc.particles, run_generator))
        runs.append(run_tempered_smc(densities, initial_NU, smc, run_generator))
    params = [bijection(run.particles_NU)[0] for run in runs]
    agreement = (
        run_agreement(params, prior.observation_distribution, gate_x_MD, smc.gate_draws,
                      generator) if len(runs) > 1 else None
    )  # fmt: skip
    return CurveSMC(runs=runs, params_SP=torch.cat(params), agreement=agreement,
                    observation=prior.observation_distribution, config=smc)  # fmt: skip
