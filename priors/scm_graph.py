"""Structural causal models as padded batched tensors: exogenous inputs and evaluation.

An `SCM` holds B graphs with their mechanisms; `exogenous_inputs` draws the inputs u of
every node and `propagate` evaluates the graphs on them. How graphs and mechanisms are
drawn, and how a classification task is read off the node values, is `priors.scm`'s
business (`SCMPrior.draw_scm`, `SCMPrior.observe`).

* **Graph.** Node indices are a topological order: ``adjacency[i, j] = 1`` marks an edge
  j → i (row i lists the parents of node i) and needs j < i, so the adjacency is strictly
  lower triangular.
* **Mechanisms.** A node with parents computes z = f(z_pa) + σ ε. f is a linear map under
  the node's activation, f = act(w·z_pa + b), a one-hidden-layer MLP, f = v·act(W z_pa + b),
  or a product node, f = act(w₀·z_pa + b₀) · act(w₁·z_pa + b₁). All share one layout: a
  linear node is an MLP whose only unit is unit 0, with v = e_0.
* **Roots** (nodes without parents) take z = u, drawn per root node from N(0, 1),
  U[-√3, √3] or an equal-weight mixture of MIXTURE_COMPONENTS Gaussians (the node's
  means, std MIXTURE_STD).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ACTIVATIONS",
    "MIXTURE_COMPONENTS",
    "MIXTURE_STD",
    "ROOT_DISTRIBUTIONS",
    "SCM",
    "exogenous_inputs",
    "propagate",
]

_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sin": torch.sin,
    "identity": lambda h: h,
}
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATION_FNS)
ROOT_DISTRIBUTIONS: tuple[str, ...] = ("normal", "uniform", "mixture")
MIXTURE_COMPONENTS = 3
MIXTURE_STD = 0.3


@dataclass(frozen=True)
class SCM:
    """B causal models padded to K nodes; node index = topological position.

    Nodes n_nodes..K-1 of a task are padding: no edges, no exogenous input, value 0.

    Attributes:
        adjacency_BKK: bool, [b, i, j] true for an edge j → i; strictly lower triangular.
        n_nodes: (B,) int64 nodes in use.
        num_used_features: (B,) int64 feature count d.
        weight_in_BKHK: [b, i, h, j] weight from parent j into unit h of node i (0 for
            non-parents and for the unused units of linear nodes).
        bias_in_BKH: bias of every unit (0 for unused units).
        weight_out_BKH: output weights v (e_0 for linear nodes).
        activation: (B, K) int64 index into ACTIVATIONS.
        is_mlp: (B, K) bool, MLP mechanism (else linear or product).
        is_product: (B, K) bool, product of units 0 and 1 (never together with is_mlp).
        root_kind: (B, K) int64 index into ROOT_DISTRIBUTIONS.
        mixture_means_BKM: component means of the "mixture" root distribution.
        noise_std: (B,) σ of the additive noise of non-root nodes.
        edge_prob: (B,) edge probability of each task.
    """

    adjacency_BKK: Tensor
    n_nodes: Tensor
    num_used_features: Tensor
    weight_in_BKHK: Tensor
    bias_in_BKH: Tensor
    weight_out_BKH: Tensor
    activation: Tensor
    is_mlp: Tensor
    is_product: Tensor
    root_kind: Tensor
    mixture_means_BKM: Tensor
    noise_std: Tensor
    edge_prob: Tensor

    @property
    def has_parent(self) -> Tensor:
        """(B, K) bool: the node has at least one parent (else it is a root or padding)."""
        return self.adjacency_BKK.any(-1)

    @property
    def valid(self) -> Tensor:
        """(B, K) bool: the node is in use."""
        return torch.arange(self.adjacency_BKK.shape[1]) < self.n_nodes[:, None]


def _apply_activations(pre_BHT: Tensor, activation_B: Tensor) -> Tensor:
    """act_b(pre[b]) with each task's own activation index, computed only where chosen."""
    out_BHT = pre_BHT
    for index, (name, fn) in enumerate(_ACTIVATION_FNS.items()):
        tasks = (activation_B == index).nonzero()[:, 0]
        if name != "identity" and len(tasks):
            out_BHT = out_BHT.clone() if out_BHT is pre_BHT else out_BHT
            out_BHT[tasks] = fn(pre_BHT[tasks])
    return out_BHT


def propagate(scm: SCM, u_BTK: Tensor) -> Tensor:
    """Node values z (B, T, K) from exogenous inputs u (B, T, K), in topological order.

    z_i = u_i for roots and padding, z_i = f_i(z_pa(i)) + u_i for the other nodes (their
    u_i is the scaled noise σ ε). One node at a time, all tasks and rows at once; node i
    reads only nodes 0..i-1, which are final by then.
    """
    has_parent_BK = scm.has_parent
    u_BKT = u_BTK.transpose(1, 2)
    z_BKT = torch.zeros_like(u_BKT, memory_format=torch.contiguous_format)
    for node in range(int(scm.n_nodes.max())):
        weight_BHJ = scm.weight_in_BKHK[:, node, :, :node]
        pre_BHT = torch.baddbmm(scm.bias_in_BKH[:, node, :, None], weight_BHJ, z_BKT[:, :node])
        hidden_BHT = _apply_activations(pre_BHT, scm.activation[:, node])
        f_BT = torch.bmm(scm.weight_out_BKH[:, node, None, :], hidden_BHT)[:, 0]
        if hidden_BHT.shape[1] > 1:
            product_BT = hidden_BHT[:, 0] * hidden_BHT[:, 1]
            f_BT = torch.where(scm.is_product[:, node, None], product_BT, f_BT)
        z_BKT[:, node] = torch.where(has_parent_BK[:, node, None], f_BT, 0.0) + u_BKT[:, node]
    return z_BKT.transpose(1, 2)


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Standard normals as float64, drawn in float32 (several times faster on CPU)."""
    return torch.randn(shape, generator=generator).to(torch.float64)


def exogenous_inputs(scm: SCM, n_rows: int, generator: torch.Generator) -> Tensor:
    """Exogenous inputs u (B, T, K): root values, σ ε for other nodes, 0 for padding.

    Each node uses one of the distributions, so they share one normal and one uniform
    draw: N(0, 1) = ε, U[-√3, √3] from u, mixture = mean[floor(3u)] + 0.3 ε, noise = σ ε.
    """
    b, k = scm.root_kind.shape
    shape = (b, n_rows, k)
    eps_BTK = _randn(shape, generator)
    unit_BTK = torch.rand(shape, generator=generator, dtype=torch.float64)
    component_BTK = (unit_BTK * MIXTURE_COMPONENTS).long().clamp_max(MIXTURE_COMPONENTS - 1)
    means_BTKM = scm.mixture_means_BKM[:, None].expand(*shape, MIXTURE_COMPONENTS)
    mixture_BTK = means_BTKM.gather(-1, component_BTK[..., None])[..., 0]
    mixture_BTK = mixture_BTK + MIXTURE_STD * eps_BTK
    kind_B1K = scm.root_kind[:, None, :]
    root_BTK = torch.where(kind_B1K == 0, eps_BTK, math.sqrt(3.0) * (2.0 * unit_BTK - 1.0))
    root_BTK = torch.where(kind_B1K == 2, mixture_BTK, root_BTK)
    u_BTK = torch.where(
        scm.has_parent[:, None, :], scm.noise_std[:, None, None] * eps_BTK, root_BTK
    )
    return u_BTK * scm.valid[:, None, :]
