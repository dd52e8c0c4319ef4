"""The Student-t-process prior: t marginals, its scale-mixture structure, config and wiring.

Kernels are recomputed with scikit-learn, and distributions come from scipy.stats, so the
checks share no code with the sampler (the NNGP kernel has its own tests in test_nngp.py).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.gaussian_process import kernels as sk

import priors
from pfnkit.data import Batch
from pfnkit.validation import VALIDATORS
from priors.nngp import NNGPKernelConfig, nngp_kernel_matrix
from priors.student_t import StudentTPrior, StudentTPriorConfig
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

ROOT = Path(__file__).resolve().parents[2]
KS_P_VALUE_MIN = 1e-3  # distributional checks: reject a sample when the KS p-value is below this
N_TASKS = 20000


def _base_variance(prior: StudentTPrior, x_BND: torch.Tensor) -> np.ndarray:
    """k(x, x) + noise at each point, (B, N), from an oracle independent of the sampler."""
    cfg = prior.config
    if cfg.kernel == "nngp":
        k = nngp_kernel_matrix(x_BND, x_BND, **cfg.nngp.to_dict()).diagonal(dim1=-2, dim2=-1)
        return k.numpy() + cfg.noise
    return np.full(x_BND.shape[:2], cfg.outputscale + cfg.noise)


def _sklearn_covariance(config: StudentTPriorConfig, x_ND: np.ndarray) -> np.ndarray:
    ls = np.array(config.lengthscale)
    nu = {"rbf": None, "matern12": 0.5, "matern32": 1.5, "matern52": 2.5}[config.kernel]
    base = sk.RBF(ls) if nu is None else sk.Matern(ls, nu=nu)
    return config.outputscale * base(x_ND) + config.noise * np.eye(len(x_ND))


@pytest.mark.parametrize(
    "config",
    [
        StudentTPriorConfig(),  # the issue's tp-rbf: y ~ t_4 with scale² (2/2)(1 + 0.01)
        StudentTPriorConfig(
            kernel="matern52",
            num_features=2,
            scale_concentration=3.5,
            scale_rate=1.0,
            outputscale=0.5,
        ),
        StudentTPriorConfig(
            kernel="nngp",
            num_features=3,
            x_distribution="normal",
            nngp=NNGPKernelConfig(activation="relu", depth=2),
        ),
    ],
    ids=["tp-rbf", "matern52", "nngp"],
)
def test_marginal_at_one_point_is_a_scaled_t(config: StudentTPriorConfig) -> None:
    """y(x) ~ t_{2α}(0, (β/α)(k(x, x) + σ_n²)): compare standardized draws with scipy's t."""
    prior = StudentTPrior(config)
    batch = prior.sample(N_TASKS, 0, 1, generator=torch.Generator().manual_seed(0))
    alpha, beta = config.scale_concentration, config.scale_rate
    variance = (beta / alpha) * _base_variance(prior, batch.x_qry.double())[:, 0]
    standardized = batch.y_qry[:, 0].double().numpy() / np.sqrt(variance)
    result = stats.kstest(standardized, stats.t(df=2 * alpha).cdf)
    assert result.pvalue > KS_P_VALUE_MIN, result


def test_the_scale_is_inverse_gamma_and_recorded() -> None:
    config = StudentTPriorConfig(scale_concentration=2.5, scale_rate=0.7)
    batch = StudentTPrior(config).sample(N_TASKS, 1, 1, generator=torch.Generator().manual_seed(1))
    scale = batch.meta["scale"].double().numpy()
    result = stats.kstest(scale, stats.invgamma(a=2.5, scale=0.7).cdf)
    assert result.pvalue > KS_P_VALUE_MIN, result
    expected_keys = {
        "scale",
        "noise",
        "scale_concentration",
        "scale_rate",
        "lengthscale",
        "outputscale",
    }
    assert set(batch.meta) == expected_keys
    assert batch.meta["lengthscale"].shape == (N_TASKS, 1)
    assert float(batch.meta["scale_rate"][0]) == pytest.approx(0.7)
    nngp = StudentTPrior(StudentTPriorConfig(kernel="nngp")).sample(
        2, 1, 1, generator=torch.Generator().manual_seed(0)
    )
    assert {"weight_variance", "bias_variance"} <= set(nngp.meta)
    assert "lengthscale" not in nngp.meta


