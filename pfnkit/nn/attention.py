"""Maskless attention of all tokens onto context tokens, fused via SDPA, with cacheable K/V."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["KVAttention", "reference_attention"]


def reference_attention(q_BHTK: Tensor, k_BHNK: Tensor, v_BHNK: Tensor) -> Tensor:
    """Plain softmax(QKᵀ/√d)V, for tests only: materialises the full score matrix."""
    scores_BHTN = q_BHTK @ k_BHNK.transpose(-2, -1) / math.sqrt(q_BHTK.shape[-1])
    return scores_BHTN.softmax(dim=-1) @ v_BHNK


class KVAttention(nn.Module):
    """Multi-head attention whose keys and values come from the context tokens only.

    Queries may be any tokens (context or query points); no mask is ever needed, so
    `F.scaled_dot_product_attention` can pick its fused kernels. Keys and values are
    exposed separately (`keys_values`) so a caller can cache them.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.use_reference = False

    def _split_heads(self, h_BTD: Tensor) -> Tensor:
        b, t, d = h_BTD.shape
        return h_BTD.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def keys_values(self, h_ctx_BND: Tensor) -> tuple[Tensor, Tensor]:
        """Per-head keys and values of the (normalised) context tokens, (B, H, N, K) each."""
        k_BND, v_BND = self.kv_proj(h_ctx_BND).chunk(2, dim=-1)
        return self._split_heads(k_BND), self._split_heads(v_BND)

    def forward(self, h_BTD: Tensor, k_BHNK: Tensor, v_BHNK: Tensor) -> Tensor:
        """Attend tokens `h_BTD` onto cached context keys/values; returns (B, T, D)."""
        q_BHTK = self._split_heads(self.q_proj(h_BTD))
        if self.use_reference:
            out_BHTK = reference_attention(q_BHTK, k_BHNK, v_BHNK)
        else:
            out_BHTK = F.scaled_dot_product_attention(q_BHTK, k_BHNK, v_BHNK)
        b, h, t, k = out_BHTK.shape
        return self.out_proj(out_BHTK.transpose(1, 2).reshape(b, t, h * k))
