"""Pre-norm transformer block where every token attends to the context tokens only."""

from __future__ import annotations

from torch import Tensor, nn

from pfnkit.nn.attention import KVAttention

__all__ = ["ContextBlock", "FeedForward"]


class FeedForward(nn.Sequential):
    """Linear → GELU → Linear."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


class ContextBlock(nn.Module):
    """One layer: attention onto the context, then a feed-forward net, both residual.

    Context tokens attend to all context tokens; query tokens attend to the context
    tokens and never to each other. Because context tokens never see queries, the
    context's keys and values of every layer can be computed once and reused.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = KVAttention(d_model, n_heads)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, d_model)

    def context_keys_values(self, h_ctx_BND: Tensor) -> tuple[Tensor, Tensor]:
        return self.attn.keys_values(self.norm_attn(h_ctx_BND))

    def forward(self, h_BTD: Tensor, k_BHNK: Tensor, v_BHNK: Tensor) -> Tensor:
        """Update tokens `h_BTD` given this layer's context keys and values."""
        h_BTD = h_BTD + self.attn(self.norm_attn(h_BTD), k_BHNK, v_BHNK)
        return h_BTD + self.ff(self.norm_ff(h_BTD))
