"""The GP reference with a linear part: Cholesky lml and predictive against dense Gaussians,
the reference's covariance rule against the prior's sampler, linear ML-II, and one NUTS run."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from pfnkit.reference.exact_gp import KERNELS, GPHyperparameters, exact_gp_predictive, fit_ml2
from pfnkit.reference.gp_cholesky import (
    LinearGPHyperparameters,
    cholesky_gp_predictive,
    cholesky_lml_fn,
    gp_covariance,
)
from pfnkit.reference.gp_hyperprior import GPHyperprior
from pfnkit.reference.gp_linear_ml2 import fit_ml2_linear
from pfnkit.reference.gp_nuts import gp_hyperparameter_posterior
from pfnkit.reference.mcmc import NUTSConfig
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from priors.gp_kernels import kernel_matrix, linear_kernel_matrix
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL, STANDARD_ERRORS

DENSE_LML_ATOL = 1e-9  # float64: one Cholesky vs torch's MultivariateNormal on another kernel code
# gpytorch forms distances as |x|^2 + |x'|^2 - 2 x.x', which loses ~1e-8 near r = 0
GPYTORCH_RTOL = 1e-7
ML2_GRAD_ATOL = 1e-3  # L-BFGS stops on tolerance_change before the gradient is exactly 0
META_RTOL = 1e-6  # the sampler's meta is float32: one rounding of a float64 value

LINEAR_WEIGHT = Hyperprior(family="lognormal", a=-1.5, b=1.5)  # examples/configs/gp_lin_ft.toml


def _linear_config(num_features: int) -> GPPriorConfig:
    base = GPPriorConfig.general_purpose(num_features=num_features)
    return GPPriorConfig.from_dict({**base.to_dict(), "linear_weight": LINEAR_WEIGHT})


def _data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x_ND = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y_N = x_ND.sum(-1) + torch.sin(2 * x_ND[:, 0]) + 0.3 * torch.randn(n, generator=gen)
    return x_ND, y_N.double()


def _dense_covariance(kernel: str, x1_AD, x2_BD, lengthscale_D, outputscale, variance_D):
    """K(x1, x2) from the prior's kernel code (`priors.gp_kernels`), independent of pfnkit."""
    stationary = kernel_matrix(
        kernel, x1_AD[None], x2_BD[None], lengthscale_D[None], outputscale.reshape(1)
    )
    return (stationary + linear_kernel_matrix(x1_AD[None], x2_BD[None], variance_D[None]))[0]


