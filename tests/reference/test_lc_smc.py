"""`pfnkit.reference.tempered_smc` and `pfnkit.reference.lc_smc`: tempered SMC and its gate.

Oracles: systematic resampling's counts against floor/ceil of N·W (exact); the tempering
step against the conditional ESS written out in numpy; a conjugate Gaussian linear model
whose posterior mean, covariance and evidence are closed form (evidence by scipy's
multivariate normal); the curve predictive against self-normalised importance sampling from
a noisy curve prior (independent of SMC and of the bijection); the gate's divergence
against two independent sets of exact prior draws (≈ 0) and two different priors (large).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfnkit.reference.lc_smc import CurveSMC, curve_posterior_smc, run_agreement
from pfnkit.reference.tempered_smc import (
    SMCConfig,
    SMCRun,
    _next_beta,
    _systematic,
    run_tempered_smc,
)
from priors.learning_curves_parametric import ParametricCurvePrior, ParametricCurvePriorConfig
from tests.reference.test_lc_posterior import importance_log_prob

BISECTION_ATOL = 1e-6  # the tempering step's conditional ESS against its target
# Conjugate model, 2000 particles: posterior mean within this many posterior sds, posterior
# sds within this relative error, log evidence within this many nats (SMC error).
SMC_MEAN_SDS = 0.15
SMC_SD_RTOL = 0.15
SMC_LOG_Z_ATOL = 0.15
# SMC and importance sampling (40k prior draws) both estimate the noisy prior's predictive;
# the mean log density over 2 tasks x 30 query epochs must agree this well (as NUTS's does).
SMC_VS_IS_NLL = 0.05
# Gate divergence J between two sets of 2000 exact draws (measured -0.009 to 0.010).
EXACT_AGREEMENT = 0.03
FAST = SMCConfig(particles=1000, min_moves=10, max_moves=40)
NOISY = ParametricCurvePriorConfig(max_epoch=30, noise_log_mean=-3.0, noise_log_std=0.3)


def test_systematic_resampling_copies_each_particle_floor_or_ceil_of_n_w() -> None:
    gen = torch.Generator().manual_seed(0)
    log_w = torch.randn(50, generator=gen, dtype=torch.float64) * 2
    expected = 50 * torch.softmax(log_w, 0)
    for _ in range(20):
        counts = torch.bincount(_systematic(log_w, gen), minlength=50).double()
        assert counts.sum() == 50
        assert ((counts >= expected.floor()) & (counts <= expected.ceil())).all()


def test_the_tempering_step_hits_the_conditional_ess_target() -> None:
    gen = torch.Generator().manual_seed(1)
    log_w = torch.randn(400, generator=gen, dtype=torch.float64)
    log_lik = -50 * torch.rand(400, generator=gen, dtype=torch.float64)
    beta = _next_beta(log_w, log_lik, 0.2, 0.7)
    w = np.exp(log_w.numpy() - log_w.numpy().max())
    w /= w.sum()
    inc = np.exp((beta - 0.2) * log_lik.numpy())
    assert (w * inc).sum() ** 2 / (w * inc**2).sum() == pytest.approx(0.7, abs=BISECTION_ATOL)
    assert _next_beta(log_w, torch.zeros(400, dtype=torch.float64), 0.2, 0.7) == 1.0


def test_smc_recovers_a_conjugate_gaussian_posterior_and_its_evidence() -> None:
    """u ~ N(0, 2² I_3), y = X u + N(0, 0.3²): posterior and evidence in closed form."""
    gen = torch.Generator().manual_seed(2)
    x_nd = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    y_n = x_nd @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y_n = y_n + 0.3 * torch.randn(20, generator=gen, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    prior = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), 4.0 * eye)

    def densities(u_sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lik = torch.distributions.Normal(u_sd @ x_nd.T, 0.3).log_prob(y_n).sum(-1)
        return prior.log_prob(u_sd), lik

    config = SMCConfig(particles=2000, min_moves=5, max_moves=30)
    run = run_tempered_smc(densities, prior.sample((2000,)), config, gen)
    x, y = x_nd.numpy(), y_n.numpy()
    precision = x.T @ x / 0.09 + np.eye(3) / 4.0
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / 0.09
    log_z = stats.multivariate_normal(np.zeros(20), 4.0 * x @ x.T + 0.09 * np.eye(20)).logpdf(y)
    u = run.particles_NU.numpy()
    sds = np.sqrt(np.diag(cov))
    assert run.reached_one and len(run.betas) > 3  # the tempering had work to do
    assert np.abs((u.mean(0) - mean) / sds).max() < SMC_MEAN_SDS
    np.testing.assert_allclose(u.std(0), sds, rtol=SMC_SD_RTOL)
    assert run.log_evidence == pytest.approx(log_z, abs=SMC_LOG_Z_ATOL)


def test_a_wrong_likelihood_temperature_is_caught_by_the_conjugate_oracle() -> None:
    """The oracle can fail: stopping at β = 1/2 leaves the posterior sds sqrt(2) too wide."""
    gen = torch.Generator().manual_seed(3)
    prior = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 2.0)
    y = torch.tensor(1.0, dtype=torch.float64) + 0.1 * torch.randn(30, generator=gen,
                                                                   dtype=torch.float64)  # fmt: skip

    def half(u_s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lik = torch.distributions.Normal(u_s1, 0.1).log_prob(y).sum(-1)
        return prior.log_prob(u_s1[:, 0]), 0.5 * lik  # the likelihood at half strength

    run = run_tempered_smc(half, prior.sample((2000, 1)), SMCConfig(particles=2000), gen)
    exact_sd = 1 / math.sqrt(30 / 0.01 + 1 / 4)
    assert abs(float(run.particles_NU.std()) / exact_sd - 1) > SMC_SD_RTOL


def _task(prior: ParametricCurvePrior, seed: int, n_ctx: int = 4, n_qry: int = 30):
    return prior.sample(1, n_ctx, n_qry, generator=torch.Generator().manual_seed(seed))


def test_curve_smc_predictive_matches_importance_sampling_on_a_noisy_prior() -> None:
    prior = ParametricCurvePrior(NOISY)
    gaps = []
    for i in range(2):
        task = _task(prior, 20 + i)
        posterior = curve_posterior_smc(prior, task, smc=FAST, seed=i)
        assert posterior.trusted, posterior.reason
        smc_lp = posterior.predictive(task.x_qry[0]).log_prob(task.y_qry[0].double())
        gaps.append(float((smc_lp - importance_log_prob(prior, task)).mean()))
    assert abs(np.mean(gaps)) < SMC_VS_IS_NLL, gaps


def test_curve_smc_is_reproducible_and_stays_in_the_support() -> None:
    prior = ParametricCurvePrior(NOISY)
    task = _task(prior, 5)
    tiny = SMCConfig(particles=100, min_moves=2, max_moves=4)
    one = curve_posterior_smc(prior, task, smc=tiny, seed=3)
    two = curve_posterior_smc(prior, task, smc=tiny, seed=3)
    torch.testing.assert_close(one.params_SP, two.params_SP, atol=0, rtol=0)
    assert one.params_SP.shape == (200, len(prior.param_names()))
    assert torch.isfinite(prior.log_joint(one.params_SP, task.to(torch.float64))).all()


def test_the_gate_divergence_is_near_zero_for_exact_draws_and_large_otherwise() -> None:
    prior = ParametricCurvePrior(ParametricCurvePriorConfig(noise_log_mean=-5.0,
                                                            noise_log_std=1.2))  # fmt: skip
    gen = torch.Generator().manual_seed(4)
    x_md = (torch.arange(3, 51, dtype=torch.float64) / 50)[:, None]
    a, b = prior.sample_params(2000, gen), prior.sample_params(2000, gen)
    near = run_agreement([a, b], prior.observation_distribution, x_md, 64, gen)
    assert abs(near) < EXACT_AGREEMENT
    pow3 = b.clone()
    pow3[:, :3] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # pow3 alone
    far = run_agreement([a, pow3], prior.observation_distribution, x_md, 64, gen)
    assert far > 10 * EXACT_AGREEMENT


def _run(betas: list[float], ess: float) -> SMCRun:
    return SMCRun(particles_NU=torch.zeros(4, 2), betas=betas, log_evidence=0.0,
                  final_ess=ess, acceptance=[0.3], moves=1, seconds=0.0)  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "agreement", "reason"),
    [
        ([_run([0, 1.0], 0.9), _run([0, 1.0], 0.9)], 0.01, ""),
        ([_run([0, 0.5], 0.9), _run([0, 1.0], 0.9)], 0.01, "did not reach"),
        ([_run([0, 1.0], 0.05), _run([0, 1.0], 0.9)], 0.01, "final ESS"),
        ([_run([0, 1.0], 0.9), _run([0, 1.0], 0.9)], 0.5, "disagree"),
        ([_run([0, 1.0], 0.9)], None, "one run"),
    ],
)
def test_the_gate_names_what_failed(runs: list, agreement: float | None, reason: str) -> None:
    posterior = CurveSMC(runs=runs, params_SP=torch.zeros(4, 13), observation=None,
                         agreement=agreement, config=SMCConfig())  # fmt: skip
    assert posterior.trusted == (reason == "")
    assert reason in posterior.reason
