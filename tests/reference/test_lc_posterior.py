"""`pfnkit.reference.lc_posterior`: the bijection, the predictive and NUTS on a curve posterior.

Oracles: the bijection's log-Jacobian against autograd's Jacobian determinant; the
predictive mixture against a loop over draws with scipy; NUTS's predictive against
self-normalised importance sampling from the prior (slow; independent of NUTS and of the
bijection).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from pfnkit.reference.lc_posterior import (
    DEFAULT_LC_NUTS,
    CurvePosterior,
    CurvePosteriorPrior,
    NoiseRelativeBijection,
    SupportBijection,
    curve_posterior,
    require_curve_prior,
)
from pfnkit.reference.mcmc import NUTSConfig, NUTSResult
from priors.gp import GPPrior
from priors.learning_curves_families import FAMILIES
from priors.learning_curves_parametric import ParametricCurvePrior, ParametricCurvePriorConfig

FLOAT64_ATOL = 1e-9  # float64 identity along two routes
IS_DRAWS = 40_000  # prior draws of the importance-sampling oracle
# NUTS (DEFAULT_LC_NUTS: 2 x 400 draws) and importance sampling are both Monte Carlo
# estimates of the same predictive; on 3 tasks x 30 query epochs their mean log densities
# differ by +0.008, +0.028 and -0.045 nats (mean -0.003; measured, ~2 min of NUTS a task).
NUTS_VS_IS_NLL = 0.05
# A noisy prior (sigma around e^-3) so that prior draws are an adequate proposal.
NOISY = ParametricCurvePriorConfig(max_epoch=30, noise_log_mean=-3.0, noise_log_std=0.3)


def _prior(config: ParametricCurvePriorConfig | None = None) -> ParametricCurvePrior:
    return ParametricCurvePrior(config or ParametricCurvePriorConfig())


@pytest.mark.parametrize("components", [("pow3", "ilog2", "janoschek"), tuple(FAMILIES)])
def test_bijection_round_trips_and_its_log_jacobian_is_autograds(components: tuple) -> None:
    prior = _prior(ParametricCurvePriorConfig(components=components))
    bijection = SupportBijection(prior.param_supports())
    k = len(components)
    assert (bijection.in_size, bijection.out_size) == (len(prior.param_names()) - 1,
                                                       len(prior.param_names()))  # fmt: skip
    params = prior.sample_params(3, torch.Generator().manual_seed(0))
    u = bijection.inverse(params)
    theta, log_det = bijection(u)
    torch.testing.assert_close(theta, params, atol=FLOAT64_ATOL, rtol=0)
    assert torch.isfinite(prior.log_joint(theta, prior.sample(1, 4, 1,
                          generator=torch.Generator().manual_seed(1)))).all()  # fmt: skip
    keep = [i for i in range(bijection.out_size) if i != k - 1]  # the weights' density is
    # written in their first K - 1 coordinates

    def free_coordinates(v: torch.Tensor) -> torch.Tensor:
        return bijection(v[None])[0][0, keep]

    for s in range(3):
        jac = torch.autograd.functional.jacobian(free_coordinates, u[s])
        expected = torch.linalg.slogdet(jac).logabsdet
        assert float(log_det[s]) == pytest.approx(float(expected), abs=FLOAT64_ATOL)


def test_noise_relative_bijection_round_trips_and_its_log_jacobian_is_autograds() -> None:
    """σ = s(θ) e^v with s from the context's residuals: a triangular Jacobian, checked whole."""
    prior = _prior()
    task = prior.sample(1, 6, 1, generator=torch.Generator().manual_seed(2)).to(torch.float64)
    base = SupportBijection(prior.param_supports())
    bijection = NoiseRelativeBijection(base, prior.observation_distribution, task.x_ctx[0],
                                       task.y_ctx[0], floor=0.01)  # fmt: skip
    params = prior.sample_params(3, torch.Generator().manual_seed(0))
    u = bijection.inverse(params)
    theta, log_det = bijection(u)
    torch.testing.assert_close(theta, params, atol=FLOAT64_ATOL, rtol=0)
    residual = task.y_ctx[0] - prior.mean_curve(params, torch.arange(1.0, 7.0, dtype=torch.float64))
    scale = (residual.square().mean(-1) + 0.01**2).sqrt()
    torch.testing.assert_close(u[:, -1], (params[:, -1] / scale).log(), atol=FLOAT64_ATOL, rtol=0)
    keep = [i for i in range(bijection.out_size) if i != 2]  # the third weight is implied

    def free_coordinates(v: torch.Tensor) -> torch.Tensor:
        return bijection(v[None])[0][0, keep]

    for s in range(3):
        jac = torch.autograd.functional.jacobian(free_coordinates, u[s])
        expected = torch.linalg.slogdet(jac).logabsdet
        assert float(log_det[s]) == pytest.approx(float(expected), abs=FLOAT64_ATOL)


