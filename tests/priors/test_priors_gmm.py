"""The GMM meta-prior: Batch layout, mixture statistics, simulators and log-joint vs a loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Categorical,
    MixtureSameFamily,
    MultivariateNormal,
)

import priors
from pfnkit.data import Batch
from priors.gmm import GMMPrior, GMMPriorConfig
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL, STANDARD_ERRORS

OBS_COV = ((1.0, 0.3), (0.3, 0.5))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("simulator", ["gaussian", "logistic"])
@pytest.mark.parametrize("n_ctx", [0, 7])
def test_batch_layout(simulator: str, n_ctx: int) -> None:
    config = GMMPriorConfig(dim=3, simulator=simulator)
    batch = GMMPrior(config).sample(5, n_ctx, 4, generator=_gen())
    assert isinstance(batch, Batch)
    obs_dim = 3 if simulator == "gaussian" else 4
    assert config.obs_dim == config.num_features == obs_dim
    assert batch.x_ctx.shape == (5, n_ctx, obs_dim)
    assert batch.y_ctx.shape == (5, n_ctx) and not batch.y_ctx.any()
    assert batch.x_qry.shape == (5, 0, obs_dim) and batch.y_qry.shape == (5, 0)
    k = batch.meta["prior_logits"].shape[1]
    assert batch.meta["theta"].shape == (5, 3)
    assert batch.meta["prior_means"].shape == (5, k, 3)
    assert batch.meta["prior_scale_tril"].shape == (5, k, 3, 3)
    for tensor in (batch.x_ctx, *batch.meta.values()):
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()


def test_float64_sampling() -> None:
    batch = GMMPrior().sample(3, 4, 0, generator=_gen(), dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in (batch.x_ctx, *batch.meta.values()))


def test_k_is_shared_within_a_call_and_covers_its_range() -> None:
    prior = GMMPrior(GMMPriorConfig(k_min=2, k_max=4))
    seen = set()
    for seed in range(40):
        batch = prior.sample(6, 1, 0, generator=_gen(seed))
        k = batch.meta["prior_logits"].shape[1]
        assert batch.meta["prior_means"].shape[1] == k
        assert batch.meta["prior_scale_tril"].shape[1] == k
        seen.add(k)
    assert seen == {2, 3, 4}


@pytest.mark.parametrize("concentration", [0.5, 1.0, 3.0])
def test_weights_are_normalised_and_dirichlet_distributed(concentration: float) -> None:
    prior = GMMPrior(GMMPriorConfig(k_min=3, k_max=3, concentration=concentration))
    batch = prior.sample(20000, 0, 0, generator=_gen(), dtype=torch.float64)
    weights = batch.meta["prior_logits"].exp()
    torch.testing.assert_close(weights.sum(-1), torch.ones(20000, dtype=torch.float64))
    # Dirichlet(α, α, α): E[w] = 1/3, Var[w] = (1/3)(2/3) / (3α + 1).
    var = (1 / 3) * (2 / 3) / (3 * concentration + 1)
    se = math.sqrt(var / weights.shape[0])
    assert (weights.mean(0) - 1 / 3).abs().max() < STANDARD_ERRORS * se
    sq = (weights - 1 / 3).pow(2) - var
    assert (sq.mean(0).abs() < STANDARD_ERRORS * sq.std(0) / math.sqrt(sq.shape[0])).all()
    f32 = prior.sample(100, 0, 0, generator=_gen()).meta["prior_logits"].exp().sum(-1)
    torch.testing.assert_close(f32, torch.ones(100), atol=FLOAT32_ATOL, rtol=0)


def test_covariances_are_spd_with_eigen_scales_in_range() -> None:
    config = GMMPriorConfig(dim=3, scale_min=0.3, scale_max=3.0)
    batch = GMMPrior(config).sample(200, 0, 0, generator=_gen(), dtype=torch.float64)
    tril = batch.meta["prior_scale_tril"]
    torch.testing.assert_close(tril, tril.tril(), atol=0, rtol=0)
    assert (tril.diagonal(dim1=-2, dim2=-1) > 0).all()
    cov = tril @ tril.transpose(-1, -2)
    scales = torch.linalg.eigvalsh(cov).sqrt()
    assert scales.min() >= 0.3 * (1 - 1e-9) and scales.max() <= 3.0 * (1 + 1e-9)
    # log-uniform: the mean log-scale is the midpoint of the log range.
    log_scales = scales.log().flatten()
    mid = 0.5 * (math.log(0.3) + math.log(3.0))
    se = (math.log(3.0) - math.log(0.3)) / math.sqrt(12 * log_scales.numel())
    assert abs(float(log_scales.mean()) - mid) < STANDARD_ERRORS * se


def test_rotations_are_isotropic() -> None:
    """Haar rotations: the covariance averaged over tasks is a multiple of the identity."""
    config = GMMPriorConfig(dim=2, k_min=1, k_max=1, scale_min=0.1, scale_max=2.0)
    batch = GMMPrior(config).sample(20000, 0, 0, generator=_gen(), dtype=torch.float64)
    tril = batch.meta["prior_scale_tril"][:, 0]
    cov = tril @ tril.transpose(-1, -2)
    off = cov[:, 0, 1]
    assert abs(float(off.mean())) < STANDARD_ERRORS * float(off.std()) / math.sqrt(20000)
    diag_diff = cov[:, 0, 0] - cov[:, 1, 1]
    se = float(diag_diff.std()) / math.sqrt(20000)
    assert abs(float(diag_diff.mean())) < STANDARD_ERRORS * se


def test_same_seed_same_batch() -> None:
    prior = GMMPrior(GMMPriorConfig(simulator="logistic", concentration=0.7))
    first = prior.sample(4, 6, 0, generator=_gen(3))
    again = prior.sample(4, 6, 0, generator=_gen(3))
    other = prior.sample(4, 6, 0, generator=_gen(4))
    torch.testing.assert_close(first.x_ctx, again.x_ctx, atol=0, rtol=0)
    for key in first.meta:
        torch.testing.assert_close(first.meta[key], again.meta[key], atol=0, rtol=0)
    assert not torch.equal(first.meta["theta"], other.meta["theta"])


def test_theta_moments_match_each_task_mixture() -> None:
    """E[θ | prior] = Σ w_k μ_k and E|θ - m|² = tr Cov, checked across many tasks."""
    batch = GMMPrior(GMMPriorConfig(dim=2)).sample(
        20000, 0, 0, generator=_gen(), dtype=torch.float64
    )
    weights = batch.meta["prior_logits"].exp()
    means = batch.meta["prior_means"]
    tril = batch.meta["prior_scale_tril"]
    mix_mean = (weights.unsqueeze(-1) * means).sum(1)
    second = tril @ tril.transpose(-1, -2) + means.unsqueeze(-1) * means.unsqueeze(-2)
    mix_cov = (weights[..., None, None] * second).sum(1) - mix_mean.unsqueeze(
        -1
    ) * mix_mean.unsqueeze(-2)
    resid = batch.meta["theta"] - mix_mean
    n = resid.shape[0]
    assert (resid.mean(0).abs() < STANDARD_ERRORS * resid.std(0) / math.sqrt(n)).all()
    sq = resid.pow(2).sum(-1) - mix_cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    assert abs(float(sq.mean())) < STANDARD_ERRORS * float(sq.std()) / math.sqrt(n)


def test_gaussian_simulator_noise_has_obs_cov() -> None:
    config = GMMPriorConfig(dim=2, obs_cov=OBS_COV)
    batch = GMMPrior(config).sample(2000, 10, 0, generator=_gen(), dtype=torch.float64)
    noise = (batch.x_ctx - batch.meta["theta"].unsqueeze(1)).reshape(-1, 2)
    n = noise.shape[0]
    assert (noise.mean(0).abs() < STANDARD_ERRORS * noise.std(0) / math.sqrt(n)).all()
    target = torch.tensor(OBS_COV, dtype=torch.float64)
    products = noise.unsqueeze(-1) * noise.unsqueeze(-2) - target
    se = products.std(0) / math.sqrt(n)
    assert (products.mean(0).abs() < STANDARD_ERRORS * se).all()


def test_logistic_simulator_labels_follow_the_sigmoid() -> None:
    config = GMMPriorConfig(dim=2, simulator="logistic")
    batch = GMMPrior(config).sample(1000, 20, 0, generator=_gen(), dtype=torch.float64)
    design, label = batch.x_ctx[..., :2], batch.x_ctx[..., 2]
    assert set(label.unique().tolist()) <= {0.0, 1.0}
    design_flat = design.reshape(-1, 2)
    assert (design_flat.mean(0).abs() < STANDARD_ERRORS / math.sqrt(design_flat.shape[0])).all()
    prob = torch.sigmoid((design * batch.meta["theta"].unsqueeze(1)).sum(-1))
    resid = (label - prob).flatten()
    assert abs(float(resid.mean())) < STANDARD_ERRORS * float(resid.std()) / math.sqrt(
        resid.numel()
    )


def _loop_log_likelihood(config: GMMPriorConfig, theta: torch.Tensor, x: torch.Tensor) -> list:
    out = []
    for b in range(theta.shape[0]):
        if x.shape[1] == 0:  # torch.distributions cannot validate an empty sample
            out.append(torch.zeros((), dtype=torch.float64))
        elif config.simulator == "gaussian":
            cov = torch.tensor(config.obs_cov, dtype=torch.float64)
            dist = MultivariateNormal(theta[b], covariance_matrix=cov)
            out.append(dist.log_prob(x[b]).sum())
        else:
            logits = x[b, :, : config.dim] @ theta[b]
            out.append(Bernoulli(logits=logits).log_prob(x[b, :, config.dim]).sum())
    return out


@pytest.mark.parametrize("simulator", ["gaussian", "logistic"])
@pytest.mark.parametrize("n_ctx", [0, 9])
def test_log_likelihood_matches_a_loop(simulator: str, n_ctx: int) -> None:
    config = GMMPriorConfig(dim=2, simulator=simulator, obs_cov=OBS_COV)
    prior = GMMPrior(config)
    batch = prior.sample(6, n_ctx, 0, generator=_gen(), dtype=torch.float64)
    # Evaluate away from the true θ so the test does not hinge on it.
    theta = batch.meta["theta"] + torch.randn(6, 2, generator=_gen(1), dtype=torch.float64)
    batched = prior.log_likelihood(theta, batch.x_ctx)
    assert batched.shape == (6,) and batched.dtype == torch.float64
    expected = torch.stack(_loop_log_likelihood(config, theta, batch.x_ctx))
    torch.testing.assert_close(batched, expected, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL)


def test_log_prior_matches_torch_mixture_per_task() -> None:
    prior = GMMPrior(GMMPriorConfig(dim=3, k_min=3, k_max=3))
    batch = prior.sample(5, 0, 0, generator=_gen(), dtype=torch.float64)
    theta = torch.randn(4, 5, 3, generator=_gen(2), dtype=torch.float64) * 3  # (S, B, d)
    batched = prior.log_prior(theta, batch.meta)
    assert batched.shape == (4, 5)
    for b in range(5):
        mix = MixtureSameFamily(
            Categorical(logits=batch.meta["prior_logits"][b]),
            MultivariateNormal(
                batch.meta["prior_means"][b], scale_tril=batch.meta["prior_scale_tril"][b]
            ),
        )
        torch.testing.assert_close(
            batched[:, b], mix.log_prob(theta[:, b]), atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL
        )


@pytest.mark.parametrize("simulator", ["gaussian", "logistic"])
def test_log_joint_is_differentiable(simulator: str) -> None:
    prior = GMMPrior(GMMPriorConfig(dim=2, simulator=simulator, obs_cov=OBS_COV))
    task = prior.sample(1, 5, 0, generator=_gen(), dtype=torch.float64)
    theta_SD = torch.randn(3, 2, generator=_gen(1), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: prior.log_joint(t, task), (theta_SD,))


def test_log_likelihood_rejects_wrong_shapes() -> None:
    prior = GMMPrior(GMMPriorConfig(dim=2, simulator="logistic"))
    with pytest.raises(ValueError, match="expected theta"):
        prior.log_likelihood(torch.zeros(3, 2), torch.zeros(3, 4, 2))


def test_config_round_trip_and_registry() -> None:
    config = GMMPriorConfig(dim=2, k_min=2, k_max=5, simulator="gaussian", obs_cov=[[2, 0], [0, 1]])
    assert config.obs_cov == ((2.0, 0.0), (0.0, 1.0))
    data = config.to_dict()
    assert data["obs_cov"] == [[2.0, 0.0], [0.0, 1.0]]
    assert GMMPriorConfig.from_dict(data) == config
    assert GMMPriorConfig().obs_cov == ((1.0, 0.0), (0.0, 1.0))
    assert priors.REGISTRY["gmm"] == (GMMPrior, GMMPriorConfig)
    assert priors.make_prior("gmm", data).config == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim"),
        ({"k_min": 3, "k_max": 2}, "k_min"),
        ({"concentration": 0.0}, "concentration"),
        ({"scale_min": 2.0, "scale_max": 1.0}, "scale_min"),
        ({"simulator": "poisson"}, "unknown simulator"),
        ({"obs_cov": [[1.0, 0.0]]}, "shape"),
        ({"obs_cov": [[1.0, 0.5], [0.4, 1.0]]}, "symmetric"),
        ({"obs_cov": [[1.0, 2.0], [2.0, 1.0]]}, "positive definite"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GMMPriorConfig(**kwargs)
