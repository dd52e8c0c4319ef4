"""Acquisitions over a bar distribution: Monte Carlo, Gaussian textbook formulas, log forms.

Oracles: `BarDistribution.sample` (shares no code with the closed forms), the textbook
Gaussian EI ``σ h((τ - μ) / σ)``, PI ``Φ((τ - μ) / σ)`` and quantiles on a bar
distribution that discretises a Gaussian finely, and mpmath at 50 digits for ``log h``.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from torch.distributions import Normal

from pfnkit.bo import (
    expected_improvement,
    log_expected_improvement,
    log_probability_of_improvement,
    lower_confidence_bound,
    probability_of_improvement,
    upper_confidence_bound,
)
from pfnkit.bo.acquisitions import log_h
from pfnkit.distributions import BarDistribution
from tests.conftest import STANDARD_ERRORS

N_MC = 400_000
# A bar distribution with bars of width w discretises a smooth density with an error of
# order w² in every expectation; 4000 bars on [-8, 8] (w = 0.004) give about 1e-6.
GAUSSIAN_BARS_ATOL = 1e-5
LOG_IDENTITY_ATOL = 1e-12  # log(EI) and log-EI: the same number by two float64 routes
MPMATH_RTOL = 1e-12  # log h against 50-digit arithmetic


@pytest.fixture
def few_bars() -> BarDistribution:
    return _few_bars()


def _few_bars() -> BarDistribution:
    """Three predictives on 10 bars with heavy tails (so the tails matter), float64."""
    generator = torch.Generator().manual_seed(0)
    borders = torch.tensor([-4.0, -2.5, -1.5, -1.0, -0.2, 0.0, 0.5, 1.0, 2.0, 2.5, 4.0])
    logits = torch.randn(3, 10, generator=generator, dtype=torch.float64)
    logits[:, 0] += 1.0  # fat left tail
    logits[:, -1] += 1.0
    return BarDistribution(borders.double(), logits)


@pytest.fixture(scope="module")
def few_bars_samples() -> torch.Tensor:
    """(N_MC, 3) exact samples of `few_bars` (drawn once for the module)."""
    return _few_bars().sample((N_MC,), generator=torch.Generator().manual_seed(1))


def _gaussian_bars(mu: float, sigma: float, n_bars: int = 4000) -> BarDistribution:
    """Bars of equal width on [-8, 8] carrying the masses of N(mu, sigma²)."""
    borders = torch.linspace(-8.0, 8.0, n_bars + 1, dtype=torch.float64)
    cdf = Normal(mu, sigma).cdf(borders[1:-1])
    masses = torch.diff(torch.cat([cdf.new_zeros(1), cdf, cdf.new_ones(1)]))
    return BarDistribution(borders, masses.clamp_min(1e-300).log())


# Incumbents: deep in the left tail, on a border, inside bars, in the right tail.
INCUMBENTS = [-5.0, -2.5, -1.2, 0.0, 0.7, 2.3, 3.1, 6.0]


@pytest.mark.parametrize("incumbent", INCUMBENTS)
def test_expected_improvement_matches_monte_carlo(few_bars, few_bars_samples, incumbent) -> None:
    y = few_bars_samples
    improvement = (incumbent - y).clamp_min(0)
    stderr = improvement.std(0) / math.sqrt(N_MC)
    ei = expected_improvement(few_bars, incumbent)
    assert torch.all((ei - improvement.mean(0)).abs() <= STANDARD_ERRORS * stderr + 1e-12)


@pytest.mark.parametrize("incumbent", INCUMBENTS)
def test_probability_of_improvement_matches_monte_carlo(
    few_bars, few_bars_samples, incumbent
) -> None:
    y = few_bars_samples
    frequency = (y < incumbent).double().mean(0)
    pi = probability_of_improvement(few_bars, incumbent)
    stderr = (pi * (1 - pi) / N_MC).sqrt()
    assert torch.all((pi - frequency).abs() <= STANDARD_ERRORS * stderr + 1e-12)


@pytest.mark.parametrize("level", [0.02, 0.1, 0.5, 0.9, 0.99])
def test_confidence_bounds_are_quantiles_by_monte_carlo(few_bars, few_bars_samples, level) -> None:
    y = few_bars_samples
    bound = lower_confidence_bound(few_bars, level)
    assert torch.equal(bound, upper_confidence_bound(few_bars, level))
    below = (y <= bound).double().mean(0)
    stderr = math.sqrt(level * (1 - level) / N_MC)
    assert torch.all((below - level).abs() <= STANDARD_ERRORS * stderr)


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 1.0), (0.3, 0.7), (-1.0, 1.5)])
@pytest.mark.parametrize("z", [-4.0, -2.0, -0.5, 0.0, 1.0, 3.0])
def test_gaussian_limit_matches_textbook_formulas(mu, sigma, z) -> None:
    dist = _gaussian_bars(mu, sigma)
    tau = mu + z * sigma
    normal = Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    z_t = torch.tensor(z, dtype=torch.float64)
    ei_textbook = sigma * (normal.log_prob(z_t).exp() + z_t * normal.cdf(z_t))
    assert float(expected_improvement(dist, tau)) == pytest.approx(
        float(ei_textbook), abs=GAUSSIAN_BARS_ATOL
    )
    assert float(probability_of_improvement(dist, tau)) == pytest.approx(
        float(normal.cdf(z_t)), abs=GAUSSIAN_BARS_ATOL
    )
    # log-EI: the textbook log of sigma * h(z), relative to EI's size
    log_ei = float(log_expected_improvement(dist, tau))
    assert log_ei == pytest.approx(
        math.log(ei_textbook), abs=GAUSSIAN_BARS_ATOL / float(ei_textbook)
    )


@pytest.mark.parametrize("level", [0.05, 0.1, 0.5, 0.9])
def test_gaussian_limit_quantiles(level) -> None:
    mu, sigma = 0.3, 0.7
    dist = _gaussian_bars(mu, sigma)
    expected = mu + sigma * Normal(0.0, 1.0).icdf(torch.tensor(level)).double()
    assert float(lower_confidence_bound(dist, level)) == pytest.approx(float(expected), abs=1e-4)


def test_log_forms_equal_the_log_where_the_value_is_positive(few_bars) -> None:
    for tau in torch.linspace(-12.0, 8.0, 81, dtype=torch.float64):
        ei = expected_improvement(few_bars, tau)
        pi = probability_of_improvement(few_bars, tau)
        assert torch.all(ei > 0) and torch.all(pi > 0)
        log_ei = log_expected_improvement(few_bars, tau)
        log_pi = log_probability_of_improvement(few_bars, tau)
        assert torch.allclose(
            log_ei, ei.log(), rtol=0, atol=LOG_IDENTITY_ATOL * (1 + ei.log().abs().max())
        )
        assert torch.allclose(
            log_pi, pi.log(), rtol=0, atol=LOG_IDENTITY_ATOL * (1 + pi.log().abs().max())
        )


def test_log_forms_stay_finite_and_monotone_where_the_value_underflows(few_bars) -> None:
    """Far below the left tail, EI and PI underflow to 0; their logs keep falling, finitely."""
    taus = -torch.logspace(1.5, 12, 40, dtype=torch.float64)  # from -31.6 to -1e12
    logits = few_bars.logits.clone().requires_grad_(True)
    dist = BarDistribution(few_bars.borders, logits)
    log_ei = torch.stack([log_expected_improvement(dist, t) for t in taus])
    log_pi = torch.stack([log_probability_of_improvement(dist, t) for t in taus])
    assert torch.all(expected_improvement(few_bars, taus[-1]) == 0)
    assert torch.isfinite(log_ei).all() and torch.isfinite(log_pi).all()
    assert torch.all(log_ei[1:] < log_ei[:-1]) and torch.all(log_pi[1:] < log_pi[:-1])
    (log_ei.sum() + log_pi.sum()).backward()
    assert torch.isfinite(logits.grad).all()
    # Deep in the left tail the bucket's mass and its half-normal's asymptotics rule:
    # log EI ≈ log p_0 + log(2 s) + log h(-a) with a = (b_1 - τ) / s.
    s = few_bars.widths[0]
    a = (few_bars.borders[1] - taus[-1]) / s
    asymptote = few_bars.log_probs[:, 0] + math.log(2) + s.log() - a**2 / 2
    asymptote = asymptote - 0.5 * math.log(2 * math.pi) - 2 * a.log()
    assert torch.allclose(log_ei[-1], asymptote, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_h_matches_mpmath(dtype) -> None:
    mpmath.mp.dps = 50
    us = [-1e15, -1e8, -1e3, -40.0, -10.0, -3.0, -1.0, -0.999, -0.5, 0.0, 0.5, 3.0, 20.0]
    if dtype == torch.float32:
        us = [u for u in us if abs(u) < 1e18]
    got = log_h(torch.tensor(us, dtype=dtype))
    for u, value in zip(us, got.tolist(), strict=True):
        exact = float(mpmath.log(mpmath.npdf(u) + u * mpmath.ncdf(u)))
        rtol = MPMATH_RTOL if dtype == torch.float64 else 1e-5
        assert value == pytest.approx(exact, rel=rtol, abs=rtol), u


def test_log_h_gradients_are_finite_everywhere() -> None:
    u = torch.tensor([-1e20, -1e9, -50.0, -1.0, -0.99, 0.0, 30.0], dtype=torch.float64)
    u.requires_grad_(True)
    log_h(u).sum().backward()
    assert torch.isfinite(u.grad).all()
    # d/du log h(u) = Φ(u) / h(u) > 0
    assert torch.all(u.grad > 0)


def test_incumbent_broadcasts_against_the_batch(few_bars) -> None:
    taus = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    together = expected_improvement(few_bars, taus)
    one_by_one = torch.stack([expected_improvement(few_bars[i], taus[i]) for i in range(3)])
    assert torch.allclose(together, one_by_one, rtol=0, atol=1e-15)


def test_bad_arguments_are_refused(few_bars) -> None:
    with pytest.raises(ValueError, match="incumbent must be finite"):
        expected_improvement(few_bars, float("nan"))
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1"):
        lower_confidence_bound(few_bars, 1.0)
