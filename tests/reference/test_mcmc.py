"""NUTS reference vs closed-form and importance-sampling posteriors, plus its gates (float64)."""

import json
import math
import random

import numpy as np
import pytest
import torch
from pyro.ops.stats import effective_sample_size
from torch.distributions import Categorical, Normal

from pfnkit.reference import NUTSConfig, NUTSResult, mc_predictive_log_prob, run_nuts
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

DTYPE = torch.float64
IS_DRAWS = 200_000  # prior draws for the brute-force importance-sampling oracle
# Agreement tests use short runs (2 x 300 draws) to stay fast. R-hat's own sampling noise is
# then about 0.01, so the production gate of 1.01 would trip by chance; gross failures to mix
# still show up far above this looser gate.
SHORT_RUN = NUTSConfig(num_chains=2, warmup=100, num_samples=300, r_hat_max=1.05)

TINY = NUTSConfig(num_chains=2, warmup=20, num_samples=30, max_tree_depth=5)


def _standard_normal_2d(theta: torch.Tensor) -> torch.Tensor:
    return -0.5 * theta.pow(2).sum()


def _starts(num_chains: int, dim: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(num_chains, dim, generator=gen, dtype=DTYPE)


def _mcse_of_mean(draws_CS: torch.Tensor) -> float:
    """Monte Carlo standard error of the mean of one scalar from (C, S) chains."""
    ess = float(effective_sample_size(draws_CS, chain_dim=0, sample_dim=1))
    return float(draws_CS.std()) / math.sqrt(ess)


def _assert_within_mcse(draws_CS: torch.Tensor, reference: float, extra_se: float = 0.0) -> None:
    """Mean of draws within STANDARD_ERRORS combined standard errors of a reference."""
    se = math.hypot(_mcse_of_mean(draws_CS), extra_se)
    error = abs(float(draws_CS.mean()) - reference)
    assert error < STANDARD_ERRORS * se, f"mean {float(draws_CS.mean())} vs {reference}, se {se}"


# --- statistical agreement ---------------------------------------------------------------


def test_recovers_conjugate_gaussian_posterior() -> None:
    gen = torch.Generator().manual_seed(0)
    prior_mean = torch.tensor([0.5, -1.0], dtype=DTYPE)
    prior_prec = torch.linalg.inv(torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=DTYPE))
    noise_prec = torch.linalg.inv(torch.tensor([[1.0, -0.3], [-0.3, 0.5]], dtype=DTYPE))
    y_N2 = torch.randn(8, 2, generator=gen, dtype=DTYPE) + torch.tensor([1.0, 0.0], dtype=DTYPE)

    def log_density(theta: torch.Tensor) -> torch.Tensor:
        prior_dev, noise_dev_N2 = theta - prior_mean, y_N2 - theta
        prior_term = prior_dev @ prior_prec @ prior_dev
        likelihood_term = ((noise_dev_N2 @ noise_prec) * noise_dev_N2).sum()
        return -0.5 * (prior_term + likelihood_term)

    # Closed form: precisions add, the mean is the precision-weighted combination.
    post_cov = torch.linalg.inv(prior_prec + len(y_N2) * noise_prec)
    post_mean = post_cov @ (prior_prec @ prior_mean + noise_prec @ y_N2.sum(0))

    result = run_nuts(log_density, _starts(2, 2, seed=1, scale=2.0), SHORT_RUN, seed=3)

    assert result.trusted, result.reason
    samples_CSP = result.samples
    for p in range(2):
        _assert_within_mcse(samples_CSP[..., p], float(post_mean[p]))
        # Variance: the mean of squared deviations from the known posterior mean.
        squared_CS = (samples_CSP[..., p] - post_mean[p]) ** 2
        _assert_within_mcse(squared_CS, float(post_cov[p, p]))


def _logistic_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x_N = torch.linspace(-2.0, 2.0, 10, dtype=DTYPE)
    true_logits = 0.3 + 1.5 * x_N
    y_N = torch.bernoulli(torch.sigmoid(true_logits), generator=gen)
    return x_N, y_N


def _logistic_log_likelihood(theta_KP: torch.Tensor, x_N: torch.Tensor, y_N: torch.Tensor):
    """log p(y | θ) for θ = (intercept, slope), batched over K parameter vectors."""
    logits_KN = theta_KP[..., :1] + theta_KP[..., 1:] * x_N
    return (y_N * logits_KN - torch.nn.functional.softplus(logits_KN)).sum(-1)


