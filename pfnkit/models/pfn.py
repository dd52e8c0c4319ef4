"""Prior-Data Fitted Network (Müller et al., arXiv 2112.10510) with a bar-distribution head."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pfnkit.distributions import BarDistribution
from pfnkit.nn import ContextBlock, FeedForward

__all__ = ["PFN", "ContextCache", "PFNConfig"]


@dataclass(frozen=True, kw_only=True)
class PFNConfig:
    """Architecture of a regression PFN.

    Attributes:
        num_features: input dimension D the model reads.
        d_model: token width.
        n_heads: attention heads.
        n_layers: transformer blocks.
        d_ff: hidden width of the feed-forward nets and of the output head.
        n_bars: buckets of the bar-distribution head.
    """

    num_features: int = 1
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 6
    d_ff: int = 256
    n_bars: int = 1000

    def __post_init__(self) -> None:
        for name in ("num_features", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"PFNConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_bars < 3:
            raise ValueError(f"n_bars must be at least 3, got {self.n_bars}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PFNConfig:
        return cls(**data)


@dataclass(frozen=True)
class ContextCache:
    """Per-layer context keys and values, each (B, H, N, K): the result of `encode_context`."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]


class PFN(nn.Module):
    """Maps a context set and query inputs to a `BarDistribution` over each query's target.

    One token per data point: an MLP embedding of x, plus a linear embedding of y for
    context points or a learned query marker for query points. Each block runs context
    self-attention and query-to-context cross-attention as one maskless SDPA call.

    Args:
        config: architecture.
        borders: (n_bars + 1,) bar borders, usually `borders_from_samples` of prior targets.
    """

    def __init__(self, config: PFNConfig, borders: Tensor) -> None:
        super().__init__()
        if borders.shape != (config.n_bars + 1,):
            raise ValueError(f"borders must have shape ({config.n_bars + 1},), got {borders.shape}")
        self.config = config
        d = config.d_model
        self.x_encoder = FeedForward(config.num_features, d, d)
        self.y_encoder = nn.Linear(1, d)
        self.query_marker = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            ContextBlock(d, config.n_heads, config.d_ff) for _ in range(config.n_layers)
        )
        self.norm_out = nn.LayerNorm(d)
        self.head = FeedForward(d, config.d_ff, config.n_bars)
        self.register_buffer("borders", borders.detach().clone().to(torch.float32))

    # ----------------------------------------------------------------------- embeddings
    def _check_inputs(self, x_BND: Tensor, name: str) -> None:
        if x_BND.ndim != 3 or x_BND.shape[-1] != self.config.num_features:
            raise ValueError(
                f"{name} must have shape (B, N, {self.config.num_features}), "
                f"got {tuple(x_BND.shape)}"
            )

    def embed_context(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor) -> Tensor:
        self._check_inputs(x_ctx_BND, "x_ctx")
        if x_ctx_BND.shape[1] == 0:
            raise ValueError("the context is empty; a PFN needs at least one context point")
        if y_ctx_BN.shape != x_ctx_BND.shape[:2]:
            raise ValueError(f"y_ctx must have shape {tuple(x_ctx_BND.shape[:2])}")
        return self.x_encoder(x_ctx_BND) + self.y_encoder(y_ctx_BN.unsqueeze(-1))

    def embed_queries(self, x_qry_BMD: Tensor) -> Tensor:
        self._check_inputs(x_qry_BMD, "x_qry")
        return self.x_encoder(x_qry_BMD) + self.query_marker

    def bar_logits(self, h_qry_BMD: Tensor) -> Tensor:
        """Decode final query tokens into bar logits (B, M, n_bars)."""
        return self.head(self.norm_out(h_qry_BMD))

    def output_distribution(self, logits_BMK: Tensor) -> BarDistribution:
        return BarDistribution(self.borders, logits_BMK)

    # ------------------------------------------------------------------------- passes
    def forward(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor, x_qry_BMD: Tensor) -> BarDistribution:
        """One pass over context and queries; the distribution has batch shape (B, M)."""
        h_ctx_BND = self.embed_context(x_ctx_BND, y_ctx_BN)
        h_qry_BMD = self.embed_queries(x_qry_BMD)
        n = h_ctx_BND.shape[1]
        h_all_BTD = torch.cat([h_ctx_BND, h_qry_BMD], dim=1)
        for block in self.blocks:
            k_BHNK, v_BHNK = block.context_keys_values(h_all_BTD[:, :n])
            h_all_BTD = block(h_all_BTD, k_BHNK, v_BHNK)
        return self.output_distribution(self.bar_logits(h_all_BTD[:, n:]))

    def encode_context(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor) -> ContextCache:
        """Run the context through every layer once and keep each layer's keys and values."""
        h_ctx_BND = self.embed_context(x_ctx_BND, y_ctx_BN)
        keys, values = [], []
        for block in self.blocks:
            k_BHNK, v_BHNK = block.context_keys_values(h_ctx_BND)
            keys.append(k_BHNK)
            values.append(v_BHNK)
            h_ctx_BND = block(h_ctx_BND, k_BHNK, v_BHNK)
        return ContextCache(tuple(keys), tuple(values))

    def predict_from_cache(
        self, cache: ContextCache, x_qry_BMD: Tensor, *, chunk_size: int | None = None
    ) -> BarDistribution:
        """Predict queries against a cached context, `chunk_size` query points at a time."""
        self._check_inputs(x_qry_BMD, "x_qry")
        m = x_qry_BMD.shape[1]
        step = max(1, m if chunk_size is None else chunk_size)
        logits = []
        for start in range(0, max(m, 1), step):
            h_qry_BMD = self.embed_queries(x_qry_BMD[:, start : start + step])
            for block, k_BHNK, v_BHNK in zip(self.blocks, cache.keys, cache.values, strict=True):
                h_qry_BMD = block(h_qry_BMD, k_BHNK, v_BHNK)
            logits.append(self.bar_logits(h_qry_BMD))
        return self.output_distribution(torch.cat(logits, dim=1))

    def use_reference_attention(self, enabled: bool = True) -> None:
        """Switch every layer to the plain softmax(QKᵀ/√d)V attention (tests only)."""
        for block in self.blocks:
            block.attn.use_reference = enabled

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
