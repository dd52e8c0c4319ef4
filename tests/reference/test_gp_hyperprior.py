"""GP hyperprior densities against scipy.stats, their Jacobians, and card parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pfnkit.reference.gp_hyperprior import GPHyperprior, ScalarHyperprior
from tests.conftest import FLOAT64_ATOL

QUADRATURE_ATOL = 1e-6  # densities integrated on a fine grid
KS_MIN_PVALUE = 1e-3  # distribution checks: reject only clear mismatches

CASES = [
    (
        ScalarHyperprior(family="lognormal", a=-0.3, b=0.7),
        stats.lognorm(s=0.7, scale=math.exp(-0.3)),
    ),
    (ScalarHyperprior(family="uniform", a=0.5, b=2.0), stats.uniform(loc=0.5, scale=1.5)),
    (ScalarHyperprior(family="loguniform", a=1e-3, b=1.0), stats.loguniform(1e-3, 1.0)),
]  # fmt: skip
IDS = ["lognormal", "uniform", "loguniform"]


@pytest.mark.parametrize(("prior", "oracle"), CASES, ids=IDS)
def test_log_prob_matches_scipy(prior: ScalarHyperprior, oracle) -> None:
    values = np.array([1e-4, 2e-3, 0.05, 0.6, 0.999, 1.5, 1.99, 3.0, 40.0])
    expected = oracle.logpdf(values)
    got = prior.log_prob(torch.tensor(values)).numpy()
    assert np.array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize(("prior", "oracle"), CASES, ids=IDS)
def test_unconstrained_density_is_the_value_density_times_the_jacobian(
    prior: ScalarHyperprior, oracle
) -> None:
    phi = torch.linspace(-6, 6, 25, dtype=torch.float64, requires_grad=True)
    value = prior.to_value(phi)
    (dvalue,) = torch.autograd.grad(value.sum(), phi)
    phi = phi.detach()
    torch.testing.assert_close(
        prior.log_abs_det_jacobian(phi), dvalue.abs().log(), atol=FLOAT64_ATOL, rtol=0
    )
    composed = torch.tensor(oracle.logpdf(value.detach().numpy())) + dvalue.abs().log()
    torch.testing.assert_close(
        prior.log_prob_unconstrained(phi), composed, atol=FLOAT64_ATOL, rtol=0
    )
    torch.testing.assert_close(prior.to_unconstrained(value.detach()), phi, atol=1e-8, rtol=0)
    grid = torch.linspace(-60, 60, 200001, dtype=torch.float64)
    mass = torch.trapezoid(prior.log_prob_unconstrained(grid).exp(), grid)
    assert float(mass) == pytest.approx(1.0, abs=QUADRATURE_ATOL)
    assert torch.isfinite(prior.log_prob_unconstrained(torch.tensor([-800.0, 800.0]))).all()


@pytest.mark.parametrize(("prior", "oracle"), CASES, ids=IDS)
def test_samples_follow_the_density(prior: ScalarHyperprior, oracle) -> None:
    draws = prior.sample((5000,), torch.Generator().manual_seed(0)).numpy()
    assert stats.kstest(draws, oracle.cdf).pvalue > KS_MIN_PVALUE


def test_reads_a_general_card_with_sqrt_scalings() -> None:
    card = {
        "kernel": "matern52", "num_features": 10, "num_features_min": 1,
        "lengthscale": [{"family": "lognormal", "a": 0.0, "b": 1.0}] * 10,
        "outputscale": {"family": "lognormal", "a": 0.0, "b": 0.5},
        "noise": {"family": "loguniform", "a": 1e-3, "b": 1.0},
        "lengthscale_scaling": "sqrt", "feature_rescale": "sqrt",
    }  # fmt: skip
    for d in (1, 3, 10):
        hyper = GPHyperprior.from_prior_config(card, d)
        assert hyper.num_features == d and hyper.num_parameters == d + 2
        assert hyper.lengthscale_factor == pytest.approx(math.sqrt(10))
        assert hyper.parameter_names[-2:] == ("outputscale", "noise")
    only_rescale = GPHyperprior.from_prior_config({**card, "lengthscale_scaling": "none"}, 4)
    assert only_rescale.lengthscale_factor == pytest.approx(math.sqrt(10 / 4))
    with pytest.raises(ValueError, match=r"outside the prior's range \[1, 10\]"):
        GPHyperprior.from_prior_config(card, 11)
    with pytest.raises(ValueError, match="lacks"):
        GPHyperprior.from_prior_config({"kernel": "rbf"})


def test_fixed_entries_are_filled_in_and_not_sampled() -> None:
    card = {  # the shipped gp-rbf card: every hyperparameter fixed
        "kernel": "rbf", "num_features": 1, "x_low": 0.0, "x_high": 1.0,
        "lengthscale": [{"family": "fixed", "a": 0.2, "b": 0.0}],
        "outputscale": {"family": "fixed", "a": 1.0, "b": 0.0},
        "noise": {"family": "fixed", "a": 0.01, "b": 0.0},
    }  # fmt: skip
    assert GPHyperprior.from_prior_config(card).num_parameters == 0
    noise_free = GPHyperprior.from_prior_config(
        {**card, "noise": {"family": "loguniform", "a": 1e-3, "b": 1.0}}
    )
    assert noise_free.parameter_names == ("noise",)
    phi = torch.tensor([0.3], dtype=torch.float64)
    lengthscale, outputscale, noise, linear_variance = noise_free.unpack(phi)
    assert linear_variance is None  # the card has no linear part
    assert lengthscale.tolist() == [0.2] and float(outputscale) == 1.0
    assert float(noise) == pytest.approx(
        math.exp(math.log(1e-3) + math.log(1e3) / (1 + math.exp(-0.3)))
    )
    hyper = noise_free.to_gp_hyperparameters(phi)
    assert hyper.kernel == "rbf" and hyper.noise == pytest.approx(float(noise))
    draws = noise_free.sample_unconstrained(7, torch.Generator().manual_seed(0))
    assert draws.shape == (7, 1) and torch.isfinite(noise_free.log_prob(draws[0]))


LINEAR_CARD = {
    "kernel": "matern52", "num_features": 5, "num_features_min": 1,
    "lengthscale": [{"family": "lognormal", "a": 0.0, "b": 1.0}] * 5,
    "outputscale": {"family": "lognormal", "a": 0.0, "b": 0.5},
    "noise": {"family": "loguniform", "a": 1e-3, "b": 1.0},
    "linear_weight": {"family": "lognormal", "a": -1.5, "b": 1.5},
    "lengthscale_scaling": "sqrt", "feature_rescale": "sqrt",
}  # fmt: skip


def test_reads_a_linear_part_with_one_weight_per_used_feature() -> None:
    for d in (1, 3, 5):
        hyper = GPHyperprior.from_prior_config(LINEAR_CARD, d)
        assert hyper.has_linear and hyper.num_parameters == 2 * d + 2
        assert hyper.parameter_names[d:] == (
            "outputscale", "noise", *(f"linear_weight[{j}]" for j in range(d)),
        )  # fmt: skip
        assert hyper.linear_factor == pytest.approx(1 / 5)  # 1 / (d s²), s² = D / d
    unscaled = GPHyperprior.from_prior_config({**LINEAR_CARD, "feature_rescale": "none"}, 2)
    assert unscaled.linear_factor == pytest.approx(1 / 2)  # 1 / d; lengthscale_scaling: no effect
    for card in ({**LINEAR_CARD, "linear_weight": None},
                 {k: v for k, v in LINEAR_CARD.items() if k != "linear_weight"}):  # fmt: skip
        plain = GPHyperprior.from_prior_config(card, 3)
        assert not plain.has_linear and plain.num_parameters == 5
        assert plain.unpack(torch.zeros(5, dtype=torch.float64))[3] is None
    fixed = GPHyperprior.from_prior_config({**LINEAR_CARD, "linear_weight": 0.4}, 2)
    assert fixed.num_parameters == 4 and fixed.has_linear  # included, not sampled
    _, outputscale, _, variance = fixed.unpack(torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(variance, torch.full((2,), 0.4 / 5, dtype=torch.float64))
    assert float(outputscale) == 1.0


def test_linear_weight_density_matches_the_closed_form() -> None:
    d = 3
    hyper = GPHyperprior.from_prior_config(LINEAR_CARD, d)
    lam = np.array([1e-3, 0.05, 0.22, 1.0, 7.0])
    oracle = stats.lognorm(s=1.5, scale=math.exp(-1.5))
    np.testing.assert_allclose(hyper.linear_weight[0].log_prob(torch.tensor(lam)).numpy(),
                               oracle.logpdf(lam), atol=FLOAT64_ATOL, rtol=0)  # fmt: skip
    phi = torch.tensor([0.2, -1.0, 2.0, 0.3, -0.7, -2.0, 0.5, -4.0], dtype=torch.float64)
    # φ = (log ℓ_1..3, log σ_f², logit noise, log λ_1..3): each a closed-form density of φ
    expected = (
        stats.norm(0.0, 1.0).logpdf(phi[:3].numpy()).sum()
        + stats.norm(0.0, 0.5).logpdf(float(phi[3]))
        + stats.logistic.logpdf(float(phi[4]))
        + stats.norm(-1.5, 1.5).logpdf(phi[5:].numpy()).sum()
    )
    assert float(hyper.log_prob(phi)) == pytest.approx(expected, abs=FLOAT64_ATOL)
    lengthscale_d, outputscale, noise, variance_d = hyper.unpack(phi)
    expected_v = math.exp(0.3) * np.exp(phi[5:].numpy()) / 5  # v_j = σ_f² λ_j / (d s²)
    np.testing.assert_allclose(variance_d.numpy(), expected_v, atol=FLOAT64_ATOL, rtol=0)
    draws = hyper.sample_unconstrained(4000, torch.Generator().manual_seed(1))
    assert draws.shape == (4000, 2 * d + 2)
    for j in range(d):  # each λ_j (φ column 5 + j) follows the card's lognormal
        assert stats.kstest(draws[:, 5 + j].exp().numpy(), oracle.cdf).pvalue > KS_MIN_PVALUE


def test_without_a_linear_part_draws_and_densities_are_unchanged() -> None:
    card = {k: v for k, v in LINEAR_CARD.items() if k != "linear_weight"}
    plain, linear = (GPHyperprior.from_prior_config(c, 2) for c in (card, LINEAR_CARD))
    gen = (torch.Generator().manual_seed(2), torch.Generator().manual_seed(2))
    a, b = plain.sample_unconstrained(9, gen[0]), linear.sample_unconstrained(9, gen[1])
    assert torch.equal(a, b[:, :4])  # the linear weights are drawn after the others
    assert float(linear.log_prob(b[0])) == pytest.approx(
        float(plain.log_prob(a[0])) + sum(float(h.log_prob_unconstrained(b[0, 4 + j]))
                                          for j, h in enumerate(linear.linear_weight)),
        abs=FLOAT64_ATOL,
    )  # fmt: skip
    with_part, without = linear.to_gp_hyperparameters(b[0]), plain.to_gp_hyperparameters(a[0])
    assert torch.equal(with_part.stationary.lengthscale, without.lengthscale)
    assert (with_part.stationary.outputscale, with_part.stationary.noise) == (
        without.outputscale, without.noise,
    )  # fmt: skip
