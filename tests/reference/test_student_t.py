"""The exact Student-t-process oracle against scipy's multivariate t, Monte Carlo, and the GP limit.

Kernel matrices are built here with numpy; the independent computations are scipy.stats
densities (multivariate t, multivariate normal, inverse gamma) and, for the predictive,
Monte Carlo over the scale: draw σ² from its conjugate posterior and average the
Gaussian predictives (all in numpy).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfnkit.reference.student_t import (
    student_t_log_marginal_likelihood,
    student_t_predictive,
    student_t_scale_posterior,
)
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

KS_P_VALUE_MIN = 1e-3  # distributional checks: reject a sample when the KS p-value is below this
GP_LIMIT_RTOL = 1e-6  # α = β = 1e9: the t predictive is Gaussian up to O(1/α) and jitter
LENGTHSCALE = 0.3


def _rbf(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (x1[:, None] - x2[None, :]) ** 2 / LENGTHSCALE**2)


def _task(n: int, m: int, seed: int) -> tuple[np.ndarray, ...]:
    """A 1-D task: (x_ctx, y_ctx, x_qry), y_ctx a rough draw so the scale posterior moves."""
    rng = np.random.default_rng(seed)
    x_ctx, x_qry = rng.uniform(0, 1, n), rng.uniform(0, 1, m)
    y_ctx = 1.5 * rng.standard_normal(n)
    return x_ctx, y_ctx, x_qry


def _predictive(x_ctx, y_ctx, x_qry, **hyper) -> torch.distributions.StudentT:
    """The oracle for one task, from numpy kernel matrices (batch of one)."""
    k = torch.from_numpy(_rbf(x_ctx, x_ctx))[None]
    k_qc = torch.from_numpy(_rbf(x_qry, x_ctx))[None]
    k_q = torch.ones(1, len(x_qry), dtype=torch.float64)
    return student_t_predictive(k, k_qc, k_q, torch.from_numpy(y_ctx)[None], **hyper)


HYPERS = [
    {"concentration": 2.0, "rate": 2.0, "noise": 0.01},  # the tp-rbf prior
    {"concentration": 0.7, "rate": 0.3, "noise": 0.1},  # α < 1: no prior mean for σ²
    {"concentration": 6.0, "rate": 1.0, "noise": 0.05},
]


@pytest.mark.parametrize("hyper", HYPERS)
def test_log_marginal_likelihood_is_scipys_multivariate_t(hyper: dict) -> None:
    x, y, _ = _task(12, 0, seed=0)
    alpha, beta, noise = hyper["concentration"], hyper["rate"], hyper["noise"]
    cov = _rbf(x, x) + noise * np.eye(12)
    expected = stats.multivariate_t(np.zeros(12), (beta / alpha) * cov, df=2 * alpha).logpdf(y)
    lml = student_t_log_marginal_likelihood(
        torch.from_numpy(_rbf(x, x))[None], torch.from_numpy(y)[None], **hyper
    )
    assert abs(float(lml[0]) - expected) < FLOAT64_ATOL


@pytest.mark.parametrize("hyper", HYPERS)
def test_predictive_is_the_conditional_of_scipys_joint_t(hyper: dict) -> None:
    """log p(y* | y) = log p(y, y*) − log p(y), both joints from scipy's multivariate t."""
    x, y, x_q = _task(8, 3, seed=1)
    alpha, beta, noise = hyper["concentration"], hyper["rate"], hyper["noise"]
    dist = _predictive(x, y, x_q, **hyper)
    assert dist.batch_shape == (1, 3) and dist.loc.dtype == torch.float64
    for j in range(3):
        xs = np.append(x, x_q[j])
        cov = _rbf(xs, xs) + noise * np.eye(9)
        joint = stats.multivariate_t(np.zeros(9), (beta / alpha) * cov, df=2 * alpha)
        marginal = stats.multivariate_t(np.zeros(8), (beta / alpha) * cov[:8, :8], df=2 * alpha)
        for y_star in (-2.0, 0.3, 4.0):
            expected = joint.logpdf(np.append(y, y_star)) - marginal.logpdf(y)
            got = float(dist.log_prob(torch.full((1, 3), y_star, dtype=torch.float64))[0, j])
            assert abs(got - expected) < FLOAT64_ATOL


