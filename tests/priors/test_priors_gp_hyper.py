"""The GP prior's hyperprior mode: per-task feature counts, √d scalings, and the old defaults."""

from __future__ import annotations

import json
import math
import tomllib
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

# Draws of the prior before hyperprior mode existed (seed 7, 3 tasks, 4 + 2 points):
# the defaults must keep producing them from the same generator.
OLD_Y_QRY = {
    "checkpoints/gp-rbf.json": [
        [0.23163780570030212, 0.023312242701649666],
        [-0.01631753332912922, 0.04507385566830635],
        [-0.6228117346763611, -1.3380399942398071],
    ],
    "tests/data/gp10-tiny.json": [
        [-0.5248128175735474, -1.2270509004592896],
        [-0.07166074216365814, -0.07558822631835938],
        [-0.38843289017677307, -1.554115653038025],
    ],
}
OLD_X_CTX_SUM = {"checkpoints/gp-rbf.json": 5.6244976521, "tests/data/gp10-tiny.json": 6.3181750635}
RECORDED_SUM_ATOL = 1e-8  # a recorded float64 sum, printed to 10 decimals


@pytest.mark.parametrize("card", sorted(OLD_Y_QRY))
def test_old_cards_load_and_reproduce_the_old_draws(card: str) -> None:
    stored = json.loads((ROOT / card).read_text())["prior_config"]
    prior = priors.make_prior("gp", stored)
    assert prior.config.num_features_min == prior.config.num_features
    assert (prior.config.x_distribution, prior.config.feature_rescale) == ("uniform", "none")
    assert prior.config.lengthscale_scaling == "none"
    assert {k: v for k, v in prior.config.to_dict().items() if k in stored} == stored
    assert GPPriorConfig.from_dict(prior.config.to_dict()) == prior.config
    batch = prior.sample(3, 4, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        batch.y_qry, torch.tensor(OLD_Y_QRY[card]), atol=FLOAT32_ATOL, rtol=0
    )
    assert float(batch.x_ctx.double().sum()) == pytest.approx(
        OLD_X_CTX_SUM[card], abs=RECORDED_SUM_ATOL
    )
    assert torch.equal(batch.meta["num_used_features"], torch.full((3,), 1.0 * batch.num_features))


def test_general_purpose_config_matches_the_example_toml() -> None:
    section = tomllib.loads((ROOT / "examples/configs/gp_hyper.toml").read_text())["prior"]
    config = GPPriorConfig.from_dict(section)
    assert config == GPPriorConfig.general_purpose()
    assert config.has_hyperpriors and config.kernel == "matern52"
    assert (config.num_features_min, config.num_features) == (1, 10)
    assert GPPriorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_features_beyond_d_are_zero_and_used_ones_rescaled() -> None:
    config = GPPriorConfig.general_purpose(num_features=6)
    batch = GPPrior(config).sample(4000, 8, 8, generator=torch.Generator().manual_seed(0))
    d_B = batch.meta["num_used_features"].long()
    assert set(d_B.tolist()) == set(range(1, 7))
    x_BTD = torch.cat([batch.x_ctx, batch.x_qry], dim=1).double()
    used_BD = torch.arange(6) < d_B[:, None]
    assert torch.all(x_BTD[~used_BD[:, None, :].expand_as(x_BTD)] == 0)
    assert torch.all(x_BTD[used_BD[:, None, :].expand_as(x_BTD)] != 0)
    # used features are N(0, 1) times √(D / d): standardized back, they are N(0, 1)
    x_std = (x_BTD / (6 / d_B.double()).sqrt()[:, None, None])[used_BD[:, None, :].expand_as(x_BTD)]
    assert stats.kstest(x_std.numpy(), "norm").pvalue > KS_MIN_PVALUE
    # lengthscales in model units are √d (scaling) · √(D/d) (rescale) = √D times the draw
    drawn = (batch.meta["lengthscale"].double() / math.sqrt(6)).log().flatten().numpy()
    assert stats.kstest(drawn, "norm").pvalue > KS_MIN_PVALUE
    noise = batch.meta["noise"].double().numpy()
    assert stats.kstest(noise, stats.loguniform(1e-3, 1.0).cdf).pvalue > KS_MIN_PVALUE
    log_out = batch.meta["outputscale"].double().log().numpy()
    assert stats.kstest(log_out / 0.5, "norm").pvalue > KS_MIN_PVALUE