def test_matches_importance_sampling_on_two_parameter_logistic_regression() -> None:
    x_N, y_N = _logistic_data()
    prior = Normal(torch.zeros(2, dtype=DTYPE), 2.0 * torch.ones(2, dtype=DTYPE))

    def log_density(theta: torch.Tensor) -> torch.Tensor:
        return prior.log_prob(theta).sum() + _logistic_log_likelihood(theta, x_N, y_N)

    # Oracle: self-normalised importance sampling with the prior as proposal.
    theta_KP = _prior_draws(prior, seed=11)
    log_w_K = _logistic_log_likelihood(theta_KP, x_N, y_N)
    w_K = torch.softmax(log_w_K, dim=0)
    is_mean = (w_K[:, None] * theta_KP).sum(0)
    is_se = ((w_K[:, None] ** 2) * (theta_KP - is_mean) ** 2).sum(0).sqrt()

    result = run_nuts(log_density, _starts(2, 2, seed=2), SHORT_RUN, seed=4)

    assert result.trusted, result.reason
    for p in range(2):
        _assert_within_mcse(result.samples[..., p], float(is_mean[p]), extra_se=float(is_se[p]))


def _prior_draws(prior: Normal, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise_KP = torch.randn(IS_DRAWS, 2, generator=gen, dtype=DTYPE)
    return prior.loc + prior.scale * noise_KP


# --- convergence gates -------------------------------------------------------------------


def _two_far_modes(theta: torch.Tensor) -> torch.Tensor:
    """Equal mixture of N(-10, 0.5²) and N(10, 0.5²) in 1-D: chains cannot cross."""
    modes = torch.tensor([-10.0, 10.0], dtype=theta.dtype)
    return Normal(modes, 0.5).log_prob(theta).logsumexp(-1)


def test_r_hat_gate_trips_on_chains_stuck_in_different_modes() -> None:
    initial = torch.tensor([[-10.0], [10.0]], dtype=DTYPE)
    result = run_nuts(_two_far_modes, initial, TINY, seed=0)
    assert not result.trusted
    assert result.max_r_hat > TINY.r_hat_max
    assert "R-hat" in result.reason


def test_gate_on_symmetric_quantities_accepts_chains_in_equivalent_modes() -> None:
    # The two modes are mirror images, like a tanh unit with all its signs flipped: the
    # parameter never mixes, but theta**2 (what a prediction would see) has converged.
    initial = torch.tensor([[-10.0], [10.0]], dtype=DTYPE)
    square = lambda theta_NP: theta_NP.pow(2)  # noqa: E731
    by_parameter = run_nuts(_two_far_modes, initial, SHORT_RUN, seed=0)
    by_square = run_nuts(_two_far_modes, initial, SHORT_RUN, seed=0, gate_fn=square,
                         gate_description="theta squared")  # fmt: skip
    assert not by_parameter.trusted and by_parameter.gated_on == "parameters"
    assert by_square.trusted, by_square.reason
    assert by_square.gated_on == "theta squared" and by_square.r_hat.shape == (1,)
    assert torch.equal(by_square.samples, by_parameter.samples)  # the gate changes no draw
    with pytest.raises(ValueError, match="gate_fn"):
        run_nuts(_two_far_modes, initial, TINY, seed=0, gate_fn=lambda theta_NP: theta_NP[0])


def test_ess_gate_and_time_cap_trip() -> None:
    config = NUTSConfig(num_chains=2, warmup=20, num_samples=30, min_ess=1e6, time_cap_seconds=1e-9)
    result = run_nuts(_standard_normal_2d, _starts(2, 2, seed=0), config, seed=0)
    assert not result.trusted
    assert result.time_cap_hit and result.num_chains_completed == 1
    assert result.samples.shape == (1, 30, 2)
    assert "ESS" in result.reason and "time cap" in result.reason


def test_result_reports_diagnostics_and_budget_as_json() -> None:
    result = run_nuts(_standard_normal_2d, _starts(2, 2, seed=0), TINY, seed=0)
    assert isinstance(result, NUTSResult)
    assert result.samples.shape == (2, 30, 2) and result.samples.dtype == DTYPE
    assert result.flat_samples().shape == (60, 2)
    torch.testing.assert_close(result.flat_samples()[30:], result.samples[1])
    assert result.r_hat.shape == (2,) and result.ess.shape == (2,)
    assert len(result.acceptance_rates) == 2 and result.divergences >= 0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["config"] == TINY.to_dict() and data["seed"] == 0
    assert "samples" not in data
    assert data["trusted"] == result.trusted and data["reason"] == result.reason


# --- determinism and randomness hygiene --------------------------------------------------


def test_same_seed_same_samples_and_global_rng_untouched() -> None:
    initial = _starts(2, 2, seed=0)
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (the legacy global state is what pyro touches)
    random.seed(123)
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()  # noqa: NPY002
    python_state = random.getstate()

    first = run_nuts(_standard_normal_2d, initial, TINY, seed=7)

    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    assert random.getstate() == python_state
    torch.manual_seed(999)  # a different global state must not change the draws
    again = run_nuts(_standard_normal_2d, initial, TINY, seed=7)
    other = run_nuts(_standard_normal_2d, initial, TINY, seed=8)
    assert torch.equal(first.samples, again.samples)
    assert not torch.equal(first.samples, other.samples)


def test_jit_compile_gives_the_same_draws() -> None:
    initial = _starts(2, 2, seed=0)
    eager = run_nuts(_standard_normal_2d, initial, TINY, seed=1)
    traced = run_nuts(
        _standard_normal_2d,
        initial,
        NUTSConfig.from_dict(TINY.to_dict() | {"jit_compile": True}),
        seed=1,
    )
    torch.testing.assert_close(traced.samples, eager.samples, rtol=0.0, atol=FLOAT64_ATOL)


# --- validation --------------------------------------------------------------------------


def test_config_round_trips_and_rejects_bad_values() -> None:
    config = NUTSConfig(num_chains=3, warmup=10, num_samples=20, time_cap_seconds=5.0)
    assert NUTSConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="num_samples"):
        NUTSConfig(num_samples=2)
    with pytest.raises(ValueError, match="target_accept_prob"):
        NUTSConfig(target_accept_prob=1.0)
    with pytest.raises(ValueError, match="r_hat_max"):
        NUTSConfig(r_hat_max=1.0)


