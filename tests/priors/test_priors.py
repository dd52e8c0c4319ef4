"""Prior contract over priors.REGISTRY, and the GP prior against independent kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.gaussian_process import kernels as sk

import priors
from pfnkit.data import Batch, Prior
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from tests.conftest import STANDARD_ERRORS


@pytest.mark.parametrize("name", sorted(priors.REGISTRY))
def test_registered_prior_contract(name: str) -> None:
    prior = priors.make_prior(name)
    assert isinstance(prior, Prior)
    batch = prior.sample(3, 5, 4, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch)
    # priors over parameters (gmm) have observations but no query points
    assert batch.x_ctx.shape[:2] == (3, 5) and batch.x_qry.shape[:2] in ((3, 4), (3, 0))

    def tensors(b: Batch) -> list[torch.Tensor]:
        return [b.x_ctx, b.y_ctx, b.x_qry, b.y_qry, *(b.meta[k] for k in sorted(b.meta))]

    for tensor in tensors(batch):
        assert torch.isfinite(tensor).all()
    again = prior.sample(3, 5, 4, generator=torch.Generator().manual_seed(0))
    for first, second in zip(tensors(batch), tensors(again), strict=True):
        torch.testing.assert_close(first, second, atol=0, rtol=0)
    other = prior.sample(3, 5, 4, generator=torch.Generator().manual_seed(1))
    differs = [
        a.shape != b.shape or not torch.equal(a, b)
        for a, b in zip(tensors(batch), tensors(other), strict=False)
    ]
    assert any(differs)
    config_cls = priors.REGISTRY[name][1]
    assert config_cls.from_dict(prior.config.to_dict()) == prior.config


def test_unknown_prior_lists_registered_ones() -> None:
    with pytest.raises(KeyError, match="registered priors"):
        priors.make_prior("nope")


def _sklearn_kernel(name: str, lengthscale: np.ndarray, outputscale: float) -> sk.Kernel:
    if name == "rbf":
        base = sk.RBF(lengthscale)
    else:
        base = sk.Matern(lengthscale, nu={"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}[name])
    return sk.ConstantKernel(outputscale) * base


@pytest.mark.parametrize("kernel", ["rbf", "matern12", "matern32", "matern52"])
def test_gp_prior_covariance_matches_kernel(kernel: str) -> None:
    """Fix the inputs by drawing many tasks and comparing sample covariance at fixed points."""
    lengthscale = (0.3, 0.7)
    config = GPPriorConfig(
        kernel=kernel, num_features=2, lengthscale=lengthscale, outputscale=1.5, noise=0.05
    )
    prior = GPPrior(config)
    n_tasks = 20000
    batch = prior.sample(n_tasks, 0, 3, generator=torch.Generator().manual_seed(0))
    x = batch.x_qry.double().numpy()
    y = batch.y_qry.double().numpy()
    # E[y_0 y_1 | x] = k(x_0, x_1) and E[y_2² | x] = outputscale + noise, per task. The
    # kernel is stationary, so k(x_0, x_1) = k(0, x_0 - x_1): one vectorised oracle call.
    oracle = _sklearn_kernel(kernel, np.array(lengthscale), 1.5)
    k01 = oracle(np.zeros((1, 2)), x[:, 0] - x[:, 1])[0]
    prod01 = y[:, 0] * y[:, 1]
    resid = prod01 - k01
    assert abs(resid.mean()) < STANDARD_ERRORS * resid.std() / math.sqrt(n_tasks)
    var = y[:, 2] ** 2 - (1.5 + 0.05)
    assert abs(var.mean()) < STANDARD_ERRORS * var.std() / math.sqrt(n_tasks)


def test_gp_prior_inputs_are_uniform_on_the_box() -> None:
    prior = GPPrior(GPPriorConfig(x_low=-2.0, x_high=3.0))
    x = prior.sample(200, 10, 10, generator=torch.Generator().manual_seed(0)).x_ctx
    assert x.min() >= -2.0 and x.max() <= 3.0
    assert abs(float(x.mean()) - 0.5) < STANDARD_ERRORS * 5 / math.sqrt(12 * x.numel())


def test_hyperpriors_are_drawn_per_task_and_recorded() -> None:
    config = GPPriorConfig(
        num_features=3,
        lengthscale=Hyperprior(family="lognormal", a=math.log(0.5), b=0.4),
        outputscale=Hyperprior(family="uniform", a=0.5, b=2.0),
        noise=Hyperprior(family="loguniform", a=1e-3, b=1e-1),
    )
    batch = GPPrior(config).sample(4000, 2, 2, generator=torch.Generator().manual_seed(0))
    ls = batch.meta["lengthscale"].double()
    assert ls.shape == (4000, 3)
    log_ls = ls.log()
    se = 0.4 / math.sqrt(log_ls.numel())
    assert abs(float(log_ls.mean()) - math.log(0.5)) < STANDARD_ERRORS * se
    out = batch.meta["outputscale"]
    assert out.min() >= 0.5 and out.max() <= 2.0
    noise = batch.meta["noise"]
    assert noise.min() >= 1e-3 and noise.max() <= 1e-1


def test_gp_prior_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown kernel"):
        GPPriorConfig(kernel="cosine")
    with pytest.raises(ValueError, match="ARD lengthscales"):
        GPPriorConfig(num_features=2, lengthscale=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="positive"):
        Hyperprior(family="fixed", a=-1.0)