@pytest.mark.parametrize("kernel", KERNELS)
def test_lml_with_a_linear_part_equals_a_dense_gaussian(kernel: str) -> None:
    x_ND, y_N = _data(25, 3, seed=1)
    lml = cholesky_lml_fn(x_ND, y_N, kernel=kernel)
    theta = torch.tensor([0.3, -0.4, 0.8, 0.1, -2.0, -1.0, 0.5, -3.0], dtype=torch.float64)
    grads = []
    for route in ("cholesky", "dense"):
        phi = theta.clone().requires_grad_(True)
        ls_D, out, noise, var_D = phi[:3].exp(), phi[3].exp(), phi[4].exp(), phi[5:].exp()
        if route == "cholesky":
            value = lml(ls_D, out, noise, var_D)
        else:
            cov_NN = _dense_covariance(kernel, x_ND, x_ND, ls_D, out, var_D)
            cov_NN = cov_NN + noise * torch.eye(25, dtype=torch.float64)
            value = MultivariateNormal(torch.zeros(25, dtype=torch.float64), cov_NN).log_prob(y_N)
        grads.append((value.detach(), torch.autograd.grad(value, phi)[0]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=DENSE_LML_ATOL, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=DENSE_LML_ATOL, rtol=0)
    no_linear = lml(theta[:3].exp(), theta[3].exp(), theta[4].exp())
    assert no_linear != grads[0][0]  # the linear part is really added
    with pytest.raises(ValueError, match=r"linear_variance must have shape \(3,\)"):
        lml(theta[:3].exp(), theta[3].exp(), theta[4].exp(), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_predictive_equals_dense_conditioning_of_the_joint_gaussian(kernel: str) -> None:
    x_ND, y_N = _data(20, 2, seed=2)
    x_qry_MD = torch.randn(7, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    ls_D = torch.tensor([0.7, 1.9], dtype=torch.float64)
    out, noise = torch.tensor(0.8, dtype=torch.float64), 0.05
    var_D = torch.tensor([0.6, 0.0], dtype=torch.float64)  # one feature without a linear part
    hyper = LinearGPHyperparameters(
        stationary=GPHyperparameters(lengthscale=ls_D, outputscale=0.8, noise=noise, kernel=kernel),
        linear_variance=var_D,
    )
    got = cholesky_gp_predictive(x_ND, y_N, x_qry_MD, hyper)
    joint_x = torch.cat([x_ND, x_qry_MD])
    joint = _dense_covariance(kernel, joint_x, joint_x, ls_D, out, var_D)
    k_cc = joint[:20, :20] + noise * torch.eye(20, dtype=torch.float64)
    k_qc, k_qq = joint[20:, :20], joint[20:, 20:]
    mean_M = k_qc @ torch.linalg.solve(k_cc, y_N)
    variance_M = (k_qq - k_qc @ torch.linalg.solve(k_cc, k_qc.T)).diagonal() + noise
    torch.testing.assert_close(got.mean, mean_M, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(got.variance, variance_M, atol=FLOAT64_ATOL, rtol=0)
    cross = gp_covariance(x_qry_MD, x_ND, hyper)
    torch.testing.assert_close(cross, k_qc, atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_predictive_without_a_linear_part_equals_gpytorch(kernel: str) -> None:
    x_ND, y_N = _data(15, 3, seed=3)
    x_qry_MD = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    hyper = GPHyperparameters(
        lengthscale=torch.tensor([0.5, 1.2, 3.0]), outputscale=1.3, noise=0.02, kernel=kernel
    )
    got = cholesky_gp_predictive(x_ND, y_N, x_qry_MD, hyper)
    oracle = exact_gp_predictive(x_ND, y_N, x_qry_MD, hyper)
    torch.testing.assert_close(got.mean, oracle.mean, atol=GPYTORCH_RTOL, rtol=GPYTORCH_RTOL)
    torch.testing.assert_close(
        got.variance, oracle.variance, atol=GPYTORCH_RTOL, rtol=GPYTORCH_RTOL
    )


def _meta_phi(hyperprior: GPHyperprior, meta: dict, b: int, d: int) -> torch.Tensor:
    """φ of task b from the sampler's meta (lengthscales taken back to drawn units)."""
    drawn_ls = meta["lengthscale"][b, :d].double() / hyperprior.lengthscale_factor
    parts = [h.to_unconstrained(v) for h, v in zip(hyperprior.lengthscale, drawn_ls, strict=True)]
    parts += [hyperprior.outputscale.to_unconstrained(meta["outputscale"][b].double())]
    parts += [hyperprior.noise.to_unconstrained(meta["noise"][b].double())]
    weights = meta["linear_weight"][b, :d].double()
    parts += [h.to_unconstrained(v) for h, v in zip(hyperprior.linear_weight, weights, strict=True)]
    return torch.stack(parts)


def _task_data(batch, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every task's inputs (B, T, d) and targets (B, T), context and query together."""
    x_BTD = torch.cat([batch.x_ctx, batch.x_qry], dim=1)[..., :d].double()
    return x_BTD, torch.cat([batch.y_ctx, batch.y_qry], dim=1).double()


def _covariance(x_TD, hyper, noise) -> torch.Tensor:
    eye_TT = torch.eye(x_TD.shape[0], dtype=torch.float64)
    return gp_covariance(x_TD, x_TD, hyper) + float(noise) * eye_TT


def _mean_squared_whitened(batch, hypers: list, d: int) -> tuple[float, int]:
    """Mean of z², z = L⁻¹ y under each task's covariance: 1 in expectation when it is right."""
    x_BTD, y_BT = _task_data(batch, d)
    total, count = 0.0, 0
    for b, hyper in enumerate(hypers):
        chol_TT = torch.linalg.cholesky(_covariance(x_BTD[b], hyper, batch.meta["noise"][b]))
        z_T = torch.linalg.solve_triangular(chol_TT, y_BT[b][:, None], upper=False)
        total, count = total + float(z_T.pow(2).sum()), count + z_T.numel()
    return total / count, count


def _linear_scale_score(batch, hypers: list, d: int) -> float:
    """Standardised score test of v → c v at c = 1 over all tasks: N(0, 1) when v is right.

    Per task, ∂/∂c log N(y; 0, K + (c − 1) L) = ½ (yᵀ K⁻¹ L K⁻¹ y − tr K⁻¹ L) with
    L = X diag(v) Xᵀ, whose variance (the Fisher information) is ½ tr (K⁻¹ L)².
    """
    x_BTD, y_BT = _task_data(batch, d)
    score, information = 0.0, 0.0
    for b, hyper in enumerate(hypers):
        x_TD, y_T = x_BTD[b], y_BT[b]
        cov_TT = _covariance(x_TD, hyper, batch.meta["noise"][b])
        linear_TT = (x_TD * hyper.linear_variance) @ x_TD.T
        solved_TT = torch.linalg.solve(cov_TT, linear_TT)
        alpha_T = torch.linalg.solve(cov_TT, y_T)
        score += 0.5 * float(alpha_T @ linear_TT @ alpha_T - solved_TT.trace())
        information += 0.5 * float((solved_TT @ solved_TT).trace())
    return score / math.sqrt(information)


def _reference_hypers(batch, hyperprior: GPHyperprior, d: int) -> list:
    """Each task's GP as the reference builds it from λ, σ_f², ℓ and noise in the meta."""
    hypers = []
    for b in range(batch.batch_size):
        phi_P = _meta_phi(hyperprior, batch.meta, b, d)
        ls_d, _, _, v_d = hyperprior.unpack(phi_P)
        meta_ls, meta_v = batch.meta["lengthscale"][b, :d], batch.meta["linear_variance"][b, :d]
        torch.testing.assert_close(ls_d.float(), meta_ls, atol=0, rtol=META_RTOL)
        torch.testing.assert_close(v_d.float(), meta_v, atol=0, rtol=META_RTOL)
        hypers.append(hyperprior.to_gp_hyperparameters(phi_P))
    return hypers


@pytest.mark.parametrize("feature_rescale", ["sqrt", "none"])
def test_reference_covariance_reproduces_the_samplers_rule(feature_rescale: str) -> None:
    config = GPPriorConfig.from_dict(
        {**_linear_config(5).to_dict(), "feature_rescale": feature_rescale}
    )
    d = 2
    batch = GPPrior(config).sample(
        400, 16, 4, generator=torch.Generator().manual_seed(0), num_used_features=d
    )
    hyperprior = GPHyperprior.from_prior_config(config.to_dict(), d)
    factor, other = (1 / 5, 1 / d) if feature_rescale == "sqrt" else (1 / d, 1 / 5)
    assert hyperprior.linear_factor == pytest.approx(factor, rel=1e-15)  # 1 / (d s²)
    assert torch.all(batch.meta["linear_variance"][:, d:] == 0)
    assert torch.all(batch.x_ctx[..., d:] == 0)
    hypers = _reference_hypers(batch, hyperprior, d)
    x_TD = _task_data(batch, d)[0][0]
    prior_cov = _dense_covariance(
        config.kernel, x_TD, x_TD, batch.meta["lengthscale"][0, :d].double(),
        batch.meta["outputscale"][0].double(), batch.meta["linear_variance"][0, :d].double(),
    )  # fmt: skip
    torch.testing.assert_close(gp_covariance(x_TD, x_TD, hypers[0]), prior_cov,
                               atol=FLOAT32_ATOL, rtol=FLOAT32_ATOL)  # fmt: skip
    # the sampler's y = chol(K) z: whitening with the reference's K gives E[z²] = 1, SE √(2/n)
    mean_z2, count = _mean_squared_whitened(batch, hypers, d)
    assert abs(mean_z2 - 1) < STANDARD_ERRORS * math.sqrt(2 / count), mean_z2
    without, _ = _mean_squared_whitened(batch, [h.stationary for h in hypers], d)
    assert without - 1 > STANDARD_ERRORS * math.sqrt(2 / count), without  # the test has power
    assert abs(_linear_scale_score(batch, hypers, d)) < STANDARD_ERRORS
    misscaled = [
        LinearGPHyperparameters(
            stationary=h.stationary, linear_variance=h.linear_variance * (other / factor)
        )
        for h in hypers
    ]
    assert abs(_linear_scale_score(batch, misscaled, d)) > STANDARD_ERRORS  # 1/d vs 1/D: seen


def _linear_task(n: int, slope: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x_N1 = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 3 - 1.5
    return x_N1, slope * x_N1[:, 0] + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)


def test_linear_ml2_is_a_stationary_point_and_beats_the_stationary_fit() -> None:
    x_N1, y_N = _linear_task(20, 1.5, seed=5)
    fitted = fit_ml2_linear(x_N1, y_N, kernel="matern52")
    lml = cholesky_lml_fn(x_N1, y_N, kernel="matern52")
    gp = fitted.stationary
    scalars = torch.tensor([gp.outputscale, gp.noise - 1e-6], dtype=torch.float64)  # the bound
    phi = torch.cat([gp.lengthscale.log(), scalars.log(), fitted.linear_variance.log()])
    phi.requires_grad_(True)
    value = lml(phi[:1].exp(), phi[1].exp(), phi[2].exp() + 1e-6, phi[3:].exp())
    (grad,) = torch.autograd.grad(value, phi)
    assert grad.abs().max() < ML2_GRAD_ATOL, grad  # a stationary point of the lml
    stationary = fit_ml2(x_N1, y_N, kernel="matern52")
    at_stationary = lml(
        stationary.lengthscale, torch.tensor(stationary.outputscale, dtype=torch.float64),
        torch.tensor(stationary.noise, dtype=torch.float64),
    )  # fmt: skip
    assert float(value.detach()) > float(at_stationary)
    x_far_M1 = torch.linspace(2.5, 3.5, 5, dtype=torch.float64)[:, None]
    y_far_M = 1.5 * x_far_M1[:, 0]
    nll_linear = -cholesky_gp_predictive(x_N1, y_N, x_far_M1, fitted).log_prob(y_far_M).mean()
    nll_stat = -exact_gp_predictive(x_N1, y_N, x_far_M1, stationary).log_prob(y_far_M).mean()
    assert float(nll_linear) < float(nll_stat) - 1.0, (nll_linear, nll_stat)


@pytest.mark.slow  # two NUTS runs: 5 to 9 s on one core (measured)
def test_nuts_with_a_linear_part_extrapolates_a_linear_task() -> None:
    card = _linear_config(1).to_dict()
    x_N1, y_N = _linear_task(12, 1.2, seed=6)
    x_far_M1 = torch.linspace(2.5, 3.5, 5, dtype=torch.float64)[:, None]
    y_far_M = 1.2 * x_far_M1[:, 0]
    budget = NUTSConfig(num_chains=2, warmup=60, num_samples=60, max_tree_depth=5, min_ess=0.0)
    nll = {}
    for name, config in (("linear", card), ("stationary", {**card, "linear_weight": None})):
        hyperprior = GPHyperprior.from_prior_config(config)
        post = gp_hyperparameter_posterior(x_N1, y_N, hyperprior, budget, seed=1,
                                           predictive_draws=30)  # fmt: skip
        nll[name] = float(-post.predictive(x_far_M1).log_prob(y_far_M).mean())
        if name == "linear":
            assert post.draws_KP.shape == (30, 4)
            assert post.hyperparameters()["linear_variance"].shape == (30, 1)
            predictive = post.predictive(x_far_M1)
            z_M = (predictive.mean - y_far_M) / predictive.variance.sqrt()
            assert z_M.abs().max() < STANDARD_ERRORS, z_M
    assert nll["linear"] < nll["stationary"] - 1.0, nll
