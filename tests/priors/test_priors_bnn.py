"""The BNN prior: Batch layout, weights vs data, log densities against independent formulas."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import erf
from scipy.stats import norm
from torch.distributions import Bernoulli, Categorical, Normal

import priors
from pfnkit.data import Batch
from priors.bnn import BNNPrior, BNNPriorConfig, mlp_forward, unflatten_parameters
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "num_features": 2,
    "depth": 1,
    "width": 8,
    "activation": "tanh",
    "weight_std": 1.0,
    "bias_std": 1.0,
    "output": "classification",
    "n_classes": 2,
    "binary_logit": True,
}
LIKELIHOODS = {
    "regression": {"output": "regression", "noise_std": 0.3},
    "categorical": {"output": "classification", "n_classes": 3},
    "binary": {"output": "classification", "n_classes": 2, "binary_logit": True},
}
HYPER = {
    "mode": "hyperprior",
    "depth_min": 1,
    "depth_max": 3,
    "width_min": 2,
    "width_max": 6,
    "weight_std": {"family": "uniform", "a": 0.5, "b": 1.5},
    "bias_std": {"family": "loguniform", "a": 0.1, "b": 1.0},
    "noise_std": {"family": "loguniform", "a": 0.05, "b": 0.5},
}
_NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda h: np.maximum(h, 0.0),
    "gelu": lambda h: 0.5 * h * (1.0 + erf(h / math.sqrt(2.0))),
    "sin": np.sin,
    "identity": lambda h: h,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _np_layers(flat: np.ndarray, sizes: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The documented layout, read independently: per layer W (fan_in, fan_out), then b."""
    layers, k = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        weight = flat[k : k + fan_in * fan_out].reshape(fan_in, fan_out)
        k += fan_in * fan_out
        layers.append((weight, flat[k : k + fan_out]))
        k += fan_out
    assert k == flat.shape[0]
    return layers


def _np_forward(flat: np.ndarray, sizes: tuple[int, ...], activation: str, x: np.ndarray):
    """One network's outputs (N, O) in numpy, float64."""
    h = x
    layers = _np_layers(flat, sizes)
    for index, (weight, bias) in enumerate(layers):
        h = h @ weight + bias
        if index < len(layers) - 1:
            h = _NP_ACTIVATIONS[activation](h)
    return h


