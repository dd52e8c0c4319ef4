"""Clustered inputs (priors/clustered_inputs.py) against a point-by-point loop of its docstring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.gaussian_process import kernels as sk

from priors import clustered_inputs as ci
from priors.gp import GPPrior, GPPriorConfig
from tests.conftest import STANDARD_ERRORS

KS_MIN_PVALUE = 1e-3  # distribution checks: reject only clear mismatches
CLOSE = 0.02  # a "close" neighbour, in unit-cube lengths
FACE_SHARE_ATOL = 0.01  # share of coordinates on a face, 60000 coordinates each side


def _loop_design(rng: np.random.Generator, t: int, d: int) -> np.ndarray:
    """One task drawn point by point from the module docstring, with numpy."""
    centres = rng.uniform(size=(ci.MAX_CENTRES, d))
    for k in range(ci.MAX_CENTRES):
        for j in range(d):
            if rng.uniform() < ci.FACE_PROBABILITY:
                centres[k, j] = float(rng.uniform() < 0.5)
    n_centres = rng.integers(1, ci.MAX_CENTRES + 1)
    share = rng.uniform(0, ci.MAX_CLUSTERED_SHARE)
    points = np.empty((t, d))
    for i in range(t):
        if rng.uniform() < share:
            centre = centres[rng.integers(n_centres)]
            radius = math.exp(rng.uniform(math.log(ci.MIN_RADIUS), math.log(ci.MAX_RADIUS)))
            points[i] = np.clip(centre + radius * rng.standard_normal(d), 0.0, 1.0)
        else:
            points[i] = rng.uniform(size=d)
    return points


def _nearest_distances(x_BTD: np.ndarray) -> np.ndarray:
    diff = x_BTD[:, :, None, :] - x_BTD[:, None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    dist[:, np.arange(x_BTD.shape[1]), np.arange(x_BTD.shape[1])] = np.inf
    return dist.min(-1).ravel()


def test_clustered_design_matches_a_loop_of_its_description() -> None:
    b, t, d = 2000, 10, 3
    x = ci.draw_clustered_unit((b, t, d), torch.Generator().manual_seed(0)).numpy()
    rng = np.random.default_rng(0)
    loop = np.stack([_loop_design(rng, t, d) for _ in range(b)])
    assert x.shape == (b, t, d) and x.dtype == np.float64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert stats.ks_2samp(x.ravel(), loop.ravel()).pvalue > KS_MIN_PVALUE
    near, near_loop = _nearest_distances(x), _nearest_distances(loop)
    assert stats.ks_2samp(near, near_loop).pvalue > KS_MIN_PVALUE
    on_face = lambda a: float(((a == 0.0) | (a == 1.0)).mean())  # noqa: E731
    assert abs(on_face(x) - on_face(loop)) < FACE_SHARE_ATOL
    # and it is not the uniform design: many close neighbours, some points on faces
    uniform = np.random.default_rng(1).uniform(size=(b, t, d))
    assert (near < CLOSE).mean() > 0.05 > 0.01 > (_nearest_distances(uniform) < CLOSE).mean()
    assert on_face(x) > 0.05


def test_same_generator_same_design() -> None:
    draw = lambda: ci.draw_clustered_unit((4, 7, 2), torch.Generator().manual_seed(3))  # noqa: E731
    torch.testing.assert_close(draw(), draw(), atol=0, rtol=0)


def test_gp_prior_on_a_clustered_design_keeps_the_kernel_and_the_box() -> None:
    """y's covariance is still the kernel of the drawn x, and x stays in [x_low, x_high]."""
    low, high = -math.sqrt(3), math.sqrt(3)
    config = GPPriorConfig(
        kernel="matern52", num_features=2, lengthscale=0.7, outputscale=1.1, noise=0.05,
        x_distribution="clustered", x_low=low, x_high=high,
    )  # fmt: skip
    prior = GPPrior(config)
    assert prior.input_range() == (low, high)
    n_tasks = 20000
    batch = prior.sample(n_tasks, 0, 3, generator=torch.Generator().manual_seed(2))
    x = batch.x_qry.double().numpy()
    assert x.min() >= low - 1e-6 and x.max() <= high + 1e-6
    y = batch.y_qry.double().numpy()
    oracle = sk.ConstantKernel(1.1) * sk.Matern(np.full(2, 0.7), nu=2.5)
    k01 = oracle(np.zeros((1, 2)), x[:, 0] - x[:, 1])[0]
    resid = y[:, 0] * y[:, 1] - k01
    assert abs(resid.mean()) < STANDARD_ERRORS * resid.std() / math.sqrt(n_tasks)
    var = y[:, 2] ** 2 - (1.1 + 0.05)
    assert abs(var.mean()) < STANDARD_ERRORS * var.std() / math.sqrt(n_tasks)


@pytest.mark.parametrize("name", ["clustered", "uniform"])
def test_x_distribution_names_are_accepted(name: str) -> None:
    assert GPPriorConfig(x_distribution=name).x_distribution == name
