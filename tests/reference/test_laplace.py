"""Laplace whitening: exact on a Gaussian, clipped on flat directions, identity on failure."""

from __future__ import annotations

import math

import torch

from pfnkit.reference.laplace import MAX_SCALE, laplace_whitening
from tests.conftest import FLOAT64_ATOL

HESSIAN_ATOL = 1e-5  # central differences of exact gradients (step 1e-4)
Z_SPACE_ATOL = 1e-4  # the whitened log density vs a standard normal's, through the fit


def _gaussian(mean_P: torch.Tensor, cov_PP: torch.Tensor):
    precision = torch.linalg.inv(cov_PP)
    return lambda theta: -0.5 * (theta - mean_P) @ precision @ (theta - mean_P)


def test_whitening_recovers_a_gaussian_and_round_trips() -> None:
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.3, 0.0], [-0.2, 0.1, 0.05]], dtype=torch.float64)
    cov = a @ a.T
    starts = torch.zeros(2, 3, dtype=torch.float64)
    white = laplace_whitening(_gaussian(mean, cov), starts)
    torch.testing.assert_close(white.center_P, mean, atol=HESSIAN_ATOL, rtol=0)
    torch.testing.assert_close(white.scale_PP @ white.scale_PP.T, cov, atol=HESSIAN_ATOL, rtol=0)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(white.to_z(white.to_theta(z)), z, atol=FLOAT64_ATOL, rtol=0)
    # in z the target is a standard normal (up to a constant)
    wrapped = white.wrap(_gaussian(mean, cov))
    values = torch.stack([wrapped(zi) - wrapped(torch.zeros(3, dtype=torch.float64)) for zi in z])
    torch.testing.assert_close(values, -0.5 * (z**2).sum(-1), atol=Z_SPACE_ATOL, rtol=0)


def test_flat_directions_get_the_largest_scale() -> None:
    log_density = lambda theta: -0.5 * theta[0] ** 2  # noqa: E731  (theta[1] is flat)
    white = laplace_whitening(log_density, torch.ones(2, 2, dtype=torch.float64))
    scales = torch.linalg.svdvals(white.scale_PP)
    assert math.isclose(float(scales.max()), MAX_SCALE, rel_tol=1e-6)
    assert math.isclose(float(scales.min()), 1.0, rel_tol=1e-4)


def test_failure_falls_back_to_the_best_start_without_whitening() -> None:
    def log_density(theta: torch.Tensor) -> torch.Tensor:
        if theta.requires_grad:  # the mode search fails numerically
            raise RuntimeError("not positive definite")
        return -(theta**2).sum()

    starts = torch.tensor([[2.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    white = laplace_whitening(log_density, starts)
    assert torch.equal(white.scale_PP, torch.eye(2, dtype=torch.float64))
    assert torch.equal(white.center_P, starts[1])
