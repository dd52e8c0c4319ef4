"""The NNGP kernel: the covariance of an infinitely wide fully connected network at initialisation.

A network of ``depth`` hidden layers with activation φ, weights W_l of i.i.d. N(0, σ_w²/fan_in)
entries and biases of i.i.d. N(0, σ_b²) entries computes pre-activations

    z⁰(x) = W_0 x + b_0,    z^l(x) = W_l φ(z^{l-1}(x)) + b_l,    f(x) = z^depth(x).

As every hidden width grows, f tends to a Gaussian process whose kernel follows the
recursion of Neal (1996) and Lee et al. (arXiv 1711.00165):

    K⁰(x, x') = σ_b² + σ_w² x·x' / D,
    K^l(x, x') = σ_b² + σ_w² E_{(u, v) ~ N(0, K^{l-1} on {x, x'})} [φ(u) φ(v)].

The expectation is closed form for the two activations here:

* ReLU (the arc-cosine kernel of degree 1, Cho & Saul 2009):
  E[φ(u)φ(v)] = √(k_xx k_x'x') (sin θ + (π − θ) cos θ) / (2π), cos θ = k_xx' / √(k_xx k_x'x');
* erf (Williams 1997, "Computing with infinite networks"):
  E[φ(u)φ(v)] = (2/π) arcsin(2 k_xx' / √((1 + 2 k_xx)(1 + 2 k_x'x'))).

Depth 0 is the linear kernel σ_b² + σ_w² x·x'/D. Everything runs batched over tasks in
float64; the weight and bias variances may differ per task.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["NNGP_ACTIVATIONS", "NNGPKernelConfig", "nngp_kernel_matrix"]

NNGP_ACTIVATIONS = ("relu", "erf")


@dataclass(frozen=True, kw_only=True)
class NNGPKernelConfig:
    """An infinitely wide fully connected network, as plain data.

    Attributes:
        activation: "relu" or "erf".
        depth: number of hidden layers (0 gives the linear kernel).
        weight_variance: σ_w²; each weight has variance σ_w² / fan_in.
        bias_variance: σ_b², the variance of every bias (0 for none).
    """

    activation: str = "relu"
    depth: int = 2
    weight_variance: float = 2.0
    bias_variance: float = 0.1

    def __post_init__(self) -> None:
        if self.activation not in NNGP_ACTIVATIONS:
            raise ValueError(
                f"unknown NNGP activation {self.activation!r}; choose from {NNGP_ACTIVATIONS}"
            )
        if self.depth < 0:
            raise ValueError(f"depth counts hidden layers and must be >= 0, got {self.depth}")
        if not self.weight_variance > 0:
            raise ValueError(f"weight_variance must be positive, got {self.weight_variance}")
        if not self.bias_variance >= 0:
            raise ValueError(f"bias_variance must be non-negative, got {self.bias_variance}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NNGPKernelConfig:
        return cls(**data)

    @classmethod
    def coerce(cls, value: NNGPKernelConfig | dict[str, Any]) -> NNGPKernelConfig:
        """Accept a config or a dict of its fields (as a TOML table gives it)."""
        return value if isinstance(value, NNGPKernelConfig) else cls.from_dict(value)


def _relu_expectation(k11_BN1: Tensor, k22_B1M: Tensor, k12_BNM: Tensor) -> Tensor:
    """E[relu(u) relu(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    norm_BNM = (k11_BN1 * k22_B1M).sqrt()
    tiny = torch.finfo(k12_BNM.dtype).tiny
    cos_BNM = (k12_BNM / norm_BNM.clamp_min(tiny)).clamp(-1.0, 1.0)
    theta_BNM = torch.arccos(cos_BNM)
    sin_BNM = (1.0 - cos_BNM**2).clamp_min(0.0).sqrt()
    return norm_BNM * (sin_BNM + (math.pi - theta_BNM) * cos_BNM) / (2.0 * math.pi)


def _erf_expectation(k11_BN1: Tensor, k22_B1M: Tensor, k12_BNM: Tensor) -> Tensor:
    """E[erf(u) erf(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    ratio_BNM = 2.0 * k12_BNM / ((1.0 + 2.0 * k11_BN1) * (1.0 + 2.0 * k22_B1M)).sqrt()
    return (2.0 / math.pi) * torch.arcsin(ratio_BNM.clamp(-1.0, 1.0))


_EXPECTATIONS = {"relu": _relu_expectation, "erf": _erf_expectation}


def _per_task(value: float | Tensor, batch_size: int, like: Tensor) -> Tensor:
    """A scalar or a (B,) tensor as a float64 (B, 1, 1) tensor on `like`'s device."""
    tensor = torch.as_tensor(value, dtype=torch.float64, device=like.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(batch_size)
    if tuple(tensor.shape) != (batch_size,):
        raise ValueError(
            f"expected a scalar or one value per task ({batch_size},), got {tuple(tensor.shape)}"
        )
    return tensor[:, None, None]


def nngp_kernel_matrix(
    x1_BND: Tensor,
    x2_BMD: Tensor,
    *,
    activation: str = "relu",
    depth: int = 2,
    weight_variance: float | Tensor = 2.0,
    bias_variance: float | Tensor = 0.1,
) -> Tensor:
    """The NNGP kernel K^depth(x1, x2) of shape (B, N, M), float64.

    Args:
        x1_BND: first inputs, shape (B, N, D).
        x2_BMD: second inputs, shape (B, M, D).
        activation: "relu" or "erf".
        depth: number of hidden layers (0: the linear kernel σ_b² + σ_w² x·x'/D).
        weight_variance: σ_w², a float or one value per task (B,).
        bias_variance: σ_b², a float or one value per task (B,).

    Returns:
        The kernel matrix, float64 on the inputs' device.
    """
    if activation not in _EXPECTATIONS:
        raise ValueError(f"unknown NNGP activation {activation!r}; choose from {NNGP_ACTIVATIONS}")
    if depth < 0:
        raise ValueError(f"depth counts hidden layers and must be >= 0, got {depth}")
    if x1_BND.ndim != 3 or x2_BMD.ndim != 3 or x1_BND.shape[::2] != x2_BMD.shape[::2]:
        raise ValueError(
            f"expected inputs (B, N, D) and (B, M, D), got {tuple(x1_BND.shape)} "
            f"and {tuple(x2_BMD.shape)}"
        )
    x1_BND, x2_BMD = x1_BND.double(), x2_BMD.double()
    b, _, d = x1_BND.shape
    sw2_B11 = _per_task(weight_variance, b, x1_BND)
    sb2_B11 = _per_task(bias_variance, b, x1_BND)
    # layer 0: the diagonals k(x1, x1), k(x2, x2) travel with the cross term k(x1, x2)
    k12_BNM = sb2_B11 + sw2_B11 * (x1_BND @ x2_BMD.transpose(-1, -2)) / d
    k11_BN1 = sb2_B11 + sw2_B11 * (x1_BND**2).sum(-1, keepdim=True) / d
    k22_B1M = sb2_B11 + sw2_B11 * (x2_BMD**2).sum(-1)[:, None, :] / d
    expectation = _EXPECTATIONS[activation]
    for _ in range(depth):
        k12_BNM, k11_BN1, k22_B1M = (
            sb2_B11 + sw2_B11 * expectation(k11_BN1, k22_B1M, k12_BNM),
            sb2_B11 + sw2_B11 * expectation(k11_BN1, k11_BN1, k11_BN1),
            sb2_B11 + sw2_B11 * expectation(k22_B1M, k22_B1M, k22_B1M),
        )
    return k12_BNM
