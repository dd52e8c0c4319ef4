"""The GP prior's linear part: y's covariance gains Σ_j v_j x_j x'_j, v_j = σ_f² λ_j / (d s²)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.gaussian_process import kernels as sk

import priors
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from tests.conftest import FLOAT32_ATOL, STANDARD_ERRORS

ROOT = Path(__file__).resolve().parents[2]
KS_MIN_PVALUE = 1e-3  # distribution checks: reject only clear mismatches
LINEAR_LOGNORMAL = Hyperprior(family="lognormal", a=-1.5, b=1.5)


@pytest.mark.parametrize("d", [1, 3])
def test_covariance_adds_the_linear_kernel_in_standardized_units(d: int) -> None:
    """y0·y1 averages σ_f² k(z0, z1) + σ_f² λ / d · z0·z1 over tasks (z: standardized x)."""
    config = GPPriorConfig(
        kernel="matern52", num_features=4, num_features_min=1, lengthscale=0.8,
        outputscale=1.3, noise=0.02, x_distribution="normal",
        lengthscale_scaling="sqrt", feature_rescale="sqrt", linear_weight=0.7,
    )  # fmt: skip
    n_tasks = 20000
    batch = GPPrior(config).sample(
        n_tasks, 0, 3, generator=torch.Generator().manual_seed(2), num_used_features=d
    )
    z = batch.x_qry.double().numpy()[:, :, :d] / math.sqrt(4 / d)
    y = batch.y_qry.double().numpy()
    matern = sk.ConstantKernel(1.3) * sk.Matern(np.full(d, 0.8 * math.sqrt(d)), nu=2.5)
    k01 = matern(np.zeros((1, d)), z[:, 0] - z[:, 1])[0]
    k01 = k01 + 1.3 * 0.7 / d * (z[:, 0] * z[:, 1]).sum(-1)
    resid = y[:, 0] * y[:, 1] - k01
    assert abs(resid.mean()) < STANDARD_ERRORS * resid.std() / math.sqrt(n_tasks)
    var = y[:, 2] ** 2 - (1.3 + 1.3 * 0.7 / d * (z[:, 2] ** 2).sum(-1) + 0.02)
    assert abs(var.mean()) < STANDARD_ERRORS * var.std() / math.sqrt(n_tasks)
    v = batch.meta["linear_variance"].double()
    expected = torch.zeros(4, dtype=torch.float64)
    expected[:d] = 1.3 * 0.7 / 4  # v_j = σ_f² λ / (d · D/d) in the model's units
    torch.testing.assert_close(v, expected.expand_as(v), atol=FLOAT32_ATOL, rtol=0)


def _covariance_from_meta(batch, task: int) -> np.ndarray:  # noqa: ANN001
    """K of one task rebuilt in numpy from its meta (sklearn's Matérn, a dot product, noise)."""
    x = torch.cat([batch.x_ctx[task], batch.x_qry[task]]).double().numpy()
    meta = {k: v[task].double().numpy() for k, v in batch.meta.items()}
    matern = sk.ConstantKernel(float(meta["outputscale"])) * sk.Matern(meta["lengthscale"], nu=2.5)
    linear = (x * meta["linear_variance"]) @ x.T
    return matern(x) + linear + float(meta["noise"]) * np.eye(len(x))


def test_draws_whiten_to_standard_normals_under_the_meta_covariance() -> None:
    """Per task, L⁻¹ y with K = LLᵀ rebuilt from meta is i.i.d. N(0, 1) (pooled KS test)."""
    config = dataclasses.replace(
        GPPriorConfig.general_purpose(num_features=5), linear_weight=LINEAR_LOGNORMAL
    )
    batch = GPPrior(config).sample(300, 12, 4, generator=torch.Generator().manual_seed(3))
    whitened = []
    for task in range(batch.batch_size):
        chol = np.linalg.cholesky(_covariance_from_meta(batch, task))
        y = torch.cat([batch.y_ctx[task], batch.y_qry[task]]).double().numpy()
        whitened.append(np.linalg.solve(chol, y))
    assert stats.kstest(np.concatenate(whitened), "norm").pvalue > KS_MIN_PVALUE


def test_linear_weights_follow_their_hyperprior_and_vanish_on_unused_features() -> None:
    config = dataclasses.replace(
        GPPriorConfig.general_purpose(num_features=6), linear_weight=LINEAR_LOGNORMAL
    )
    batch = GPPrior(config).sample(4000, 2, 1, generator=torch.Generator().manual_seed(4))
    lam = batch.meta["linear_weight"].double()
    assert stats.kstest((lam.log().flatten().numpy() + 1.5) / 1.5, "norm").pvalue > KS_MIN_PVALUE
    d = batch.meta["num_used_features"].double()[:, None]
    used = torch.arange(6) < d
    expected = batch.meta["outputscale"].double()[:, None] * lam * used / 6.0
    torch.testing.assert_close(
        batch.meta["linear_variance"].double(), expected, atol=FLOAT32_ATOL, rtol=1e-5
    )


def test_linear_part_config_round_trip_errors_and_the_fine_tune_toml() -> None:
    import cli

    config = dataclasses.replace(GPPriorConfig(num_features=2), linear_weight=0.5)
    assert GPPriorConfig.from_dict(config.to_dict()) == config
    assert not config.has_hyperpriors  # fixed λ: still one GP ...
    with pytest.raises(ValueError, match="linear part"):  # ... but not the exact reference's
        GPPrior(config).fixed_gp_hyperparameters()
    assert dataclasses.replace(config, linear_weight=LINEAR_LOGNORMAL).has_hyperpriors
    toml = cli.load_config(str(ROOT / "examples/configs/gp_lin_ft.toml"), [])
    prior = priors.make_prior("gp", toml["prior"])
    general = GPPriorConfig.general_purpose()
    assert prior.config == dataclasses.replace(general, linear_weight=LINEAR_LOGNORMAL)
    assert (toml["train"]["init_from"], toml["train"]["init_borders"]) == ("gp", "prior")
