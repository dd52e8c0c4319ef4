"""Distribution Transformer: symmetries, shapes, feeding a posterior back, input checks."""

from __future__ import annotations

import pytest
import torch

from pfnkit.models import DistributionTransformer, DTConfig

FLOAT64_EXACT = 1e-10  # the same float64 computation in another order
CONFIG = DTConfig(dim=2, obs_dim=2, k_max=4, d_model=32, n_heads=4, n_layers=2, d_ff=64)


def _model() -> DistributionTransformer:
    torch.manual_seed(0)
    return DistributionTransformer(CONFIG).double().eval()


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


def test_invariant_to_permuting_components_and_observations() -> None:
    model = _model()
    logits, means, tril = _prior(2, 3)
    obs = _obs(2, 6)
    theta = torch.randn(5, 2, 2, dtype=torch.float64)
    reference = model(logits, means, tril, obs).log_prob(theta)
    perm_k, perm_n = torch.tensor([2, 0, 1]), torch.tensor([3, 5, 0, 1, 4, 2])
    permuted = model(logits[:, perm_k], means[:, perm_k], tril[:, perm_k], obs[:, perm_n])
    torch.testing.assert_close(
        permuted.log_prob(theta), reference, atol=FLOAT64_EXACT, rtol=FLOAT64_EXACT
    )


def test_batch_equals_loop() -> None:
    model = _model()
    prior, obs = _prior(4, 2), _obs(4, 5)
    theta = torch.randn(4, 2, dtype=torch.float64)
    batched = model(*prior, obs).log_prob(theta)
    looped = torch.stack(
        [model(*(p[i : i + 1] for p in prior), obs[i : i + 1]).log_prob(theta[i]) for i in range(4)]
    ).squeeze(-1)
    torch.testing.assert_close(batched, looped, atol=FLOAT64_EXACT, rtol=FLOAT64_EXACT)


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
