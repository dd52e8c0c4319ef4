"""Conjugate GMM posterior vs grid integration, textbook formulas and the stacked-data evidence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

from pfnkit.reference import conjugate_gmm_posterior, gmm_from_covariances, gmm_from_scale_tril
from priors.gmm import GMMPrior, GMMPriorConfig
from tests.conftest import FLOAT64_ATOL

CLOSED_FORM_RTOL = 1e-9  # closed form vs independently computed closed form, float64
GRID_TOL = 1e-6  # closed form vs trapezoid integration on a fine grid
KS_MIN_PVALUE = 1e-3  # calibration: posterior PIT of prior-drawn θ is uniform


def _f64(values: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _prior_1d() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.array([0.5, 0.3, 0.2]), np.array([-3.0, 0.5, 4.0]), np.array([1.0, 0.5, 2.0])


def test_one_dimensional_posterior_matches_grid_integration() -> None:
    weights, means, sds = _prior_1d()
    obs_var = 0.8
    x = np.array([1.2, 0.3, 2.0, 1.1])
    posterior = conjugate_gmm_posterior(
        _f64(np.log(weights))[None],
        _f64(means)[None, :, None],
        _f64(sds)[None, :, None, None],
        _f64(x)[None, :, None],
        _f64([[obs_var]]),
    )
    assert posterior.batch_shape == (1,) and posterior.event_shape == (1,)
    grid = np.linspace(-20.0, 20.0, 40001)
    log_prior = logsumexp(np.log(weights) + stats.norm.logpdf(grid[:, None], means, sds), axis=1)
    log_lik = stats.norm.logpdf(x[None, :], grid[:, None], math.sqrt(obs_var)).sum(1)
    unnorm = np.exp(log_prior + log_lik - (log_prior + log_lik).max())
    density = unnorm / integrate.trapezoid(unnorm, grid)
    closed = posterior.log_prob(_f64(grid)[:, None, None]).exp().squeeze(-1).numpy()
    assert np.abs(closed - density).max() < GRID_TOL * density.max()
    grid_mean = integrate.trapezoid(grid * density, grid)
    grid_var = integrate.trapezoid((grid - grid_mean) ** 2 * density, grid)
    assert abs(float(posterior.mean) - grid_mean) < GRID_TOL
    assert abs(float(posterior.variance) - grid_var) < GRID_TOL


def test_no_observations_returns_the_prior() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    means = torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    raw = torch.randn(3, 4, 2, 2, generator=gen, dtype=torch.float64)
    scale_tril = raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    posterior = conjugate_gmm_posterior(
        logits, means, scale_tril, torch.zeros(3, 0, 2, dtype=torch.float64), torch.eye(2)
    )
    prior = gmm_from_scale_tril(logits, means, scale_tril)
    points = torch.randn(5, 3, 2, generator=gen, dtype=torch.float64) * 3
    torch.testing.assert_close(
        posterior.log_prob(points), prior.log_prob(points), rtol=CLOSED_FORM_RTOL, atol=FLOAT64_ATOL
    )
    components = posterior.component_distribution
    torch.testing.assert_close(components.loc, means, rtol=0, atol=0)
    torch.testing.assert_close(components.scale_tril, scale_tril, rtol=0, atol=0)


def test_single_component_matches_textbook_conjugate_update() -> None:
    rng = np.random.default_rng(0)
    mu0 = np.array([0.5, -1.0, 2.0])
    a = rng.normal(size=(3, 3))
    sigma0 = a @ a.T + 0.5 * np.eye(3)
    b = rng.normal(size=(3, 3))
    obs_cov = b @ b.T + 0.3 * np.eye(3)
    x = rng.normal(size=(6, 3)) + 1.0
    # Textbook: Σ_n = (Σ_0⁻¹ + N Σ_obs⁻¹)⁻¹, μ_n = Σ_n (Σ_0⁻¹ μ_0 + Σ_obs⁻¹ Σ_i x_i).
    sigma_n = np.linalg.inv(np.linalg.inv(sigma0) + len(x) * np.linalg.inv(obs_cov))
    mu_n = sigma_n @ (np.linalg.solve(sigma0, mu0) + np.linalg.solve(obs_cov, x.sum(0)))
    posterior = conjugate_gmm_posterior(
        torch.zeros(1, 1, dtype=torch.float64),
        _f64(mu0)[None, None],
        torch.linalg.cholesky(_f64(sigma0))[None, None],
        _f64(x)[None],
        _f64(obs_cov),
    )
    component = posterior.component_distribution
    torch.testing.assert_close(
        component.loc[0, 0], _f64(mu_n), rtol=CLOSED_FORM_RTOL, atol=FLOAT64_ATOL
    )
    torch.testing.assert_close(
        component.covariance_matrix[0, 0], _f64(sigma_n), rtol=CLOSED_FORM_RTOL, atol=FLOAT64_ATOL
    )
    torch.testing.assert_close(
        posterior.mixture_distribution.probs, torch.ones(1, 1, dtype=torch.float64)
    )


def _stacked_log_evidence(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray, obs_cov: np.ndarray):
    """log p(x_1..N | component) from the joint Gaussian of all N stacked observations."""
    n = x.shape[0]
    cov = np.kron(np.ones((n, n)), sigma) + np.kron(np.eye(n), obs_cov)
    return stats.multivariate_normal.logpdf(x.reshape(-1), np.tile(mu, n), cov)


def test_weights_match_the_stacked_data_evidence() -> None:
    weights = np.array([0.6, 0.4])
    means = np.array([[-1.0, 0.0], [1.5, 0.5]])
    sigmas = np.array([[[1.0, 0.3], [0.3, 0.8]], [[0.5, -0.1], [-0.1, 1.2]]])
    obs_cov = np.array([[0.7, 0.2], [0.2, 0.9]])
    x = np.array([[0.4, 0.1], [1.0, -0.3], [0.2, 0.6]])
    log_post = np.log(weights) + np.array(
        [_stacked_log_evidence(x, means[k], sigmas[k], obs_cov) for k in range(2)]
    )
    expected = np.exp(log_post - logsumexp(log_post))
    assert 0.05 < expected[0] < 0.95  # a case where both components matter
    posterior = conjugate_gmm_posterior(
        _f64(np.log(weights))[None],
        _f64(means)[None],
        torch.linalg.cholesky(_f64(sigmas))[None],
        _f64(x)[None],
        _f64(obs_cov),
    )
    torch.testing.assert_close(
        posterior.mixture_distribution.probs[0], _f64(expected), rtol=CLOSED_FORM_RTOL, atol=0
    )


def test_well_separated_components_pick_the_one_near_the_data() -> None:
    means = _f64([[[-8.0, 0.0], [8.0, 0.0]]])
    scale_tril = 0.5 * torch.eye(2, dtype=torch.float64).expand(1, 2, 2, 2)
    x = _f64([[[7.8, 0.1], [8.3, -0.2], [8.1, 0.0]]])
    posterior = conjugate_gmm_posterior(
        _f64([[0.0, 0.0]]), means, scale_tril, x, torch.eye(2, dtype=torch.float64)
    )
    probs = posterior.mixture_distribution.probs[0]
    assert float(probs[1]) > 1 - 1e-12
    # The posterior mean is then the textbook mean of the right-hand component alone.
    prec = 4.0 + 3.0
    expected_mean = (4.0 * means[0, 1] + x[0].sum(0)) / prec
    torch.testing.assert_close(
        posterior.mean[0], expected_mean, rtol=CLOSED_FORM_RTOL, atol=FLOAT64_ATOL
    )


def test_batch_equals_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    means = 2 * torch.randn(4, 3, 2, generator=gen, dtype=torch.float64)
    raw = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    scale_tril = raw.tril(-1) + torch.diag_embed(raw.diagonal(dim1=-2, dim2=-1).exp())
    x = torch.randn(4, 5, 2, generator=gen, dtype=torch.float64)
    obs_cov = _f64([[1.0, 0.4], [0.4, 2.0]])
    batched = conjugate_gmm_posterior(logits, means, scale_tril, x, obs_cov)
    points = torch.randn(6, 4, 2, generator=gen, dtype=torch.float64)
    for b in range(4):
        single = conjugate_gmm_posterior(
            logits[b : b + 1], means[b : b + 1], scale_tril[b : b + 1], x[b : b + 1], obs_cov
        )
        torch.testing.assert_close(
            batched.log_prob(points)[:, b],
            single.log_prob(points[:, b : b + 1])[:, 0],
            rtol=CLOSED_FORM_RTOL,
            atol=FLOAT64_ATOL,
        )


def test_float32_inputs_give_float64_posterior() -> None:
    posterior = conjugate_gmm_posterior(
        torch.zeros(1, 2),
        torch.zeros(1, 2, 1),
        torch.ones(1, 2, 1, 1),
        torch.ones(1, 3, 1),
        torch.eye(1),
    )
    assert posterior.mean.dtype == torch.float64


def test_gmm_from_covariances_matches_scale_tril_form() -> None:
    gen = torch.Generator().manual_seed(2)
    weights = torch.rand(2, 3, generator=gen, dtype=torch.float64)
    means = torch.randn(2, 3, 2, generator=gen, dtype=torch.float64)
    raw = torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64)
    cov = raw @ raw.transpose(-1, -2) + 0.1 * torch.eye(2, dtype=torch.float64)
    from_cov = gmm_from_covariances(weights, means, cov)
    from_tril = gmm_from_scale_tril(weights.log(), means, torch.linalg.cholesky(cov))
    points = torch.randn(7, 2, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(
        from_cov.log_prob(points), from_tril.log_prob(points), rtol=CLOSED_FORM_RTOL, atol=0
    )
    torch.testing.assert_close(from_cov.mixture_distribution.probs.sum(-1), torch.ones(2).double())


def test_input_errors_are_explained() -> None:
    logits, means, tril = torch.zeros(1, 2), torch.zeros(1, 2, 2), torch.eye(2).expand(1, 2, 2, 2)
    with pytest.raises(ValueError, match="observations must have shape"):
        conjugate_gmm_posterior(logits, means, tril, torch.zeros(1, 3, 3), torch.eye(2))
    with pytest.raises(ValueError, match="obs_cov must have shape"):
        conjugate_gmm_posterior(logits, means, tril, torch.zeros(1, 3, 2), torch.eye(3))
    with pytest.raises(ValueError, match="positive definite"):
        conjugate_gmm_posterior(logits, means, tril, torch.zeros(1, 3, 2), -torch.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        conjugate_gmm_posterior(logits, means, tril, torch.full((1, 3, 2), math.nan), torch.eye(2))
    with pytest.raises(ValueError, match="non-negative"):
        gmm_from_covariances(-torch.ones(1, 2), means, tril)
    with pytest.raises(ValueError, match="not positive definite"):
        gmm_from_covariances(torch.ones(1, 2), means, -tril)


@pytest.mark.slow
@pytest.mark.parametrize("dim", [1, 2])
def test_posterior_is_calibrated_on_tasks_from_the_gmm_prior(dim: int) -> None:
    """PIT of the true θ (first coordinate) under the exact posterior is uniform.

    Joins the independent sampler in priors/gmm.py with this oracle: if either got the
    prior, the simulator or the update wrong, the PIT values would not be uniform.
    """
    obs_cov = [[0.5]] if dim == 1 else [[0.5, 0.2], [0.2, 1.0]]
    config = GMMPriorConfig(dim=dim, k_min=3, k_max=3, obs_cov=obs_cov)
    batch = GMMPrior(config).sample(
        4000, 3, 0, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    posterior = conjugate_gmm_posterior(
        batch.meta["prior_logits"],
        batch.meta["prior_means"],
        batch.meta["prior_scale_tril"],
        batch.x_ctx,
        torch.tensor(obs_cov, dtype=torch.float64),
    )
    components = posterior.component_distribution
    loc = components.loc[..., 0]
    scale = components.covariance_matrix[..., 0, 0].sqrt()
    cdf = stats.norm.cdf((batch.meta["theta"][:, :1] - loc).div(scale).numpy())
    pit = (posterior.mixture_distribution.probs.numpy() * cdf).sum(-1)
    assert stats.kstest(pit, "uniform").pvalue > KS_MIN_PVALUE
