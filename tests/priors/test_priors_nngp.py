"""The NNGP kernel against closed forms, quadrature, and the covariance of wide random networks.

The random networks are simulated here with plain matrix products (weights N(0, σ_w²/fan_in),
biases N(0, σ_b²)), sharing no code with `priors.nngp`. Their covariance is estimated
conditionally on the last hidden layer: given it, the output is exactly Gaussian with
covariance σ_b² + σ_w² mean_j φ(z_j(x)) φ(z_j(x')), so averaging that over networks is the
empirical covariance with the last layer's Gaussian noise integrated out (Rao-Blackwell).
The last hidden layer's width adds only Monte Carlo error; the widths before it add a
finite-width bias of order 1 / width, kept well below the standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priors.nngp import NNGPKernelConfig, nngp_kernel_matrix
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

QUADRATURE_ATOL = 1e-9  # 80-node Gauss-Hermite rule for a smooth (erf) integrand
SW2, SB2 = 1.7, 0.2  # σ_w², σ_b² of the Monte Carlo checks
ACTIVATIONS = {"relu": torch.relu, "erf": torch.erf}


def _points() -> torch.Tensor:
    """Four inputs in R³ with different norms and angles (one pair negatively aligned)."""
    return torch.tensor(
        [[1.0, 0.0, 0.5], [0.8, 0.6, 0.0], [-0.9, 0.1, -0.4], [0.1, -1.5, 0.3]],
        dtype=torch.float64,
    )


def _last_layer_kernels(
    x_PD: torch.Tensor, activation: str, widths: list[int], n_nets: int, seed: int
) -> torch.Tensor:
    """Per network: σ_b² + σ_w² mean_j φ(z_j(x)) φ(z_j(x')) over the last hidden layer (S, P, P)."""
    generator = torch.Generator().manual_seed(seed)
    phi = ACTIVATIONS[activation]
    z_SPH = x_PD.expand(n_nets, -1, -1)
    fan_in = x_PD.shape[1]
    for layer, width in enumerate(widths):
        if layer > 0:
            z_SPH = phi(z_SPH)
        w_SIH = torch.randn(n_nets, fan_in, width, generator=generator, dtype=torch.float64)
        b_S1H = torch.randn(n_nets, 1, width, generator=generator, dtype=torch.float64)
        z_SPH = z_SPH @ w_SIH * math.sqrt(SW2 / fan_in) + math.sqrt(SB2) * b_S1H
        fan_in = width
    h_SPH = phi(z_SPH)
    return SB2 + SW2 * h_SPH @ h_SPH.transpose(-1, -2) / fan_in


def _check_within_standard_errors(estimates_SPP: torch.Tensor, kernel_PP: torch.Tensor) -> None:
    mean = estimates_SPP.mean(0)
    se = estimates_SPP.std(0) / math.sqrt(estimates_SPP.shape[0])
    z = (mean - kernel_PP) / se
    assert float(z.abs().max()) < STANDARD_ERRORS, f"z-scores {z}"


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_depth_zero_is_the_linear_kernel(activation: str) -> None:
    x1 = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x2 = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sw2 = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    sb2 = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float64)
    k = nngp_kernel_matrix(
        x1, x2, activation=activation, depth=0, weight_variance=sw2, bias_variance=sb2
    )
    expected = (
        sb2[:, None, None].numpy()
        + sw2[:, None, None].numpy() * np.einsum("bnd,bmd->bnm", x1.numpy(), x2.numpy()) / 2
    )
    torch.testing.assert_close(k, torch.from_numpy(expected).double(), atol=FLOAT64_ATOL, rtol=0)


def test_relu_without_biases_is_the_arc_cosine_kernel() -> None:
    """Cho & Saul (2009): k₁(x, x') = ‖x‖‖x'‖ (sin θ + (π − θ) cos θ) / π, θ the angle."""
    x = _points().numpy()
    norms = np.linalg.norm(x, axis=1)
    theta = np.arccos(np.clip(x @ x.T / np.outer(norms, norms), -1.0, 1.0))
    arc_cos = np.outer(norms, norms) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / np.pi
    # one hidden layer: K¹ = σ_w² · ½ (σ_w² / D) k₁(x, x'), with D = 3
    expected = SW2 * 0.5 * (SW2 / 3) * arc_cos
    k = nngp_kernel_matrix(
        _points()[None], _points()[None], depth=1, weight_variance=SW2, bias_variance=0.0
    )
    torch.testing.assert_close(k[0], torch.from_numpy(expected), atol=FLOAT64_ATOL, rtol=0)


def _gauss_hermite_erf_expectation(k11: float, k22: float, k12: float) -> float:
    """E[erf(u) erf(v)], (u, v) ~ N(0, [[k11, k12], [k12, k22]]), by a tensor quadrature rule."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    eigenvalues, eigenvectors = np.linalg.eigh(np.array([[k11, k12], [k12, k22]]))
    factor = eigenvectors * np.sqrt(eigenvalues.clip(min=0.0))  # singular on the diagonal
    a, b = np.meshgrid(nodes, nodes, indexing="ij")
    u = factor[0, 0] * a + factor[0, 1] * b
    v = factor[1, 0] * a + factor[1, 1] * b
    from scipy.special import erf

    return float((np.outer(weights, weights) * erf(u) * erf(v)).sum())


def test_erf_one_layer_matches_quadrature() -> None:
    x = _points()
    k0 = (SB2 + SW2 * x @ x.T / 3).numpy()
    expected = np.array(
        [
            [
                SB2 + SW2 * _gauss_hermite_erf_expectation(k0[i, i], k0[j, j], k0[i, j])
                for j in range(4)
            ]
            for i in range(4)
        ]
    )
    k = nngp_kernel_matrix(
        x[None], x[None], activation="erf", depth=1, weight_variance=SW2, bias_variance=SB2
    )
    torch.testing.assert_close(k[0], torch.from_numpy(expected), atol=QUADRATURE_ATOL, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_the_diagonal_follows_its_one_dimensional_recursion(activation: str) -> None:
    """K^l(x, x) = σ_b² + σ_w² q(K^{l-1}(x, x)): q(k) = k/2 (ReLU), 2/π asin(2k/(1+2k)) (erf)."""
    x = _points()
    q = (
        (lambda k: k / 2)
        if activation == "relu"
        else (lambda k: 2 / math.pi * math.asin(2 * k / (1 + 2 * k)))
    )
    for depth in range(5):
        k = nngp_kernel_matrix(
            x[None],
            x[None],
            activation=activation,
            depth=depth,
            weight_variance=SW2,
            bias_variance=SB2,
        )
        for i in range(4):
            value = SB2 + SW2 * float(x[i] @ x[i]) / 3
            for _ in range(depth):
                value = SB2 + SW2 * q(value)
            assert abs(float(k[0, i, i]) - value) < FLOAT64_ATOL


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_batch_equals_loop_and_the_kernel_is_symmetric_psd(activation: str) -> None:
    generator = torch.Generator().manual_seed(0)
    x1 = torch.randn(4, 6, 3, generator=generator, dtype=torch.float64)
    x2 = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    sw2 = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    sb2 = torch.tensor([0.0, 0.1, 1.0, 0.3], dtype=torch.float64)
    kwargs = {"activation": activation, "depth": 3}
    batched = nngp_kernel_matrix(x1, x2, weight_variance=sw2, bias_variance=sb2, **kwargs)
    for b in range(4):
        single = nngp_kernel_matrix(
            x1[b : b + 1],
            x2[b : b + 1],
            weight_variance=float(sw2[b]),
            bias_variance=float(sb2[b]),
            **kwargs,
        )
        torch.testing.assert_close(batched[b], single[0], atol=FLOAT64_ATOL, rtol=0)
    swapped = nngp_kernel_matrix(x2, x1, weight_variance=sw2, bias_variance=sb2, **kwargs)
    torch.testing.assert_close(swapped, batched.transpose(-1, -2), atol=FLOAT64_ATOL, rtol=0)
    gram = nngp_kernel_matrix(x1, x1, weight_variance=sw2, bias_variance=sb2, **kwargs)
    torch.testing.assert_close(gram, gram.transpose(-1, -2), atol=FLOAT64_ATOL, rtol=0)
    assert float(torch.linalg.eigvalsh(gram).min()) > -FLOAT64_ATOL


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_one_hidden_layer_matches_the_output_covariance_of_random_networks(
    activation: str,
) -> None:
    """Sampled outputs f(x) of 20000 networks; one hidden layer is Gaussian at any width."""
    x = _points()
    n_nets, width = 20000, 16
    generator = torch.Generator().manual_seed(1)
    w0 = torch.randn(n_nets, 3, width, generator=generator, dtype=torch.float64)
    b0 = torch.randn(n_nets, 1, width, generator=generator, dtype=torch.float64)
    w1 = torch.randn(n_nets, width, 1, generator=generator, dtype=torch.float64)
    b1 = torch.randn(n_nets, 1, 1, generator=generator, dtype=torch.float64)
    z = x @ w0 * math.sqrt(SW2 / 3) + math.sqrt(SB2) * b0
    f_SP = (ACTIVATIONS[activation](z) @ w1 * math.sqrt(SW2 / width) + math.sqrt(SB2) * b1)[..., 0]
    products_SPP = f_SP[:, :, None] * f_SP[:, None, :]  # zero mean: E[f f'] is the covariance
    kernel = nngp_kernel_matrix(
        x[None], x[None], activation=activation, depth=1, weight_variance=SW2, bias_variance=SB2
    )[0]
    _check_within_standard_errors(products_SPP, kernel)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_two_hidden_layers_match_wide_random_networks(activation: str) -> None:
    """512 networks of widths (2048, 32): finite-width bias ~ 0.3%, standard error ~ 1.5%."""
    x = _points()
    estimates = torch.cat(
        [_last_layer_kernels(x, activation, [2048, 32], 64, seed) for seed in range(8)]
    )
    kernel = nngp_kernel_matrix(
        x[None], x[None], activation=activation, depth=2, weight_variance=SW2, bias_variance=SB2
    )[0]
    _check_within_standard_errors(estimates, kernel)


# widths of the hidden layers, networks per chunk, chunks; about 30 s each on one busy core
_DEEP_NETWORKS = {2: ([4096, 256], 64, 8), 3: ([2048, 2048, 256], 16, 8)}


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [2, 3])
def test_deep_kernels_match_very_wide_random_networks(activation: str, depth: int) -> None:
    """Standard errors ~ 0.5% (depth 2) and ~ 1.1% (depth 3) of the kernel; the finite-width
    bias, of order 10 / width (measured at width 128), stays below half a standard error."""
    x = _points()
    widths, chunk, n_chunks = _DEEP_NETWORKS[depth]
    estimates = torch.cat(
        [_last_layer_kernels(x, activation, widths, chunk, seed) for seed in range(n_chunks)]
    )
    kernel = nngp_kernel_matrix(
        x[None], x[None], activation=activation, depth=depth, weight_variance=SW2, bias_variance=SB2
    )[0]
    _check_within_standard_errors(estimates, kernel)


def test_config_round_trips_and_rejects_bad_values() -> None:
    config = NNGPKernelConfig(activation="erf", depth=3, weight_variance=1.5, bias_variance=0.0)
    assert NNGPKernelConfig.from_dict(config.to_dict()) == config
    assert NNGPKernelConfig.coerce(config.to_dict()) == config
    with pytest.raises(ValueError, match="activation"):
        NNGPKernelConfig(activation="tanh")
    with pytest.raises(ValueError, match="depth"):
        NNGPKernelConfig(depth=-1)
    with pytest.raises(ValueError, match="weight_variance"):
        NNGPKernelConfig(weight_variance=0.0)
    with pytest.raises(ValueError, match="activation"):
        nngp_kernel_matrix(_points()[None], _points()[None], activation="tanh")