def _is_weight(sizes: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(
        [
            np.r_[np.ones(i * o, bool), np.zeros(o, bool)]
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        ]
    )


@pytest.mark.parametrize("output", sorted(LIKELIHOODS))
@pytest.mark.parametrize("mode", ["fixed", "hyperprior"])
@pytest.mark.parametrize("n_ctx", [1, 6])
def test_batch_layout(output: str, mode: str, n_ctx: int) -> None:
    extra = HYPER if mode == "hyperprior" else {}
    prior = BNNPrior(BNNPriorConfig(**{"num_features": 3, **LIKELIHOODS[output], **extra}))
    batch = prior.sample(5, n_ctx, 4, generator=_gen())
    assert isinstance(batch, Batch)
    assert batch.x_ctx.shape == (5, n_ctx, 3) and batch.y_ctx.shape == (5, n_ctx)
    assert batch.x_qry.shape == (5, 4, 3) and batch.y_qry.shape == (5, 4)
    expected = {"weights"} | ({"noise_std"} if output == "regression" else set())
    if mode == "fixed":
        assert batch.meta["weights"].shape == (5, prior.n_parameters)
    else:
        expected |= {"depth", "width", "weight_std", "bias_std"}
        assert all(batch.meta[k].shape == (5,) for k in expected - {"weights"})
    assert set(batch.meta) == expected
    for tensor in (batch.x_ctx, batch.y_ctx, batch.x_qry, batch.y_qry, *batch.meta.values()):
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()


def test_float64_sampling_and_bad_sizes() -> None:
    batch = BNNPrior().sample(2, 3, 1, generator=_gen(), dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in (batch.x_ctx, batch.y_qry, batch.meta["weights"]))
    with pytest.raises(ValueError, match="n_ctx"):
        BNNPrior().sample(2, -1, 1, generator=_gen())


@pytest.mark.parametrize("mode", ["fixed", "hyperprior"])
def test_same_seed_same_batch(mode: str) -> None:
    prior = BNNPrior(BNNPriorConfig(**(HYPER if mode == "hyperprior" else {})))
    first, again = (prior.sample(4, 6, 3, generator=_gen(3)) for _ in range(2))
    other = prior.sample(4, 6, 3, generator=_gen(4))
    for name in ("x_ctx", "y_ctx", "x_qry", "y_qry"):
        torch.testing.assert_close(getattr(first, name), getattr(again, name), atol=0, rtol=0)
    for key in first.meta:
        torch.testing.assert_close(first.meta[key], again.meta[key], atol=0, rtol=0)
    assert not torch.equal(first.y_ctx, other.y_ctx)


@pytest.mark.parametrize("output", ["categorical", "binary"])
def test_labels_are_classes(output: str) -> None:
    kwargs = LIKELIHOODS[output] if output == "binary" else {**LIKELIHOODS[output], "n_classes": 4}
    config = BNNPriorConfig(**kwargs)
    labels = BNNPrior(config).sample(200, 10, 10, generator=_gen())
    y = torch.cat([labels.y_ctx, labels.y_qry], dim=1)
    assert set(y.unique().tolist()) == set(range(config.n_classes))


def test_shipped_prior_has_33_parameters() -> None:
    prior = BNNPrior(BNNPriorConfig(**SHIPPED))
    assert prior.config.layer_sizes == (2, 8, 1)
    assert prior.n_parameters == 33
    layers = prior.unflatten(torch.zeros(4, 33))
    assert [(w.shape, b.shape) for w, b in layers] == [((4, 2, 8), (4, 8)), ((4, 8, 1), (4, 1))]


def test_config_file_is_the_shipped_prior() -> None:
    config = tomllib.loads((ROOT / "examples/configs/bnn_clf.toml").read_text())
    prior = priors.make_prior("bnn", config["prior"])
    assert prior.config == BNNPriorConfig(**SHIPPED)
    assert prior.n_parameters == 33
    assert config["train"]["n_ctx_min"] == 1 and config["train"]["n_ctx_max"] == 100


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "sin", "identity"])
@pytest.mark.parametrize("depth", [0, 1, 3])
def test_forward_matches_a_manual_loop(activation: str, depth: int) -> None:
    prior = BNNPrior(
        BNNPriorConfig(
            num_features=3,
            depth=depth,
            width=5,
            activation=activation,
            **LIKELIHOODS["categorical"],
        )
    )
    params = torch.randn(4, prior.n_parameters, generator=_gen(1), dtype=torch.float64)
    x = torch.randn(7, 3, generator=_gen(2), dtype=torch.float64)
    batched = prior.forward_fn(params, x)
    assert batched.shape == (4, 7, 3)
    sizes = prior.config.layer_sizes
    for s in range(4):
        expected = _np_forward(params[s].numpy(), sizes, activation, x.numpy())
        np.testing.assert_allclose(batched[s].numpy(), expected, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(prior.forward_fn(params[1], x), batched[1], atol=0, rtol=0)
    # one input set per network, as the sampler uses it
    x_per_task = torch.randn(4, 7, 3, generator=_gen(3), dtype=torch.float64)
    per_task = mlp_forward(unflatten_parameters(params, sizes), x_per_task, activation)
    for s in range(4):
        expected = _np_forward(params[s].numpy(), sizes, activation, x_per_task[s].numpy())
        np.testing.assert_allclose(per_task[s].numpy(), expected, atol=FLOAT64_ATOL, rtol=0)


def test_log_prior_is_a_sum_of_independent_normals() -> None:
    config = BNNPriorConfig(num_features=2, depth=2, width=4, weight_std=0.7, bias_std=2.5)
    prior = BNNPrior(config)
    params = 2 * torch.randn(5, prior.n_parameters, generator=_gen(1), dtype=torch.float64)
    is_weight = _is_weight(config.layer_sizes)
    scale = np.where(is_weight, 0.7, 2.5)
    expected = norm.logpdf(params.numpy(), scale=scale).sum(-1)
    np.testing.assert_allclose(prior.log_prior(params).numpy(), expected, rtol=FLOAT64_ATOL)


@pytest.mark.parametrize("output", sorted(LIKELIHOODS))
def test_log_likelihood_and_predictive_match_torch_distributions(output: str) -> None:
    prior = BNNPrior(BNNPriorConfig(num_features=2, width=4, **LIKELIHOODS[output]))
    batch = prior.sample(1, 9, 0, generator=_gen(), dtype=torch.float64)
    x, y = batch.x_ctx[0], batch.y_ctx[0]
    params = torch.randn(3, prior.n_parameters, generator=_gen(1), dtype=torch.float64)
    batched = prior.log_likelihood(params, x, y)
    assert batched.shape == (3,)
    for s in range(3):
        f = torch.from_numpy(
            _np_forward(params[s].numpy(), prior.config.layer_sizes, "tanh", x.numpy())
        )
        if output == "regression":
            dist = Normal(f[:, 0], 0.3)
        elif output == "binary":
            dist = Bernoulli(logits=f[:, 0])
        else:
            dist = Categorical(logits=f)
        expected = dist.log_prob(y).sum()
        torch.testing.assert_close(batched[s], expected, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL)
    predictive = prior.predictive(params, x)
    assert predictive.batch_shape == (3, 9)
    torch.testing.assert_close(
        predictive.log_prob(y).sum(-1), batched, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL
    )
    assert prior.predictive(params, x[:0]).batch_shape == (3, 0)
    torch.testing.assert_close(
        prior.log_likelihood(params, x[:0], y[:0]), torch.zeros(3, dtype=torch.float64)
    )


@pytest.mark.parametrize("output", sorted(LIKELIHOODS))
def test_log_joint_is_finite_and_differentiable(output: str) -> None:
    prior = BNNPrior(
        BNNPriorConfig(num_features=2, width=3, activation="gelu", **LIKELIHOODS[output])
    )
    task = prior.sample(1, 6, 0, generator=_gen(), dtype=torch.float64)
    params = torch.randn(2, prior.n_parameters, generator=_gen(1), dtype=torch.float64)
    assert torch.isfinite(prior.log_joint(params, task)).all()
    params.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: prior.log_joint(p, task), (params,))
    single = prior.log_joint(params[0].detach(), task)
    assert single.ndim == 0