def test_run_nuts_rejects_bad_starts() -> None:
    with pytest.raises(ValueError, match="one start per chain"):
        run_nuts(_standard_normal_2d, torch.zeros(3, 2, dtype=DTYPE), TINY, seed=0)
    with pytest.raises(ValueError, match="finite"):
        run_nuts(lambda t: torch.log(t).sum(), -torch.ones(2, 2, dtype=DTYPE), TINY, seed=0)
    with pytest.raises(ValueError, match="scalar"):
        run_nuts(lambda t: -t.pow(2), torch.zeros(2, 2, dtype=DTYPE), TINY, seed=0)


# --- Monte Carlo posterior predictive ----------------------------------------------------


def _regression_predictive(theta_KP: torch.Tensor, x_M: torch.Tensor) -> Normal:
    """θ = (intercept, slope, log noise std) → Normal with batch_shape (K, M)."""
    loc_KM = theta_KP[:, :1] + theta_KP[:, 1:2] * x_M
    return Normal(loc_KM, theta_KP[:, 2:].exp().expand_as(loc_KM))


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 100])
def test_mc_predictive_log_prob_equals_a_loop(chunk_size: int | None) -> None:
    gen = torch.Generator().manual_seed(0)
    theta_KP = torch.randn(7, 3, generator=gen, dtype=DTYPE)
    x_M = torch.randn(5, generator=gen, dtype=DTYPE)
    y_M = torch.randn(5, generator=gen, dtype=DTYPE)

    got_M = mc_predictive_log_prob(
        theta_KP, lambda t: _regression_predictive(t, x_M), y_M, chunk_size=chunk_size
    )

    densities = []
    for theta_P in theta_KP:
        loc_M = theta_P[0] + theta_P[1] * x_M
        densities.append(Normal(loc_M, theta_P[2].exp()).log_prob(y_M).exp())
    expected_M = torch.stack(densities).mean(0).log()
    torch.testing.assert_close(got_M, expected_M, rtol=0.0, atol=FLOAT64_ATOL)


def test_mc_predictive_log_prob_for_classification() -> None:
    gen = torch.Generator().manual_seed(1)
    logits_KMC = torch.randn(4, 6, 3, generator=gen, dtype=DTYPE)
    labels_M = torch.randint(0, 3, (6,), generator=gen)
    theta_KP = logits_KMC.reshape(4, -1)

    got_M = mc_predictive_log_prob(
        theta_KP, lambda t: Categorical(logits=t.reshape(-1, 6, 3)), labels_M
    )

    probs_KMC = torch.softmax(logits_KMC, dim=-1)
    expected_M = probs_KMC.mean(0)[torch.arange(6), labels_M].log()
    torch.testing.assert_close(got_M, expected_M, rtol=0.0, atol=FLOAT64_ATOL)


def test_mc_predictive_log_prob_rejects_a_batch_without_the_draws() -> None:
    with pytest.raises(ValueError, match="batch_shape must start"):
        mc_predictive_log_prob(
            torch.zeros(3, 1, dtype=DTYPE), lambda t: Normal(0.0, 1.0), torch.zeros(())
        )
