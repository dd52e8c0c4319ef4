"""Distribution Transformer: component equivariance, shapes, feeding a posterior back, checks.

The equivalences every model obeys (batch = loop, permuted observations, fused = reference
attention) are in test_model_contract.py.
"""

from __future__ import annotations

import pytest
import torch

from pfnkit.models import DistributionTransformer
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_dt


def _model() -> DistributionTransformer:
    return make_tiny_dt()


def _prior(b: int, k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=gen, dtype=torch.float64)
    means = 2 * torch.randn(b, k, 2, generator=gen, dtype=torch.float64)
    raw = torch.randn(b, k, 2, 2, generator=gen, dtype=torch.float64)
    cov = raw @ raw.transpose(-1, -2) + 0.5 * torch.eye(2, dtype=torch.float64)
    return logits, means, torch.linalg.cholesky(cov)


def _obs(b: int, n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_posterior_shapes_and_empty_observations() -> None:
    model = _model()
    theta = torch.randn(3, 2, dtype=torch.float64)
    for n in (0, 1, 7):
        post = model(*_prior(3, 2), _obs(3, n))
        assert post.batch_shape == (3,) and post.event_shape == (2,)
        assert post.mixture_distribution.logits.shape == (3, 2)
        assert torch.isfinite(post.log_prob(theta)).all()


def test_permuting_the_prior_components_permutes_the_posterior_components() -> None:
    model = _model()
    logits, means, tril = _prior(2, 3)
    obs = _obs(2, 6)
    reference = model(logits, means, tril, obs)
    perm = torch.tensor([2, 0, 1])
    permuted = model(logits[:, perm], means[:, perm], tril[:, perm], obs)
    pairs = [
        (permuted.mixture_distribution.logits, reference.mixture_distribution.logits[:, perm]),
        (permuted.component_distribution.loc, reference.component_distribution.loc[:, perm]),
        (
            permuted.component_distribution.scale_tril,
            reference.component_distribution.scale_tril[:, perm],
        ),
    ]
    for actual, expected in pairs:
        torch.testing.assert_close(actual, expected, atol=FLOAT64_ATOL, rtol=0)


def test_a_posterior_is_accepted_as_the_next_prior() -> None:
    model = _model()
    post = model(*_prior(2, 3), _obs(2, 4))
    again = model(
        post.mixture_distribution.logits,
        post.component_distribution.loc,
        post.component_distribution.scale_tril,
        _obs(2, 4, seed=2),
    )
    assert torch.isfinite(again.log_prob(torch.zeros(2, 2, dtype=torch.float64))).all()
    diag = again.component_distribution.scale_tril.diagonal(dim1=-2, dim2=-1)
    assert (diag > 0).all()


def test_clear_errors_for_bad_shapes() -> None:
    model = _model()
    logits, means, tril = _prior(1, 5)
    with pytest.raises(ValueError, match="takes 1 to 4"):
        model(logits, means, tril, _obs(1, 2))
    logits, means, tril = _prior(1, 2)
    with pytest.raises(ValueError, match="observations must be"):
        model(logits, means, tril, torch.zeros(1, 3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="prior means"):
        model(logits, means[..., :1], tril, _obs(1, 2))
