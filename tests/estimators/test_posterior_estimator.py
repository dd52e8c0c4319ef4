"""PosteriorEstimator: prior forms, feeding a posterior back, and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators.posterior import PosteriorEstimator
from pfnkit.models import DistributionTransformer, DTConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_pfn

CONFIG = DTConfig(dim=2, obs_dim=2, k_max=3, d_model=16, n_heads=2, n_layers=1, d_ff=32)
WEIGHTS = [0.3, 0.7]
MEANS = [[0.0, 1.0], [-1.0, 2.0]]
COVS = [[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 0.5]]]


@pytest.fixture
def estimator(tmp_path) -> PosteriorEstimator:
    torch.manual_seed(0)
    card = save_checkpoint(
        tmp_path / "dt-tiny", DistributionTransformer(CONFIG), prior_name="gmm",
        prior_config={}, train_config={"n_ctx_max": 20}, command="pytest fixture",
    )  # fmt: skip
    return PosteriorEstimator(str(card))


def _obs(n: int) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 2))


def test_tuple_and_mixture_priors_agree_and_match_the_model(estimator) -> None:
    post = estimator.posterior((WEIGHTS, MEANS, COVS), _obs(4))
    prior = MixtureSameFamily(
        Categorical(probs=torch.tensor(WEIGHTS, dtype=torch.float64)),
        MultivariateNormal(
            torch.tensor(MEANS, dtype=torch.float64),
            covariance_matrix=torch.tensor(COVS, dtype=torch.float64),
        ),
    )
    again = estimator.posterior(prior, _obs(4))
    theta = torch.randn(7, 2, dtype=torch.float64)
    torch.testing.assert_close(
        post.log_prob(theta), again.log_prob(theta), atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL
    )
    tril = torch.linalg.cholesky(torch.tensor(COVS, dtype=torch.float64))
    with torch.no_grad():
        direct = estimator.model(
            torch.tensor(WEIGHTS, dtype=torch.float64).log()[None],
            torch.tensor(MEANS, dtype=torch.float64)[None],
            tril[None],
            torch.as_tensor(_obs(4))[None],
        )
    torch.testing.assert_close(
        post.log_prob(theta), direct.log_prob(theta[:, None]).squeeze(-1),
        atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL,
    )  # fmt: skip


def test_posterior_feeds_back_as_the_next_prior(estimator) -> None:
    post = estimator.posterior((WEIGHTS, MEANS, COVS), _obs(4))
    assert post.batch_shape == () and post.event_shape == (2,)
    for _ in range(3):
        post = estimator.posterior(post, _obs(4))
    assert torch.isfinite(post.log_prob(torch.zeros(2, dtype=torch.float64)))
    empty = estimator.posterior(post, np.zeros((0, 2)))
    assert empty.mixture_distribution.logits.shape == (2,)


@pytest.mark.parametrize(
    ("prior", "match"),
    [
        (([0.3, 0.6], MEANS, COVS), "sum to 1"),
        (([1.2, -0.2], MEANS, COVS), "non-negative"),
        ((WEIGHTS, MEANS, [[[1.0, 2.0], [2.0, 1.0]], COVS[1]]), "not positive definite"),
        ((WEIGHTS, MEANS, [[[1.0, 0.5], [0.0, 1.0]], COVS[1]]), "symmetric"),
        ((WEIGHTS, [[0.0], [1.0]], COVS), "prior means must be"),
        (([0.25] * 4, [[0.0, 0.0]] * 4, [COVS[1]] * 4), "at most 3"),
        (([float("nan"), 1.0], MEANS, COVS), "NaN"),
        ("not a prior", "prior must be"),
    ],
)
def test_bad_priors_raise_clear_errors(estimator, prior, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        estimator.posterior(prior, _obs(2))


def test_bad_observations_raise_and_too_many_warn(estimator) -> None:
    prior = (WEIGHTS, MEANS, COVS)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        estimator.posterior(prior, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        estimator.posterior(prior, np.array([[0.0, np.nan]]))
    with pytest.warns(UserWarning, match="trained on at most 20"):
        estimator.posterior(prior, _obs(25))


def test_a_pfn_checkpoint_is_refused(tmp_path) -> None:
    card = save_checkpoint(
        tmp_path / "pfn", make_tiny_pfn(), prior_name="gp", prior_config={},
        train_config={"n_ctx_max": 5}, command="test",
    )  # fmt: skip
    with pytest.raises(ValueError, match="Distribution Transformer"):
        PosteriorEstimator(str(card))