def test_binary_labels_follow_the_sigmoid() -> None:
    prior = BNNPrior(BNNPriorConfig(**SHIPPED))
    batch = prior.sample(2000, 20, 0, generator=_gen(), dtype=torch.float64)
    layers = unflatten_parameters(batch.meta["weights"], prior.config.layer_sizes)
    prob = torch.sigmoid(mlp_forward(layers, batch.x_ctx, "tanh")[..., 0])
    y, prob = batch.y_ctx.flatten(), prob.flatten()
    se = float((y - prob).std()) / math.sqrt(y.numel())
    assert abs(float(y.mean() - prob.mean())) < STANDARD_ERRORS * se


def test_regression_residuals_have_the_noise_variance() -> None:
    prior = BNNPrior(BNNPriorConfig(num_features=2, depth=2, width=6, **LIKELIHOODS["regression"]))
    batch = prior.sample(500, 20, 10, generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(
        batch.meta["noise_std"], torch.full((500,), 0.3, dtype=torch.float64)
    )
    f_ctx = mlp_forward(prior.unflatten(batch.meta["weights"]), batch.x_ctx, "tanh")[..., 0]
    f_qry = mlp_forward(prior.unflatten(batch.meta["weights"]), batch.x_qry, "tanh")[..., 0]
    resid = torch.cat([batch.y_ctx - f_ctx, batch.y_qry - f_qry], dim=1).flatten()
    se = float(resid.std()) / math.sqrt(resid.numel())
    assert abs(float(resid.mean())) < STANDARD_ERRORS * se
    sq = resid.pow(2) - 0.09
    assert abs(float(sq.mean())) < STANDARD_ERRORS * float(sq.std()) / math.sqrt(sq.numel())


def test_categorical_labels_are_likeliest_under_their_own_weights() -> None:
    prior = BNNPrior(BNNPriorConfig(num_features=2, width=6, **LIKELIHOODS["categorical"]))
    batch = prior.sample(200, 30, 0, generator=_gen(), dtype=torch.float64)
    shuffled = batch.meta["weights"].roll(1, dims=0)
    gaps = torch.stack(
        [
            prior.log_likelihood(batch.meta["weights"][b], batch.x_ctx[b], batch.y_ctx[b])
            - prior.log_likelihood(shuffled[b], batch.x_ctx[b], batch.y_ctx[b])
            for b in range(200)
        ]
    )
    assert float(gaps.mean()) > STANDARD_ERRORS * float(gaps.std()) / math.sqrt(200)


def test_weight_and_bias_scales() -> None:
    config = BNNPriorConfig(num_features=2, depth=1, width=4, weight_std=0.5, bias_std=2.0)
    weights = BNNPrior(config).sample(4000, 1, 0, generator=_gen(), dtype=torch.float64)
    params = weights.meta["weights"].numpy()
    is_weight = _is_weight(config.layer_sizes)
    for values, var in ((params[:, is_weight], 0.25), (params[:, ~is_weight], 4.0)):
        sq = values.flatten() ** 2 - var
        assert abs(sq.mean()) < STANDARD_ERRORS * sq.std() / math.sqrt(sq.size)


@pytest.mark.parametrize("x_dist", ["normal", "uniform"])
def test_input_distribution(x_dist: str) -> None:
    config = BNNPriorConfig(num_features=3, x_dist=x_dist, x_low=-2.0, x_high=4.0)
    x = BNNPrior(config).sample(300, 10, 10, generator=_gen(), dtype=torch.float64).x_qry
    mean, var = (0.0, 1.0) if x_dist == "normal" else (1.0, 36.0 / 12.0)
    if x_dist == "uniform":
        assert x.min() >= -2.0 and x.max() <= 4.0
    assert abs(float(x.mean()) - mean) < STANDARD_ERRORS * math.sqrt(var / x.numel())
    sq = (x - mean).pow(2) - var
    assert abs(float(sq.mean())) < STANDARD_ERRORS * float(sq.std()) / math.sqrt(x.numel())


def test_hyperprior_architecture_and_padding() -> None:
    prior = BNNPrior(BNNPriorConfig(**{"num_features": 2, **LIKELIHOODS["regression"], **HYPER}))
    depths = set()
    for seed in range(30):
        batch = prior.sample(8, 5, 0, generator=_gen(seed), dtype=torch.float64)
        meta = batch.meta
        depth = int(meta["depth"][0])
        assert (meta["depth"] == depth).all()
        depths.add(depth)
        assert meta["width"].min() >= 2 and meta["width"].max() <= 6
        assert ((meta["weight_std"] >= 0.5) & (meta["weight_std"] <= 1.5)).all()
        assert ((meta["noise_std"] >= 0.05) & (meta["noise_std"] <= 0.5)).all()
        sizes = (2, *(6,) * depth, 1)
        for b in range(8):
            width = int(meta["width"][b])
            layers = _np_layers(meta["weights"][b].numpy(), sizes)
            narrow = []
            for index, (weight, bias) in enumerate(layers):
                rows = slice(None) if index == 0 else slice(width)
                cols = slice(None) if index == depth else slice(width)
                assert np.count_nonzero(weight) == np.count_nonzero(weight[rows, cols])
                assert np.count_nonzero(bias) == np.count_nonzero(bias[cols])
                narrow.append(np.r_[weight[rows, cols].ravel(), bias[cols]])
            narrow_sizes = (2, *(width,) * depth, 1)
            f = _np_forward(np.concatenate(narrow), narrow_sizes, "tanh", batch.x_ctx[b].numpy())
            z = (batch.y_ctx[b].numpy() - f[:, 0]) / float(meta["noise_std"][b])
            assert np.abs(z).max() < 6.0  # the data came from the narrow network
    assert depths == {1, 2, 3}


def test_fixed_mode_only_api_refuses_hyperprior_mode() -> None:
    prior = BNNPrior(BNNPriorConfig(**HYPER))
    with pytest.raises(ValueError, match="mode='fixed'"):
        _ = prior.n_parameters
    with pytest.raises(ValueError, match="mode='fixed'"):
        prior.log_prior(torch.zeros(2, 10))


def test_log_density_input_errors() -> None:
    prior = BNNPrior(BNNPriorConfig(**SHIPPED))
    params, x = torch.zeros(2, 33), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="labels must be integers"):
        prior.log_likelihood(params, x, torch.tensor([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="expected x"):
        prior.log_likelihood(params, x, torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        prior.forward_fn(torch.zeros(2, 30), x)


def test_config_round_trip_and_registry() -> None:
    config = BNNPriorConfig(num_features=3, activation="relu", x_dist="uniform", **HYPER)
    data = config.to_dict()
    assert data["weight_std"] == {"family": "uniform", "a": 0.5, "b": 1.5}
    assert BNNPriorConfig.from_dict(data) == config
    assert priors.REGISTRY["bnn"] == (BNNPrior, BNNPriorConfig)
    assert priors.make_prior("bnn", data).config == config
    shipped = BNNPriorConfig(**SHIPPED)
    assert BNNPriorConfig.from_dict(shipped.to_dict()) == shipped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_features": 0}, "num_features"),
        ({"width": 2.5}, "width"),
        ({"depth": -1}, "depth"),
        ({"mode": "hyperprior", "width_min": 5, "width_max": 3}, "width_max"),
        ({"depth_min": 3, "depth_max": 1}, "depth_max"),
        ({"mode": "random"}, "unknown mode"),
        ({"activation": "swish"}, "unknown activation"),
        ({"x_dist": "cauchy"}, "unknown x_dist"),
        ({"output": "ranking"}, "unknown output"),
        ({"x_low": 1.0, "x_high": 1.0}, "x_low"),
        ({"output": "classification", "n_classes": 1}, "n_classes"),
        ({"binary_logit": True}, "binary_logit"),
        ({"output": "classification", "n_classes": 3, "binary_logit": True}, "binary_logit"),
        ({"weight_std": {"family": "uniform", "a": 0.5, "b": 1.0}}, "mode='hyperprior'"),
        ({"noise_std": -0.1}, "positive"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BNNPriorConfig(**kwargs)
