"""Multilayer perceptrons as flat parameter vectors: layout, unflattening, batched forward pass.

Flat parameter layout, shared by the BNN prior's ``meta["weights"]`` and the ``params_SP``
that its log densities take: layer after layer, first the weight matrix W_l of shape
(fan_in, fan_out) in row-major order, then the bias b_l of length fan_out. A layer computes
h_l = act(h_{l-1} W_l + b_l); the output layer has no activation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ACTIVATIONS",
    "mlp_forward",
    "mlp_layer_sizes",
    "n_mlp_parameters",
    "parameter_stds",
    "unflatten_parameters",
]

_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": F.gelu,
    "sin": torch.sin,
    "identity": lambda h: h,
}
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATION_FNS)


def mlp_layer_sizes(
    num_features: int, hidden_widths: Sequence[int], n_outputs: int
) -> tuple[int, ...]:
    """Unit counts of every layer, input and output included: (D, *hidden_widths, O)."""
    return (num_features, *hidden_widths, n_outputs)


def n_mlp_parameters(layer_sizes: Sequence[int]) -> int:
    """Number of weights and biases of an MLP with these layer sizes."""
    return sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))


def unflatten_parameters(
    params_SP: Tensor, layer_sizes: Sequence[int]
) -> list[tuple[Tensor, Tensor]]:
    """Split flat parameter vectors (S, P) into per-layer (weight (S, I, O), bias (S, O))."""
    n_params = n_mlp_parameters(layer_sizes)
    if params_SP.ndim != 2 or params_SP.shape[1] != n_params:
        raise ValueError(
            f"expected parameters of shape (S, {n_params}) for layer sizes {tuple(layer_sizes)}, "
            f"got {tuple(params_SP.shape)}"
        )
    layers, offset = [], 0
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:], strict=True):
        weight_SIO = params_SP[:, offset : offset + fan_in * fan_out]
        offset += fan_in * fan_out
        bias_SO = params_SP[:, offset : offset + fan_out]
        offset += fan_out
        layers.append((weight_SIO.reshape(-1, fan_in, fan_out), bias_SO))
    return layers


def mlp_forward(layers: Sequence[tuple[Tensor, Tensor]], x: Tensor, activation: str) -> Tensor:
    """Outputs (S, N, O) of S MLPs at inputs x: shared (N, D) or one set per MLP (S, N, D)."""
    act = _ACTIVATION_FNS[activation]
    n_mlps = layers[0][0].shape[0]
    h_SNI = x.to(layers[0][0])
    if h_SNI.ndim == 2:
        h_SNI = h_SNI.expand(n_mlps, -1, -1)
    if h_SNI.ndim != 3 or h_SNI.shape[0] != n_mlps or h_SNI.shape[2] != layers[0][0].shape[1]:
        raise ValueError(
            f"expected x of shape (N, {layers[0][0].shape[1]}) or ({n_mlps}, N, "
            f"{layers[0][0].shape[1]}), got {tuple(x.shape)}"
        )
    for index, (weight_SIO, bias_SO) in enumerate(layers):
        h_SNI = torch.baddbmm(bias_SO.unsqueeze(1), h_SNI, weight_SIO)
        if index < len(layers) - 1:
            h_SNI = act(h_SNI)
    return h_SNI


def parameter_stds(
    layer_sizes: Sequence[int], width_B: Tensor, weight_std_B: Tensor, bias_std_B: Tensor
) -> Tensor:
    """Prior standard deviation (B, P) of every flat parameter; 0 for padded-out units.

    Hidden unit j of a task is in use when j < width_B; input and output units always are.
    """
    in_use = [
        (torch.arange(size) < width_B[:, None]) | (index in (0, len(layer_sizes) - 1))
        for index, size in enumerate(layer_sizes)
    ]
    stds = []
    for in_use_BI, out_use_BO in zip(in_use[:-1], in_use[1:], strict=True):
        weight_BIO = in_use_BI[:, :, None] & out_use_BO[:, None, :]
        stds.append((weight_std_B[:, None, None] * weight_BIO).flatten(1))
        stds.append(bias_std_B[:, None] * out_use_BO)
    return torch.cat(stds, dim=1)