def test_bijection_maps_any_real_vector_into_the_supports() -> None:
    prior = _prior(ParametricCurvePriorConfig(components=tuple(FAMILIES)))
    bijection = SupportBijection(prior.param_supports())
    u = 3 * torch.randn(50, bijection.in_size, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)  # fmt: skip
    theta = bijection(u)[0]
    start = 0
    for size, support in prior.param_supports():
        block = theta[:, start : start + size]
        assert support.check(block if size > 1 else block[:, 0]).all()
        start += size


def _posterior_of(params_SP: torch.Tensor, prior: ParametricCurvePrior) -> CurvePosterior:
    """A CurvePosterior holding given draws (its NUTS run is a stand-in)."""
    run = NUTSResult(
        samples=params_SP[None], r_hat=torch.ones(1), ess=torch.full((1,), 1e3), divergences=0,
        acceptance_rates=(0.9,), wall_seconds=0.0, time_cap_hit=False, seed=0,
        config=NUTSConfig(num_chains=1),
    )  # fmt: skip
    return CurvePosterior(run=run, params_SP=params_SP,
                          observation=prior.observation_distribution)  # fmt: skip


def test_predictive_is_the_mixture_over_draws_in_a_scipy_loop() -> None:
    prior = _prior()
    gen = torch.Generator().manual_seed(0)
    params = prior.sample_params(7, gen)
    x_MD = torch.tensor([[0.5], [0.8], [1.0]])
    predictive = _posterior_of(params, prior).predictive(x_MD)
    y = torch.tensor([0.3, 0.2, 0.25], dtype=torch.float64)
    epochs = np.round(x_MD[:, 0].double().numpy() * prior.config.max_epoch)
    expected = []
    for m, t in enumerate(epochs):
        terms = []
        for theta in params.numpy():
            w, sigma = theta[:3], theta[-1]
            c, a, alpha = theta[3:6]
            c2, a2 = theta[6:8]
            j_alpha, j_beta, j_kappa, j_delta = theta[8:12]
            janoschek = j_alpha - (j_alpha - j_beta) * math.exp(-j_kappa * t**j_delta)
            p = w[0] * (c - a * t**-alpha) + w[1] * (c2 - a2 / math.log(t + 1)) + w[2] * janoschek
            terms.append(stats.norm(1 - p, sigma).logpdf(float(y[m])))
        expected.append(logsumexp(terms) - math.log(len(terms)))
    np.testing.assert_allclose(predictive.log_prob(y).numpy(), expected, atol=FLOAT64_ATOL)
    cdf = predictive.cdf(predictive.icdf(torch.full((3,), 0.9, dtype=torch.float64)))
    np.testing.assert_allclose(cdf.numpy(), 0.9, atol=1e-9)


def test_a_short_nuts_run_stays_in_the_support() -> None:
    prior = _prior()
    assert isinstance(prior, CurvePosteriorPrior)
    task = prior.sample(1, 6, 5, generator=torch.Generator().manual_seed(0))
    tiny = NUTSConfig(num_chains=1, warmup=10, num_samples=10, max_tree_depth=3)
    posterior = curve_posterior(prior, task, nuts=tiny, seed=3)
    assert posterior.params_SP.shape == (10, len(prior.param_names()))
    assert torch.isfinite(prior.log_joint(posterior.params_SP, task.to(torch.float64))).all()
    assert posterior.run.gated_on.startswith("curve")
    again = curve_posterior(prior, task, nuts=tiny, seed=3)  # same seed, same draws
    torch.testing.assert_close(again.params_SP, posterior.params_SP, atol=0, rtol=0)


def test_a_prior_without_a_parametric_posterior_is_refused() -> None:
    with pytest.raises(ValueError, match="lc-parametric"):
        require_curve_prior(GPPrior(), "this test")


def importance_log_prob(
    prior: ParametricCurvePrior, task, draws: int = IS_DRAWS, seed: int = 7
) -> torch.Tensor:
    """log p(y_qry | context) per query, by self-normalised importance sampling from the prior."""
    params = prior.sample_params(draws, torch.Generator().manual_seed(seed))
    t_ctx = torch.round(task.x_ctx[0, :, 0].double() * prior.config.max_epoch)
    log_w = prior.log_likelihood(params, t_ctx, task.y_ctx[0].double())
    log_w = log_w - log_w.logsumexp(0)
    obs = prior.observation_distribution(params, task.x_qry[0].double())
    return (log_w[:, None] + obs.log_prob(task.y_qry[0].double())).logsumexp(0)


@pytest.mark.slow
def test_nuts_predictive_matches_importance_sampling() -> None:
    prior = _prior(NOISY)
    gen = torch.Generator().manual_seed(11)
    gaps = []
    for i in range(3):
        task = prior.sample(1, 4, 30, generator=gen)
        posterior = curve_posterior(prior, task, nuts=DEFAULT_LC_NUTS, seed=i)
        assert posterior.trusted, posterior.run.reason
        nuts_lp = posterior.predictive(task.x_qry[0]).log_prob(task.y_qry[0].double())
        gaps.append(float((nuts_lp - importance_log_prob(prior, task)).mean()))
    assert abs(np.mean(gaps)) < NUTS_VS_IS_NLL, gaps
