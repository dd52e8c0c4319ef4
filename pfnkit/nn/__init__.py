"""Neural building blocks: fused attention with a key/value cache, and transformer blocks."""

from pfnkit.nn.attention import KVAttention, reference_attention
from pfnkit.nn.blocks import ContextBlock, FeedForward

__all__ = ["ContextBlock", "FeedForward", "KVAttention", "reference_attention"]
