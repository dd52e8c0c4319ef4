"""What is attacked (pfnkit.robustness.attacks) against closed forms and oracles."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    MixtureSameFamily,
    MultivariateNormal,
    kl_divergence,
)

from pfnkit.distributions import BarDistribution
from pfnkit.mixtures import sample_mixture
from pfnkit.reference.analytic import conjugate_gmm_posterior
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness.attacks import (
    attack_context,
    attack_observations,
    data_scale,
    exact_gp_predictor,
)
from pfnkit.robustness.pgd import NORMS, AttackConfig, ball_norm
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS
from tests.helpers import make_tiny_pfn

QUADRATURE_ATOL = 1e-8  # closed-form bar KL vs midpoint quadrature of p log(p/q)
ATTACK_OPTIMALITY = 0.95  # PGD must reach this fraction of the analytic worst-case KL
DTYPE = torch.float64
HYPER = GPHyperparameters(lengthscale=0.3, outputscale=1.0, noise=0.01)


def _context(n_tasks: int, n_ctx: int, n_qry: int, n_features: int, seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(n_tasks, n_ctx, n_features, generator=gen, dtype=DTYPE)
    y_ctx = torch.sin(6 * x_ctx.sum(-1)) + 0.1 * torch.randn(n_tasks, n_ctx, generator=gen)
    x_qry = torch.rand(n_tasks, n_qry, n_features, generator=gen, dtype=DTYPE)
    return x_ctx, y_ctx.to(DTYPE), x_qry


# ------------------------------------------------------------------- KL between bars
def _midpoint_integral(f, a: float, b: float, n: int) -> torch.Tensor:
    h = (b - a) / n
    return f(a + h * (torch.arange(n, dtype=DTYPE) + 0.5)).sum() * h


def test_bar_kl_matches_quadrature_including_the_tails() -> None:
    gen = torch.Generator().manual_seed(3)
    widths = torch.exp(0.5 * torch.randn(12, generator=gen, dtype=DTYPE))
    widths[0], widths[-1] = 0.4, 1.7  # distinct tail scales
    borders = torch.cat([torch.zeros(1, dtype=DTYPE), widths.cumsum(0)]) - 2.0
    logits_p, logits_q = 1.5 * torch.randn(2, 12, generator=gen, dtype=DTYPE)
    logits_p[[0, -1]] += 2.0  # heavy tails, so they matter
    p, q = BarDistribution(borders, logits_p), BarDistribution(borders, logits_q)

    def integrand(y: torch.Tensor) -> torch.Tensor:
        log_p, log_q = p.log_prob(y), q.log_prob(y)
        return log_p.exp() * (log_p - log_q)

    b, s_left, s_right = borders.tolist(), float(widths[0]), float(widths[-1])
    total = _midpoint_integral(integrand, b[1] - 40 * s_left, b[1], 200_000)
    total += _midpoint_integral(integrand, b[-2], b[-2] + 40 * s_right, 200_000)
    for lo, hi in zip(b[1:-2], b[2:-1], strict=True):
        total += _midpoint_integral(integrand, lo, hi, 100)
    kl = kl_divergence(p, q)
    assert float(kl) > 0.1
    assert abs(float(kl) - float(total)) < QUADRATURE_ATOL
    assert abs(float(kl_divergence(p, p))) < FLOAT64_ATOL
    with pytest.raises(ValueError, match="same borders"):
        kl_divergence(p, BarDistribution(borders * 1.1, logits_q))


# ------------------------------------------------------------------- context attacks
@pytest.mark.parametrize("target", ["y", "x", "xy"])
def test_eps_zero_gives_zero_kl_for_the_pfn_and_the_exact_gp(target: str, tiny_pfn64) -> None:
    x_ctx, y_ctx, x_qry = _context(3, 6, 5, n_features=2, seed=1)
    for predictor in (tiny_pfn64, exact_gp_predictor(HYPER)):
        (attack,) = attack_context(predictor, x_ctx, y_ctx, x_qry, [0.0], target=target,
                                   generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert float(attack.kl_B.abs().max()) < FLOAT64_ATOL
        torch.testing.assert_close(attack.y_ctx_BN, y_ctx, rtol=0, atol=0)
        torch.testing.assert_close(attack.x_ctx_BND, x_ctx, rtol=0, atol=0)


@pytest.mark.parametrize(("target", "norm"), [("y", "l2"), ("x", "linf"), ("xy", "l2")])
def test_worst_case_kl_never_decreases_with_eps_and_stays_in_the_ball(
    target: str, norm: str, tiny_pfn64
) -> None:
    x_ctx, y_ctx, x_qry = _context(4, 8, 6, n_features=2, seed=2)
    eps = [0.0, 0.05, 0.1, 0.2, 0.2, 0.4]
    config = AttackConfig(norm=norm, steps=4)
    attacks = attack_context(tiny_pfn64, x_ctx, y_ctx, x_qry, eps, target=target, config=config,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    kl_EB = torch.stack([a.kl_B for a in attacks])
    assert bool((kl_EB[1:] >= kl_EB[:-1]).all())
    assert bool((kl_EB[-1] > 0).all())
    for attack in attacks:
        du_x = (attack.x_ctx_BND - x_ctx) / data_scale(x_ctx)
        du_y = (attack.y_ctx_BN - y_ctx) / data_scale(y_ctx)
        u_BC = torch.cat([du_x.flatten(1), du_y], dim=1)
        assert bool((ball_norm(u_BC, norm) <= attack.eps * (1 + 1e-9) + FLOAT64_ATOL).all())
        assert ("x" in target) or bool((du_x == 0).all())
        assert ("y" in target) or bool((du_y == 0).all())
    again = attack_context(tiny_pfn64, x_ctx, y_ctx, x_qry, eps, target=target, config=config,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(torch.stack([a.kl_B for a in again]), kl_EB, rtol=0, atol=0)


@pytest.mark.parametrize(("target", "norm"), [("y", "l2"), ("y", "linf"), ("x", "l2")])
def test_exact_gp_attack_beats_random_perturbations_of_the_same_norm(
    target: str, norm: str
) -> None:
    """Random directions, scaled onto the sphere of the attack's ball, never do better.

    (Over an L∞ ball the worst case is a vertex, and a random vertex can beat one ascent's
    local optimum; `AttackConfig.restarts` is the remedy.)
    """
    x_ctx, y_ctx, x_qry = _context(3, 8, 10, n_features=1, seed=4)
    eps = 0.5
    predictor = exact_gp_predictor(HYPER)
    (attack,) = attack_context(predictor, x_ctx, y_ctx, x_qry, [eps], target=target,
                               config=AttackConfig(norm=norm, steps=15),
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    clean = predictor(x_ctx, y_ctx, x_qry)
    values = y_ctx if target == "y" else x_ctx
    gen = torch.Generator().manual_seed(1)
    for _ in range(16):
        u = torch.randn(values.shape, generator=gen, dtype=DTYPE)
        length = ball_norm(u.flatten(1), norm).reshape(-1, *[1] * (u.ndim - 1))
        moved = values + data_scale(values) * eps * u / length
        perturbed = (
            predictor(x_ctx, moved, x_qry) if target == "y" else predictor(moved, y_ctx, x_qry)
        )
        random_kl_B = kl_divergence(clean, perturbed).mean(-1)
        assert bool((attack.kl_B >= random_kl_B).all()), (attack.kl_B, random_kl_B)


def test_restarts_never_do_worse(tiny_pfn64) -> None:
    x_ctx, y_ctx, x_qry = _context(4, 8, 6, n_features=2, seed=7)
    kl = {}
    for restarts in (1, 3):
        config = AttackConfig(norm="linf", steps=3, restarts=restarts)
        (attack,) = attack_context(tiny_pfn64, x_ctx, y_ctx, x_qry, [0.3], config=config,
                                   generator=torch.Generator().manual_seed(0))  # fmt: skip
        kl[restarts] = attack.kl_B
    assert bool((kl[3] >= kl[1]).all()) and bool((kl[3] > kl[1]).any())


# -------------------------------------------------------------- observation attacks
PRIOR_SCALE, NOISE_SCALE = 2.0, 1.0  # θ ~ N(0, τ² I), x_n | θ ~ N(θ, σ² I)


def conjugate_posterior(obs_BND: torch.Tensor) -> MixtureSameFamily:
    """The closed-form Gaussian posterior of θ, as a two-component mixture of equal parts."""
    n, d = obs_BND.shape[1:]
    precision = 1 / PRIOR_SCALE**2 + n / NOISE_SCALE**2
    mean_BD = obs_BND.sum(1) / NOISE_SCALE**2 / precision
    eye = torch.eye(d, dtype=obs_BND.dtype)
    components = MultivariateNormal(
        mean_BD.unsqueeze(1).expand(-1, 2, -1), scale_tril=eye / math.sqrt(precision)
    )
    weights = torch.tensor([0.3, 0.7], dtype=obs_BND.dtype).expand(obs_BND.shape[0], 2)
    return MixtureSameFamily(Categorical(probs=weights), components)


def _gaussian(mixture: MixtureSameFamily) -> MultivariateNormal:
    components = mixture.component_distribution
    return MultivariateNormal(components.loc[:, 0], scale_tril=components.scale_tril[:, 0])


@pytest.mark.parametrize("norm", NORMS)
def test_observation_attack_on_a_conjugate_gaussian_posterior(norm: str) -> None:
    gen = torch.Generator().manual_seed(5)
    n_tasks, n_obs, n_dims, eps, n_samples = 3, 10, 2, 1.0, 8192
    obs_BND = torch.randn(n_tasks, n_obs, n_dims, generator=gen, dtype=DTYPE) * torch.tensor(
        [1.0, 0.5], dtype=DTYPE
    ) + torch.randn(n_tasks, 1, n_dims, generator=gen, dtype=DTYPE)
    zero, attack = attack_observations(
        conjugate_posterior, obs_BND, [0.0, eps], config=AttackConfig(norm=norm, steps=30),
        n_samples=n_samples, generator=gen,
    )  # fmt: skip
    assert float(zero.kl_B.abs().max()) < FLOAT64_ATOL
    clean, attacked = conjugate_posterior(obs_BND), conjugate_posterior(attack.obs_BND)
    exact_kl_B = kl_divergence(_gaussian(clean), _gaussian(attacked))
    theta = sample_mixture(clean, n_samples, generator=torch.Generator().manual_seed(9))
    log_r_SB = attacked.log_prob(theta) - clean.log_prob(theta)  # the estimator's terms:
    standard_error_B = (torch.expm1(log_r_SB) - log_r_SB).std(0) / math.sqrt(n_samples)
    assert bool(((attack.kl_B - exact_kl_B).abs() < STANDARD_ERRORS * standard_error_B).all())
    # Only the posterior mean moves: KL = |Δμ|² / (2c), c the posterior variance, and its
    # maximum over the ball puts the whole budget on the widest dimension (L2) or on
    # every coordinate's corner (L∞).
    scale_BD = obs_BND.std(dim=1, correction=0)
    variance = 1 / (1 / PRIOR_SCALE**2 + n_obs / NOISE_SCALE**2)
    if norm == "l2":
        spread_B = n_obs * eps**2 * scale_BD.pow(2).amax(-1)
    else:
        spread_B = (n_obs * eps) ** 2 * scale_BD.pow(2).sum(-1)
    worst_B = 0.5 * variance * spread_B / NOISE_SCALE**4
    assert bool((exact_kl_B <= worst_B * (1 + 1e-9)).all())
    assert bool((exact_kl_B >= ATTACK_OPTIMALITY * worst_B).all()), (exact_kl_B, worst_B)


def test_observation_attack_on_the_analytic_gmm_posterior() -> None:
    """A two-component conjugate GMM posterior: zero at eps = 0, positive, monotone."""
    gen = torch.Generator().manual_seed(8)
    logits_BK = torch.tensor([[0.0, 0.5]], dtype=DTYPE).expand(2, 2)
    means_BKD = torch.tensor([[-1.5, 0.0], [1.5, 0.5]], dtype=DTYPE).expand(2, 2, 2)
    tril_BKDD = torch.eye(2, dtype=DTYPE).expand(2, 2, 2, 2)
    obs_cov_DD = 0.5 * torch.eye(2, dtype=DTYPE)

    def posterior(obs_BND: torch.Tensor) -> MixtureSameFamily:
        return conjugate_gmm_posterior(logits_BK, means_BKD, tril_BKDD, obs_BND, obs_cov_DD)

    obs_BND = torch.randn(2, 4, 2, generator=gen, dtype=DTYPE)
    attacks = attack_observations(posterior, obs_BND, [0.0, 0.2, 0.5],
                                  config=AttackConfig(steps=5), generator=gen)  # fmt: skip
    kl_EB = torch.stack([a.kl_B for a in attacks])
    assert float(kl_EB[0].abs().max()) < FLOAT64_ATOL
    assert bool((kl_EB[1:] >= kl_EB[:-1]).all()) and bool((kl_EB[1] > 0).all())


def test_sample_mixture_matches_the_mixture_moments() -> None:
    gen = torch.Generator().manual_seed(6)
    loc_BKD = torch.tensor([[[-2.0, 0.0], [3.0, 1.0]]], dtype=DTYPE)
    tril = torch.tensor([[1.0, 0.0], [0.5, 0.3]], dtype=DTYPE)
    mixture = MixtureSameFamily(
        Categorical(probs=torch.tensor([[0.25, 0.75]], dtype=DTYPE)),
        MultivariateNormal(loc_BKD, scale_tril=tril),
    )
    n = 40_000
    samples = sample_mixture(mixture, n, generator=gen)
    assert samples.shape == (n, 1, 2)
    sem = mixture.variance.sqrt() / math.sqrt(n)
    assert bool(((samples.mean(0) - mixture.mean).abs() < STANDARD_ERRORS * sem).all())
    again = sample_mixture(mixture, n, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(again, samples, rtol=0, atol=0)


@pytest.mark.parametrize("target", ["y", "x", "xy"])
def test_eps_zero_gives_exactly_zero_kl_for_a_float32_pfn_on_strided_tasks(target: str) -> None:
    """Priors hand out the context as strided views; the attacked context is a fresh tensor.

    A float32 PFN can round the two memory layouts differently (~1e-8), which the attack
    once reported as a KL at eps = 0; the zero perturbation now scores exactly 0.
    """
    gen = torch.Generator().manual_seed(3)
    x_BTD = torch.rand(3, 9, 2, generator=gen)
    y_BT = torch.randn(3, 9, generator=gen)
    x_ctx, y_ctx, x_qry = x_BTD[:, :5], y_BT[:, :5], x_BTD[:, 5:]
    assert not y_ctx.is_contiguous()
    model = make_tiny_pfn()
    (attack,) = attack_context(model, x_ctx, y_ctx, x_qry, [0.0], target=target,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(attack.kl_B, torch.zeros(3, dtype=DTYPE), rtol=0, atol=0)
