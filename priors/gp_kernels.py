"""Stationary kernel matrices of the GP prior (RBF and Matérn), batched over tasks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["KERNELS", "kernel_matrix", "linear_kernel_matrix"]

KERNELS = ("rbf", "matern12", "matern32", "matern52")


def kernel_matrix(
    kernel: str, x1_BND: Tensor, x2_BMD: Tensor, lengthscale_BD: Tensor, outputscale_B: Tensor
) -> Tensor:
    """Stationary kernel matrix k(x1, x2) of shape (B, N, M).

    Distances come from `torch.cdist` in its exact mode (differences, not the Gram-matrix
    shortcut that cancels near zero), so no (B, N, M, D) tensor is ever formed.
    """
    scale_B1D = lengthscale_BD[:, None, :]
    r_BNM = torch.cdist(
        x1_BND / scale_B1D, x2_BMD / scale_B1D, compute_mode="donot_use_mm_for_euclid_dist"
    )
    if kernel == "rbf":
        k_BNM = torch.exp(-0.5 * r_BNM**2)
    else:
        if kernel == "matern12":
            k_BNM = torch.exp(-r_BNM)
        elif kernel == "matern32":
            s_BNM = math.sqrt(3.0) * r_BNM
            k_BNM = (1 + s_BNM) * torch.exp(-s_BNM)
        elif kernel == "matern52":
            s_BNM = math.sqrt(5.0) * r_BNM
            k_BNM = (1 + s_BNM + s_BNM**2 / 3) * torch.exp(-s_BNM)
        else:
            raise ValueError(f"unknown kernel {kernel!r}; choose from {KERNELS}")
    return outputscale_B[:, None, None] * k_BNM


def linear_kernel_matrix(x1_BND: Tensor, x2_BMD: Tensor, weight_variance_BD: Tensor) -> Tensor:
    """Linear ARD kernel sum_j v_j x1_j x2_j of shape (B, N, M): f(x) = x·β, β_j ~ N(0, v_j)."""
    return torch.einsum("bnd,bmd->bnm", x1_BND * weight_variance_BD[:, None, :], x2_BMD)