def test_scale_posterior_is_prior_times_likelihood() -> None:
    """log p(σ² | y) = log InvGamma(σ²; α, β) + log N(y; 0, σ² C) − log p(y), on a grid of σ²."""
    x, y, _ = _task(10, 0, seed=2)
    alpha, beta, noise = 2.0, 2.0, 0.01
    cov = _rbf(x, x) + noise * np.eye(10)
    posterior = student_t_scale_posterior(
        torch.from_numpy(_rbf(x, x))[None],
        torch.from_numpy(y)[None],
        concentration=alpha,
        rate=beta,
        noise=noise,
    )
    log_evidence = stats.multivariate_t(np.zeros(10), (beta / alpha) * cov, df=2 * alpha).logpdf(y)
    for scale in (0.1, 0.5, 1.0, 3.0, 20.0):
        expected = (
            stats.invgamma(a=alpha, scale=beta).logpdf(scale)
            + stats.multivariate_normal(np.zeros(10), scale * cov).logpdf(y)
            - log_evidence
        )
        got = float(posterior.log_prob(torch.tensor([scale], dtype=torch.float64))[0])
        assert abs(got - expected) < FLOAT64_ATOL


def test_predictive_matches_monte_carlo_over_the_scale() -> None:
    """Average N(y*; μ, σ² v) over σ² ~ InvGamma(α + n/2, β + yᵀC⁻¹y/2), all in numpy."""
    x, y, x_q = _task(6, 4, seed=3)
    alpha, beta, noise = 2.0, 2.0, 0.01
    cov = _rbf(x, x) + noise * np.eye(6)
    cross = _rbf(x_q, x)
    mean = cross @ np.linalg.solve(cov, y)
    var = 1.0 + noise - np.einsum("mn,nm->m", cross, np.linalg.solve(cov, cross.T))
    post = stats.invgamma(a=alpha + 3.0, scale=beta + 0.5 * y @ np.linalg.solve(cov, y))
    scales = post.rvs(size=200_000, random_state=np.random.default_rng(0))
    dist = _predictive(x, y, x_q, concentration=alpha, rate=beta, noise=noise)
    for y_star in (-1.0, 0.0, 0.5, 2.0):
        densities = stats.norm.pdf(y_star, mean[None], np.sqrt(scales[:, None] * var[None]))
        se = densities.std(0) / math.sqrt(len(scales))
        exact = dist.log_prob(torch.full((1, 4), y_star, dtype=torch.float64))[0].exp().numpy()
        assert np.abs((densities.mean(0) - exact) / se).max() < STANDARD_ERRORS
    second = scales[:, None] * var[None]  # Var(y*) = E[σ²] v: df = 2α + n > 2
    se = second.std(0) / math.sqrt(len(scales))
    assert np.abs((second.mean(0) - dist.variance[0].numpy()) / se).max() < STANDARD_ERRORS


def test_batch_equals_loop_with_per_task_hyperparameters() -> None:
    tasks = [_task(7, 5, seed=s) for s in range(3)]
    k = torch.from_numpy(np.stack([_rbf(t[0], t[0]) for t in tasks]))
    k_qc = torch.from_numpy(np.stack([_rbf(t[2], t[0]) for t in tasks]))
    k_q = torch.ones(3, 5, dtype=torch.float64)
    y = torch.from_numpy(np.stack([t[1] for t in tasks]))
    hyper = {n: torch.tensor([h[n] for h in HYPERS], dtype=torch.float64) for n in HYPERS[0]}
    batched = student_t_predictive(k, k_qc, k_q, y, **hyper)
    lml = student_t_log_marginal_likelihood(k, y, **hyper)
    for b, task in enumerate(tasks):
        single = _predictive(*task, **HYPERS[b])
        for name in ("df", "loc", "scale"):
            torch.testing.assert_close(
                getattr(batched, name)[b], getattr(single, name)[0], atol=FLOAT64_ATOL, rtol=0
            )
        one = student_t_log_marginal_likelihood(k[b : b + 1], y[b : b + 1], **HYPERS[b])
        assert abs(float(lml[b] - one[0])) < FLOAT64_ATOL


