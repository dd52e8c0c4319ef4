"""`LogJointPrior`: every prior with a log-joint against an independent scipy/numpy loop.

One contract over every prior that declares ``log_joint(params_SP, task) -> (S,)``: the
GMM prior with either simulator and the fixed-architecture BNN prior with each likelihood.
The oracles are written from the model's definition with scipy, one draw and one point at
a time; they share no code with the priors. Also checked: draws one at a time equal the
batch, gradients, the refusal of a multi-task batch, and the properties the validators read
from a prior (`is_conjugate`, `obs_cov`, `is_fixed_classifier`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_expit, log_softmax, logsumexp
from scipy.stats import multivariate_normal, norm

from pfnkit.data import Batch, LogJointPrior
from priors.bnn import BNNPrior, BNNPriorConfig
from priors.gmm import GMMPrior, GMMPriorConfig

FLOAT64_RTOL = 1e-10  # float64 identity: the same density along two routes
N_DRAWS = 4  # parameter draws S per check
OBS_COV = [[1.5, 0.4], [0.4, 0.8]]


def _gmm_oracle(prior: GMMPrior, params_SP: np.ndarray, task: Batch) -> np.ndarray:
    """log mixture prior + log likelihood, per draw and per observation with scipy."""
    cfg, meta = prior.config, {k: v[0].numpy() for k, v in task.meta.items()}
    x_ND = task.x_ctx[0].numpy()
    out = []
    for theta in params_SP:
        log_comp = [
            logit + multivariate_normal.logpdf(theta, mean, tril @ tril.T)
            for logit, mean, tril in zip(
                meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], strict=True
            )
        ]
        total = logsumexp(log_comp)
        for x in x_ND:
            if cfg.simulator == "gaussian":
                total += multivariate_normal.logpdf(x, theta, np.array(cfg.obs_cov))
            else:
                logit = x[: cfg.dim] @ theta
                total += log_expit(logit) if x[cfg.dim] == 1 else log_expit(-logit)
        out.append(total)
    return np.array(out)


def _bnn_oracle(prior: BNNPrior, params_SP: np.ndarray, task: Batch) -> np.ndarray:
    """Gaussian prior on each weight and bias, a hand-written forward pass, scipy likelihood."""
    cfg = prior.config
    sizes = (cfg.num_features, *([cfg.width] * cfg.depth), cfg.n_outputs)
    x_ND, y_N = task.x_ctx[0].numpy(), task.y_ctx[0].numpy()
    out = []
    for params in params_SP:
        total, offset, h = 0.0, 0, x_ND
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            weight = params[offset : offset + fan_in * fan_out].reshape(fan_in, fan_out)
            offset += fan_in * fan_out
            bias = params[offset : offset + fan_out]
            offset += fan_out
            total += norm.logpdf(weight, scale=cfg.weight_std.a).sum()
            total += norm.logpdf(bias, scale=cfg.bias_std.a).sum()
            h = h @ weight + bias
            if index < len(sizes) - 2:
                h = np.tanh(h)
        for f, y in zip(h, y_N, strict=True):
            if cfg.output == "regression":
                total += norm.logpdf(y, loc=f[0], scale=cfg.noise_std.a)
            elif cfg.binary_logit:
                total += log_expit(f[0]) if y == 1 else log_expit(-f[0])
            else:
                total += log_softmax(f)[int(y)]
        out.append(total)
    return np.array(out)


_BNN = {"num_features": 2, "depth": 1, "width": 3, "activation": "tanh", "weight_std": 0.8,
        "bias_std": 1.3}  # fmt: skip
CASES = {
    "gmm-gaussian": (GMMPrior(GMMPriorConfig(dim=2, k_min=3, k_max=3, obs_cov=OBS_COV)),
                     _gmm_oracle),
    "gmm-logistic": (GMMPrior(GMMPriorConfig(dim=2, k_min=2, k_max=2, simulator="logistic")),
                     _gmm_oracle),
    "bnn-binary": (BNNPrior(BNNPriorConfig(**_BNN, output="classification", n_classes=2,
                                           binary_logit=True)), _bnn_oracle),
    "bnn-categorical": (BNNPrior(BNNPriorConfig(**_BNN, output="classification", n_classes=3)),
                        _bnn_oracle),
    "bnn-regression": (BNNPrior(BNNPriorConfig(**_BNN, output="regression", noise_std=0.4)),
                       _bnn_oracle),
}  # fmt: skip


def _draws(prior: LogJointPrior, task: Batch, seed: int = 1) -> torch.Tensor:
    """S parameter vectors near the task's own: the truth plus unit noise."""
    truth = task.meta["theta" if "theta" in task.meta else "weights"]
    noise = torch.randn(N_DRAWS, truth.shape[1], generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)  # fmt: skip
    return truth + noise


@pytest.mark.parametrize("n_ctx", [0, 7])
@pytest.mark.parametrize("case", sorted(CASES))
def test_log_joint_matches_an_independent_loop(case: str, n_ctx: int) -> None:
    prior, oracle = CASES[case]
    assert isinstance(prior, LogJointPrior)
    task = prior.sample(1, n_ctx, 0, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)  # fmt: skip
    params_SP = _draws(prior, task)
    log_joint = prior.log_joint(params_SP, task)
    assert log_joint.shape == (N_DRAWS,) and log_joint.dtype == torch.float64
    expected = oracle(prior, params_SP.numpy(), task)
    np.testing.assert_allclose(log_joint.numpy(), expected, rtol=FLOAT64_RTOL)
    one_by_one = torch.cat([prior.log_joint(params_SP[s : s + 1], task) for s in range(N_DRAWS)])
    torch.testing.assert_close(one_by_one, log_joint, rtol=FLOAT64_RTOL, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_joint_is_differentiable_and_refuses_several_tasks(case: str) -> None:
    prior, _ = CASES[case]
    batch = prior.sample(2, 5, 0, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params_SP = _draws(prior, batch.task(0)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: prior.log_joint(p, batch.task(0)), (params_SP,))
    with pytest.raises(ValueError, match="one-task batch"):
        prior.log_joint(params_SP, batch)


def test_what_the_validators_ask_of_a_prior() -> None:
    gaussian = CASES["gmm-gaussian"][0]
    assert gaussian.is_conjugate
    torch.testing.assert_close(gaussian.obs_cov, torch.tensor(OBS_COV, dtype=torch.float64))
    logistic = CASES["gmm-logistic"][0]
    assert not logistic.is_conjugate
    with pytest.raises(ValueError, match="'gaussian' simulator"):
        logistic.obs_cov  # noqa: B018
    assert CASES["bnn-binary"][0].is_fixed_classifier
    assert CASES["bnn-categorical"][0].is_fixed_classifier
    assert not CASES["bnn-regression"][0].is_fixed_classifier
    hyper = BNNPrior(BNNPriorConfig(mode="hyperprior", output="classification", n_classes=2))
    assert not hyper.is_fixed_classifier