@pytest.mark.parametrize("kernel", ["rbf", "matern32"])
def test_given_its_scale_a_task_is_a_gp_draw(kernel: str) -> None:
    """Whitened by the scale and the (sklearn) covariance, targets are i.i.d. N(0, 1)."""
    config = StudentTPriorConfig(kernel=kernel, num_features=2, lengthscale=(0.3, 0.6))
    n_tasks, n_points = 4000, 6
    batch = StudentTPrior(config).sample(n_tasks, 4, 2, generator=torch.Generator().manual_seed(2))
    x = torch.cat([batch.x_ctx, batch.x_qry], dim=1).double().numpy()
    y = torch.cat([batch.y_ctx, batch.y_qry], dim=1).double().numpy()
    scale = batch.meta["scale"].double().numpy()
    z = (
        np.stack(
            [
                np.linalg.solve(np.linalg.cholesky(_sklearn_covariance(config, x[b])), y[b])
                for b in range(n_tasks)
            ]
        )
        / np.sqrt(scale)[:, None]
    )
    result = stats.kstest(z.ravel(), stats.norm.cdf)
    assert result.pvalue > KS_P_VALUE_MIN, result
    products = z[:, :, None] * z[:, None, :] - np.eye(n_points)  # E[z zᵀ] = I
    se = products.std(0) / math.sqrt(n_tasks)
    assert np.abs(products.mean(0) / se).max() < STANDARD_ERRORS
    # without the scale, the same targets are not Gaussian: their kurtosis is that of a t_4
    assert stats.kurtosis((z * np.sqrt(scale)[:, None]).ravel()) > 1.0


def test_seeds_reproduce_and_differ() -> None:
    prior = StudentTPrior(StudentTPriorConfig(kernel="nngp", num_features=2))

    def draw(seed: int) -> Batch:
        return prior.sample(5, 7, 3, generator=torch.Generator().manual_seed(seed))

    first, again, other = draw(0), draw(0), draw(1)
    for name in ("x_ctx", "y_ctx", "x_qry", "y_qry"):
        assert torch.equal(getattr(first, name), getattr(again, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))
    assert torch.equal(first.meta["scale"], again.meta["scale"])
    assert not torch.equal(first.meta["scale"], other.meta["scale"])


def test_kernel_matrix_and_hyperparameters_for_the_exact_reference() -> None:
    config = StudentTPriorConfig(
        kernel="matern52",
        num_features=2,
        lengthscale=(0.3, 0.6),
        outputscale=1.7,
        noise=0.05,
        scale_rate=3.0,
    )
    prior = StudentTPrior(config)
    x = torch.rand(2, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = prior.kernel_matrix(x, x)
    expected = np.stack([_sklearn_covariance(config, x[b].numpy()) for b in range(2)])
    expected -= 0.05 * np.eye(5)
    torch.testing.assert_close(k, torch.from_numpy(expected), atol=FLOAT64_ATOL, rtol=0)
    assert prior.student_t_hyperparameters() == {"concentration": 2.0, "rate": 3.0, "noise": 0.05}


def test_config_round_trips_from_plain_data_and_rejects_bad_values() -> None:
    config = StudentTPriorConfig.from_dict(
        {"kernel": "nngp", "num_features": 2, "nngp": {"activation": "erf", "depth": 3}}
    )
    assert config.nngp == NNGPKernelConfig(activation="erf", depth=3)
    assert config.lengthscale == (0.2, 0.2)
    assert StudentTPriorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown kernel"):
        StudentTPriorConfig(kernel="cosine")
    with pytest.raises(ValueError, match="lengthscales"):
        StudentTPriorConfig(num_features=2, lengthscale=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="scale_concentration"):
        StudentTPriorConfig(scale_concentration=0.0)
    with pytest.raises(ValueError, match="noise"):
        StudentTPriorConfig(noise=-1.0)
    with pytest.raises(ValueError, match="activation"):
        StudentTPriorConfig(kernel="nngp", nngp={"activation": "tanh"})


def test_wiring_sizes_and_card_mapping() -> None:
    prior = priors.make_prior("tp", {"num_features": 3})
    assert priors.REGISTRY["tp"] == (StudentTPrior, StudentTPriorConfig)
    assert prior.model_sizes("pfn") == {"num_features": 3}
    with pytest.raises(ValueError, match="kind = 'pfn'"):
        prior.model_sizes("dt")
    mapping = {"x": "standardize", "y": "standardize", "features": "pad"}
    assert prior.card_data_mapping(mapping) == mapping
    with pytest.raises(ValueError, match="pad_rescale"):
        prior.card_data_mapping({**mapping, "pad_rescale": "sqrt"})


def test_tp_rbf_toml_is_the_issue_prior_fine_tuned_from_gp_rbf() -> None:
    import cli

    config = cli.load_config(str(ROOT / "examples/configs/tp_rbf.toml"), [])
    prior = priors.make_prior("tp", config["prior"])
    assert prior.config == StudentTPriorConfig(
        kernel="rbf",
        num_features=1,
        lengthscale=0.2,
        outputscale=1.0,
        noise=0.01,
        scale_concentration=2.0,
        scale_rate=2.0,
        x_distribution="uniform",
        x_low=0.0,
        x_high=1.0,
    )
    gp_rbf = tomllib.loads((ROOT / "examples/configs/gp_rbf.toml").read_text())
    assert config["model"] == gp_rbf["model"]
    assert config["train"]["init_from"] == "gp-rbf" and config["train"]["init_borders"] == "prior"
    assert cli._model_config(prior, config["model"]).num_features == 1
    assert config["card"]["reference"] == "tp-exact" and "tp-exact" in VALIDATORS
