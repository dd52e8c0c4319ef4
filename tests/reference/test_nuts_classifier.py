"""The NUTS classifier predictive's scores against a direct loop, and its diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal

from pfnkit.reference import NUTSConfig, run_nuts
from pfnkit.reference.nuts_classifier import NUTSClassPredictive, class_probabilities
from tests.conftest import FLOAT64_ATOL


def _predictive(probs_by_chain: torch.Tensor) -> NUTSClassPredictive:
    chains, draws = probs_by_chain.shape[:2]
    run = run_nuts(
        lambda theta: -0.5 * theta.pow(2).sum(), torch.zeros(chains, 1, dtype=torch.float64),
        NUTSConfig(num_chains=chains, warmup=4, num_samples=draws, max_tree_depth=2), seed=0,
    )  # fmt: skip
    return NUTSClassPredictive(probs_by_chain=probs_by_chain, run=run)


def test_class_probabilities_of_bernoulli_and_categorical() -> None:
    p = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    assert torch.equal(class_probabilities(Bernoulli(probs=p)), torch.stack([1 - p, p], -1))
    probs = torch.softmax(torch.randn(3, 4, 5, dtype=torch.float64), -1)
    assert torch.allclose(class_probabilities(Categorical(probs=probs)), probs)
    with pytest.raises(TypeError, match="Bernoulli or Categorical"):
        class_probabilities(Normal(0.0, 1.0))


def test_nll_and_chain_spread_equal_a_loop_over_draws() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 8, 5, 3, generator=gen, dtype=torch.float64), -1)
    y_M = torch.tensor([0, 2, 1, 1, 0])
    reference = _predictive(probs)
    # Loop oracle: log of the mean over every draw of p(y_m | θ), point by point.
    expected = (
        -sum(
            math.log(sum(float(probs[c, s, m, y_M[m]]) for c in range(2) for s in range(8)) / 16)
            for m in range(5)
        )
        / 5
    )
    assert reference.nll(y_M) == pytest.approx(expected, abs=FLOAT64_ATOL)
    per_chain = [
        -sum(math.log(float(probs[c, :, m, y_M[m]].mean())) for m in range(5)) / 5 for c in range(2)
    ]
    spread = max(per_chain) - min(per_chain)
    assert reference.chain_nll_spread(y_M) == pytest.approx(spread, abs=FLOAT64_ATOL)


def test_point_r_hat_flags_disagreeing_chains_and_treats_saturation_as_converged() -> None:
    gen = torch.Generator().manual_seed(1)
    p1 = 0.5 + 0.01 * torch.randn(2, 50, 1, generator=gen, dtype=torch.float64)
    saturated = torch.ones(2, 50, 1, dtype=torch.float64)  # P(y = 1) = 1 for every draw
    agree = _predictive(torch.stack([1 - p1, p1], -1))
    assert agree.max_point_r_hat < 1.1
    shifted = p1 + torch.tensor([0.0, 0.1], dtype=torch.float64)[:, None, None]
    disagree = _predictive(torch.stack([1 - shifted, shifted], -1))
    assert disagree.max_point_r_hat > 2.0
    pinned = _predictive(torch.stack([1 - saturated, saturated], -1))
    assert pinned.max_point_r_hat == 1.0