def test_empty_context_is_the_prior_and_latent_drops_the_noise() -> None:
    x, y, x_q = _task(0, 3, seed=4)
    prior = _predictive(x, y, x_q, concentration=3.0, rate=1.5, noise=0.2)
    torch.testing.assert_close(prior.df, torch.full((1, 3), 6.0, dtype=torch.float64))
    torch.testing.assert_close(prior.loc, torch.zeros(1, 3, dtype=torch.float64))
    torch.testing.assert_close(prior.scale**2, torch.full((1, 3), 0.5 * 1.2, dtype=torch.float64))
    x, y, x_q = _task(5, 3, seed=4)
    hyper = {"concentration": 3.0, "rate": 1.5, "noise": 0.2}
    observed = _predictive(x, y, x_q, **hyper)
    k = torch.from_numpy(_rbf(x, x))[None]
    latent = student_t_predictive(
        k,
        torch.from_numpy(_rbf(x_q, x))[None],
        torch.ones(1, 3, dtype=torch.float64),
        torch.from_numpy(y)[None],
        observed=False,
        **hyper,
    )
    posterior = student_t_scale_posterior(k, torch.from_numpy(y)[None], **hyper)
    factor = posterior.rate / posterior.concentration  # (2β + m) / (2α + n)
    torch.testing.assert_close(observed.loc, latent.loc, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(
        observed.scale**2 - latent.scale**2,
        0.2 * factor[:, None].expand(1, 3),
        atol=FLOAT64_ATOL,
        rtol=0,
    )


def test_large_concentration_recovers_the_exact_gp_predictive() -> None:
    """α = β → ∞ pins σ² at 1: the t predictive tends to gpytorch's Gaussian one."""
    from pfnkit.reference import GPHyperparameters, exact_gp_predictive_batch

    x, y, x_q = _task(9, 4, seed=5)
    dist = _predictive(x, y, x_q, concentration=1e9, rate=1e9, noise=0.05)
    gp = exact_gp_predictive_batch(
        torch.from_numpy(x)[None, :, None],
        torch.from_numpy(y)[None],
        torch.from_numpy(x_q)[None, :, None],
        GPHyperparameters(lengthscale=LENGTHSCALE, outputscale=1.0, noise=0.05),
    )
    torch.testing.assert_close(dist.loc, gp.mean, rtol=GP_LIMIT_RTOL, atol=GP_LIMIT_RTOL)
    torch.testing.assert_close(dist.scale**2, gp.variance, rtol=GP_LIMIT_RTOL, atol=0)


def test_the_predictive_is_calibrated_on_student_t_process_tasks() -> None:
    """Tasks drawn from the tp-rbf prior: the query's PIT under the oracle is U(0, 1)."""
    import priors

    prior = priors.make_prior("tp")
    batch = prior.sample(3000, 10, 1, generator=torch.Generator().manual_seed(0))
    x_ctx, x_qry = batch.x_ctx.double(), batch.x_qry.double()
    dist = student_t_predictive(
        prior.kernel_matrix(x_ctx, x_ctx),
        prior.kernel_matrix(x_qry, x_ctx),
        prior.kernel_matrix(x_qry, x_qry).diagonal(dim1=-2, dim2=-1),
        batch.y_ctx.double(),
        **prior.student_t_hyperparameters(),
    )
    pit = stats.t.cdf(
        batch.y_qry.double().numpy(), dist.df.numpy(), dist.loc.numpy(), dist.scale.numpy()
    ).ravel()
    result = stats.kstest(pit, stats.uniform.cdf)
    assert result.pvalue > KS_P_VALUE_MIN, result


def test_bad_inputs_raise_errors_that_say_what_to_do() -> None:
    k = torch.eye(3, dtype=torch.float64)[None]
    y = torch.zeros(1, 3, dtype=torch.float64)
    hyper = {"concentration": 2.0, "rate": 2.0, "noise": 0.01}
    with pytest.raises(ValueError, match="positive definite"):
        student_t_log_marginal_likelihood(-k, y, **hyper)
    with pytest.raises(ValueError, match="k_ctx must have shape"):
        student_t_log_marginal_likelihood(k[:, :2, :2], y, **hyper)
    with pytest.raises(ValueError, match="NaN"):
        student_t_log_marginal_likelihood(k, torch.full((1, 3), math.nan), **hyper)
    with pytest.raises(ValueError, match="concentration"):
        student_t_scale_posterior(k, y, concentration=-1.0, rate=2.0, noise=0.01)
    with pytest.raises(ValueError, match="k_qry_ctx"):
        student_t_predictive(k, torch.zeros(1, 2, 4), torch.ones(1, 2), y, **hyper)
