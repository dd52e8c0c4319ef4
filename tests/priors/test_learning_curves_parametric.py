"""Parametric learning-curve families and their mixture prior, against numpy and scipy.

Each family's formula is checked at a hand-computed point; the mixture's curve, prior
density and likelihood against the families re-written here in numpy and scored with
scipy.stats, one draw at a time (no code shared with the prior).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import priors
from pfnkit.data import LogJointPrior
from priors.learning_curves_families import FAMILIES
from priors.learning_curves_parametric import ParametricCurvePrior, ParametricCurvePriorConfig
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

FLOAT64_RTOL = 1e-10  # float64 identity: the same density along two routes

# (family, epoch t, parameters, p(t) worked out by hand)
HAND_VALUES = [
    ("pow3", 4.0, (0.9, 0.5, 0.5), 0.9 - 0.5 / 2),
    ("pow4", 3.0, (0.9, 1.0, 1.0, 0.5), 0.9 - 1 / 2),
    ("ilog2", math.e - 1, (0.8, 0.3), 0.8 - 0.3),
    ("janoschek", 1.0, (0.9, 0.1, math.log(2), 1.7), 0.9 - 0.8 / 2),
    ("weibull", 2.0, (0.9, 0.1, 0.5, 3.0), 0.9 - 0.8 / math.e),
    ("mmf", 2.0, (0.9, 0.1, 0.5, 2.7), 0.9 - 0.8 / 2),
    ("log_power", math.exp(1.3), (0.8, 1.3, -2.0), 0.8 / 2),
    ("exp4", 1.0, (0.9, 0.5, math.log(0.4) + 0.5, 2.0), 0.9 - 0.4),
]

NUMPY_FAMILIES = {
    "pow3": lambda t, c, a, al: c - a * t ** (-al),
    "pow4": lambda t, c, a, b, al: c - (a * t + b) ** (-al),
    "ilog2": lambda t, c, a: c - a / np.log(t + 1),
    "janoschek": lambda t, al, be, ka, de: al - (al - be) * np.exp(-ka * t**de),
    "weibull": lambda t, al, be, ka, de: al - (al - be) * np.exp(-((ka * t) ** de)),
    "mmf": lambda t, al, be, ka, de: al - (al - be) / (1 + (ka * t) ** de),
    "log_power": lambda t, a, b, c: a / (1 + (t / np.exp(b)) ** c),
    "exp4": lambda t, c, a, b, al: c - np.exp(-a * t**al + b),
}


def _scipy_prior(prior) -> list:
    out = []
    for p in prior:
        if p.kind == "uniform":
            out.append(stats.uniform(p.a, p.b - p.a))
        elif p.kind == "lognormal":
            out.append(stats.lognorm(s=p.b, scale=math.exp(p.a)))
        else:
            out.append(stats.norm(p.a, p.b))
    return out


@pytest.mark.parametrize("family,t,params,expected", HAND_VALUES)
def test_family_formula_at_a_hand_computed_point(family, t, params, expected) -> None:
    got = FAMILIES[family].curve(
        torch.tensor([params], dtype=torch.float64), torch.tensor([t], dtype=torch.float64)
    )
    assert float(got[0, 0]) == pytest.approx(expected, abs=FLOAT64_ATOL)


def _numpy_curve(prior: ParametricCurvePrior, theta: np.ndarray, t: np.ndarray) -> np.ndarray:
    k = len(prior.families)
    p, start = np.zeros_like(t), k
    for i, family in enumerate(prior.families):
        block = theta[start : start + family.num_params]
        p = p + theta[i] * NUMPY_FAMILIES[family.name](t, *block)
        start += family.num_params
    return 1 - p if prior.config.orientation == "error" else p


def _numpy_log_prior(prior: ParametricCurvePrior, theta: np.ndarray) -> float:
    k = len(prior.families)
    total = stats.dirichlet(np.ones(k)).logpdf(theta[:k])
    start = k
    for family in prior.families:
        for dist, value in zip(_scipy_prior(family.priors), theta[start:], strict=False):
            total += dist.logpdf(value)
        start += family.num_params
    cfg = prior.config
    total += stats.lognorm(s=cfg.noise_log_std, scale=math.exp(cfg.noise_log_mean)).logpdf(
        theta[-1]
    )
    return total


CONFIGS = [
    ParametricCurvePriorConfig(),
    ParametricCurvePriorConfig(components=tuple(FAMILIES), max_epoch=20, orientation="performance"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_log_joint_matches_scipy(config: ParametricCurvePriorConfig) -> None:
    prior = ParametricCurvePrior(config)
    assert isinstance(prior, LogJointPrior)
    task = prior.sample(1, 7, 3, generator=torch.Generator().manual_seed(0))
    params = prior.sample_params(4, torch.Generator().manual_seed(1))
    t = np.arange(1, 8, dtype=float)
    y = task.y_ctx[0].double().numpy()
    got = prior.log_joint(params, task).numpy()
    for s, theta in enumerate(params.numpy()):
        lik = stats.norm(_numpy_curve(prior, theta, t), theta[-1]).logpdf(y).sum()
        expected = _numpy_log_prior(prior, theta) + lik
        assert got[s] == pytest.approx(expected, rel=FLOAT64_RTOL)
        curve = prior.mean_curve(params[s : s + 1], torch.from_numpy(t))[0].numpy()
        np.testing.assert_allclose(curve, _numpy_curve(prior, theta, t), atol=FLOAT64_ATOL)


def test_log_joint_is_minus_infinity_off_the_support_and_differentiable_on_it() -> None:
    prior = ParametricCurvePrior()
    task = prior.sample(1, 10, 1, generator=torch.Generator().manual_seed(0))
    params = prior.sample_params(3, torch.Generator().manual_seed(2))
    bad = params.clone()
    bad[0, 0] += 0.3  # weights off the simplex
    bad[1, -1] = -0.1  # negative noise
    bad[2, 3] = 5.0  # pow3 asymptote far above 1: the curve leaves [0, 1]
    assert torch.isneginf(prior.log_joint(bad, task)).all()
    params.requires_grad_(True)
    prior.log_joint(params, task).sum().backward()
    assert torch.isfinite(params.grad).all()
    with pytest.raises(ValueError, match="one-task"):
        prior.log_joint(params, prior.sample(2, 3, 1, generator=torch.Generator()))


@pytest.mark.parametrize("config", CONFIGS)
def test_sampled_curves_respect_the_constraints_and_the_noise(config) -> None:
    prior = ParametricCurvePrior(config)
    t_max = config.max_epoch
    batch = prior.sample(2000, 5, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.x_ctx[0, :, 0], torch.arange(1, 6) / t_max)
    assert bool((batch.x_qry > 5 / t_max).all()) and bool((batch.x_qry <= 1).all())
    params = batch.meta["params"].double()
    assert bool(prior.is_valid(params).all())
    p = prior.performance(params, prior.epochs())
    assert bool(((p >= 0) & (p <= 1)).all()) and bool((p[:, -1] > p[:, 0]).all())
    mean = prior.mean_curve(params, (batch.x_ctx[..., 0].double() * t_max))
    z = ((batch.y_ctx.double() - mean) / params[:, -1:]).numpy()[:, 0]  # one per task: i.i.d.
    n = len(z)
    assert abs(z.mean()) < STANDARD_ERRORS / math.sqrt(n)
    assert abs((z**2).mean() - 1) < STANDARD_ERRORS * (z**2).std() / math.sqrt(n)
    w = params[:, : len(config.components)]
    torch.testing.assert_close(w.sum(-1), torch.ones(2000, dtype=torch.float64), atol=1e-6, rtol=0)


def test_parameter_priors_are_sampled_as_declared() -> None:
    """Before truncation, each parameter's draws follow its declared prior (KS test)."""
    gen = torch.Generator().manual_seed(0)
    for family in FAMILIES.values():
        draws = family.sample_params(2000, gen).numpy()
        for i, dist in enumerate(_scipy_prior(family.priors)):
            assert stats.kstest(draws[:, i], dist.cdf).pvalue > 1e-3, (family.name, i)


def test_config_validation_and_registration() -> None:
    with pytest.raises(ValueError, match="components"):
        ParametricCurvePriorConfig(components=("pow3", "nope"))
    with pytest.raises(ValueError, match="orientation"):
        ParametricCurvePriorConfig(orientation="up")
    with pytest.raises(ValueError, match="n_ctx"):
        ParametricCurvePrior().sample(1, 50, 1, generator=torch.Generator())
    with pytest.raises(ValueError, match="parameters"):
        ParametricCurvePrior().log_prior(torch.zeros(1, 3, dtype=torch.float64))
    config = ParametricCurvePriorConfig(components=["mmf", "exp4"])
    assert ParametricCurvePriorConfig.from_dict(config.to_dict()) == config
    assert priors.REGISTRY["lc-parametric"] == (ParametricCurvePrior, ParametricCurvePriorConfig)
    assert ParametricCurvePrior().param_names()[:4] == [
        "w.pow3",
        "w.ilog2",
        "w.janoschek",
        "pow3.c",
    ]