@pytest.mark.parametrize("d", [1, 3])
def test_covariance_matches_the_kernel_in_standardized_units(d: int) -> None:
    """With d fixed, y's covariance is the kernel on x_std with lengthscale √d · ℓ_draw."""
    config = GPPriorConfig(
        kernel="matern52", num_features=4, num_features_min=1, lengthscale=0.8,
        outputscale=1.3, noise=0.02, x_distribution="normal",
        lengthscale_scaling="sqrt", feature_rescale="sqrt",
    )  # fmt: skip
    n_tasks = 20000
    batch = GPPrior(config).sample(
        n_tasks, 0, 3, generator=torch.Generator().manual_seed(1), num_used_features=d
    )
    x_std = batch.x_qry.double().numpy()[:, :, :d] / math.sqrt(4 / d)
    y = batch.y_qry.double().numpy()
    oracle = sk.ConstantKernel(1.3) * sk.Matern(np.full(d, 0.8 * math.sqrt(d)), nu=2.5)
    k01 = oracle(np.zeros((1, d)), x_std[:, 0] - x_std[:, 1])[0]
    resid = y[:, 0] * y[:, 1] - k01
    assert abs(resid.mean()) < STANDARD_ERRORS * resid.std() / math.sqrt(n_tasks)
    var = y[:, 2] ** 2 - (1.3 + 0.02)
    assert abs(var.mean()) < STANDARD_ERRORS * var.std() / math.sqrt(n_tasks)
    ls = batch.meta["lengthscale"].double()
    torch.testing.assert_close(
        ls, torch.full_like(ls, 0.8 * math.sqrt(4)), atol=FLOAT32_ATOL, rtol=0
    )


def test_num_used_features_is_checked_and_config_validated() -> None:
    prior = GPPrior(GPPriorConfig.general_purpose(num_features=3))
    with pytest.raises(ValueError, match=r"outside this prior's range \[1, 3\]"):
        prior.sample(2, 3, 3, generator=torch.Generator(), num_used_features=4)
    with pytest.raises(ValueError, match="num_features_min"):
        GPPriorConfig(num_features=3, num_features_min=5)
    with pytest.raises(ValueError, match="x_distribution"):
        GPPriorConfig(x_distribution="cauchy")
    with pytest.raises(ValueError, match="feature_rescale"):
        GPPriorConfig(feature_rescale="linear")
    fixed = GPPriorConfig(num_features=2, num_features_min=1)
    assert not fixed.has_hyperpriors
    assert GPPriorConfig(noise=Hyperprior(family="lognormal", a=-3.0, b=1.0)).has_hyperpriors


def test_gp_hyper_toml_builds_its_model_training_and_card() -> None:
    import cli
    from pfnkit.training import TrainConfig

    config = cli.load_config(str(ROOT / "examples/configs/gp_hyper.toml"), [])
    prior = priors.make_prior("gp", config["prior"])
    model_config = cli._model_config(prior, config["model"])
    assert (model_config.num_features, model_config.n_layers, model_config.n_bars) == (10, 6, 1000)
    train = TrainConfig.from_dict(config["train"])
    assert (train.n_ctx_max, train.batch_size, train.max_minutes) == (128, 64, 150)
    mapping = config["card"]["data_mapping"]
    assert cli._card_data_mapping(prior, mapping) == mapping  # pad_rescale agrees with the prior
    assert set(config["card"]["tolerances"]) == {"nll_gap_mean", "nll_gap_max"}
