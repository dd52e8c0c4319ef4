"""Prior-Data Fitted Network (Müller et al., arXiv 2112.10510): bar-distribution or class head."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from pfnkit.distributions import BarDistribution
from pfnkit.models.context_scaling import LocScaleBars, context_loc_scale
from pfnkit.nn import ContextBlock, FeedForward

__all__ = ["PFN", "ContextCache", "PFNConfig"]


@dataclass(frozen=True, kw_only=True)
class PFNConfig:
    """Architecture of a PFN: a regressor (bar-distribution head) or a classifier.

    Attributes:
        num_features: input dimension D the model reads.
        d_model: token width.
        n_heads: attention heads.
        n_layers: transformer blocks.
        d_ff: hidden width of the feed-forward nets and of the output head.
        n_bars: buckets of the bar-distribution head (regression only).
        n_classes: 0 for regression; C >= 2 for classification over labels 0..C-1,
            with a Categorical head and embedded context labels.
        y_context_floor: 0 reads the targets as they are. A positive value (regression
            only) standardizes each task's targets by its context mean and
            ``sqrt(var + y_context_floor²)``, embeds that mean and log scale into the
            context tokens, and returns a `LocScaleBars` whose bars live on the z scale
            (`pfnkit.models.context_scaling`).
    """

    num_features: int = 1
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 6
    d_ff: int = 256
    n_bars: int = 1000
    n_classes: int = 0
    y_context_floor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("num_features", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"PFNConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_classes == 1 or self.n_classes < 0:
            raise ValueError(
                f"n_classes must be 0 (regression) or at least 2 (classification), "
                f"got {self.n_classes}"
            )
        if not self.is_classifier and self.n_bars < 3:
            raise ValueError(f"n_bars must be at least 3, got {self.n_bars}")
        if self.y_context_floor < 0 or (self.y_context_floor > 0 and self.is_classifier):
            raise ValueError(
                "y_context_floor must be 0, or positive for a regression PFN; "
                f"got {self.y_context_floor} with n_classes={self.n_classes}"
            )

    @property
    def is_classifier(self) -> bool:
        return self.n_classes >= 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PFNConfig:
        return cls(**data)


@dataclass(frozen=True)
class ContextCache:
    """Per-layer context keys and values, each (B, H, N, K): the result of `encode_context`.

    `loc` and `scale` ((B, 1)) are the context's target statistics of a PFN that
    standardizes per context (`PFNConfig.y_context_floor`), else None.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    loc: Tensor | None = None
    scale: Tensor | None = None


class PFN(nn.Module):
    """Maps a context set and query inputs to a predictive distribution for each query.

    One token per data point: an MLP embedding of x, plus an embedding of y for context
    points (linear for a regression target, a lookup table for a class label) or a learned
    query marker for query points. Each block runs context self-attention and
    query-to-context cross-attention as one maskless SDPA call. The head decodes a
    `BarDistribution` (regression) or a `Categorical` over `config.n_classes` labels
    (classification).

    Args:
        config: architecture.
        borders: (n_bars + 1,) bar borders for regression, usually `borders_from_samples`
            of prior targets; None for classification.
    """

    def __init__(self, config: PFNConfig, borders: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.x_encoder = FeedForward(config.num_features, d, d)
        if config.is_classifier:
            if borders is not None:
                raise ValueError(
                    f"a classification PFN (n_classes={config.n_classes}) has no bar borders; "
                    "pass borders=None"
                )
            self.label_embedding = nn.Embedding(config.n_classes, d)
        else:
            if borders is None or borders.shape != (config.n_bars + 1,):
                got = None if borders is None else tuple(borders.shape)
                raise ValueError(
                    f"a regression PFN needs borders of shape ({config.n_bars + 1},), got {got}; "
                    "build them with borders_from_samples(prior targets, n_bars)"
                )
            self.y_encoder = nn.Linear(1, d)
            if config.y_context_floor > 0:
                self.stat_encoder = nn.Linear(2, d)  # the context's (loc, log scale)
        self.query_marker = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            ContextBlock(d, config.n_heads, config.d_ff) for _ in range(config.n_layers)
        )
        self.norm_out = nn.LayerNorm(d)
        n_out = config.n_classes if config.is_classifier else config.n_bars
        self.head = FeedForward(d, config.d_ff, n_out)
        if not config.is_classifier:
            self.register_buffer("borders", borders.detach().clone().to(torch.float32))

    # ----------------------------------------------------------------------- embeddings
    def _check_inputs(self, x_BND: Tensor, name: str) -> None:
        if x_BND.ndim != 3 or x_BND.shape[-1] != self.config.num_features:
            raise ValueError(
                f"{name} must have shape (B, N, {self.config.num_features}), "
                f"got {tuple(x_BND.shape)}"
            )

    def context_stats(self, y_ctx_BN: Tensor) -> tuple[Tensor, Tensor] | None:
        """(loc, scale), each (B, 1), of a PFN that standardizes per context; else None."""
        if self.config.y_context_floor <= 0:
            return None
        return context_loc_scale(y_ctx_BN, self.config.y_context_floor)

    def embed_context(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor) -> Tensor:
        return self._embed_context(x_ctx_BND, y_ctx_BN)[0]

    def _embed_context(
        self, x_ctx_BND: Tensor, y_ctx_BN: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Context tokens, and the `context_stats` they were standardized by (or None)."""
        self._check_inputs(x_ctx_BND, "x_ctx")
        if x_ctx_BND.shape[1] == 0:
            raise ValueError("the context is empty; a PFN needs at least one context point")
        if y_ctx_BN.shape != x_ctx_BND.shape[:2]:
            raise ValueError(f"y_ctx must have shape {tuple(x_ctx_BND.shape[:2])}")
        stats = self.context_stats(y_ctx_BN)
        if stats is None:
            return self.x_encoder(x_ctx_BND) + self.embed_targets(y_ctx_BN), None
        loc_B1, scale_B1 = stats
        stats_B12 = torch.stack([loc_B1, scale_B1.log()], dim=-1).to(x_ctx_BND.dtype)
        z_BN = ((y_ctx_BN - loc_B1) / scale_B1).to(y_ctx_BN.dtype)
        h_BND = self.x_encoder(x_ctx_BND) + self.embed_targets(z_BN) + self.stat_encoder(stats_B12)
        return h_BND, stats

    def embed_targets(self, y_ctx_BN: Tensor) -> Tensor:
        """(B, N, d_model) embedding of context targets: linear, or a label lookup table."""
        if not self.config.is_classifier:
            return self.y_encoder(y_ctx_BN.unsqueeze(-1))
        labels_BN = y_ctx_BN.long()
        invalid = (labels_BN != y_ctx_BN) | (labels_BN < 0) | (labels_BN >= self.config.n_classes)
        if invalid.any():
            last = self.config.n_classes - 1
            raise ValueError(
                f"y_ctx of a classification PFN must hold class labels 0..{last}; "
                f"{int(invalid.sum())} value(s) are not: encode the labels as 0..{last} first"
            )
        return self.label_embedding(labels_BN)

    def embed_queries(self, x_qry_BMD: Tensor) -> Tensor:
        self._check_inputs(x_qry_BMD, "x_qry")
        return self.x_encoder(x_qry_BMD) + self.query_marker

    def head_logits(self, h_qry_BMD: Tensor) -> Tensor:
        """Decode final query tokens into logits (B, M, n_bars or n_classes)."""
        return self.head(self.norm_out(h_qry_BMD))

    def output_distribution(
        self,
        logits_BMK: Tensor,
        *,
        validate_args: bool | None = None,
        loc_scale: tuple[Tensor, Tensor] | None = None,
    ) -> BarDistribution | LocScaleBars | Categorical:
        """The head's distribution; `validate_args=False` skips torch's pass over the logits.

        With `loc_scale` (a PFN that standardizes per context), the bars are on the z scale
        and the result is their `LocScaleBars` on the y scale.
        """
        if loc_scale is not None:
            bars = BarDistribution(self.borders, logits_BMK, validate_args=validate_args)
            return LocScaleBars(bars, *loc_scale)
        if self.config.is_classifier:  # half-precision logits (autocast) are read in float32
            logits_BMK = logits_BMK.to(torch.promote_types(logits_BMK.dtype, torch.float32))
            # torch's argument validation cannot reshape an empty (B, 0, C) batch
            validate = False if logits_BMK.numel() == 0 else validate_args
            return Categorical(logits=logits_BMK, validate_args=validate)
        return BarDistribution(self.borders, logits_BMK, validate_args=validate_args)

    # ------------------------------------------------------------------------- passes
    def forward(
        self, x_ctx_BND: Tensor, y_ctx_BN: Tensor, x_qry_BMD: Tensor
    ) -> BarDistribution | LocScaleBars | Categorical:
        """One pass over context and queries; the distribution has batch shape (B, M)."""
        h_ctx_BND, loc_scale = self._embed_context(x_ctx_BND, y_ctx_BN)
        h_qry_BMD = self.embed_queries(x_qry_BMD)
        n = h_ctx_BND.shape[1]
        h_all_BTD = torch.cat([h_ctx_BND, h_qry_BMD], dim=1)
        for block in self.blocks:
            k_BHNK, v_BHNK = block.context_keys_values(h_all_BTD[:, :n])
            h_all_BTD = block(h_all_BTD, k_BHNK, v_BHNK)
        return self.output_distribution(self.head_logits(h_all_BTD[:, n:]), loc_scale=loc_scale)

    def encode_context(self, x_ctx_BND: Tensor, y_ctx_BN: Tensor) -> ContextCache:
        """Run the context through every layer once and keep each layer's keys and values."""
        h_ctx_BND, loc_scale = self._embed_context(x_ctx_BND, y_ctx_BN)
        keys, values = [], []
        for block in self.blocks:
            k_BHNK, v_BHNK = block.context_keys_values(h_ctx_BND)
            keys.append(k_BHNK)
            values.append(v_BHNK)
            h_ctx_BND = block(h_ctx_BND, k_BHNK, v_BHNK)
        loc, scale = (None, None) if loc_scale is None else loc_scale
        return ContextCache(tuple(keys), tuple(values), loc, scale)

    def predict_from_cache(
        self,
        cache: ContextCache,
        x_qry_BMD: Tensor,
        *,
        chunk_size: int | None = None,
        validate_args: bool | None = None,
    ) -> BarDistribution | LocScaleBars | Categorical:
        """Predict queries against a cached context, `chunk_size` query points at a time.

        `validate_args=False` skips torch's check of the logits, for a caller that checks
        what it derives from them (the estimators check their ensemble's masses).
        """
        self._check_inputs(x_qry_BMD, "x_qry")
        m = x_qry_BMD.shape[1]
        step = max(1, m if chunk_size is None else chunk_size)
        logits = []
        for start in range(0, max(m, 1), step):
            h_qry_BMD = self.embed_queries(x_qry_BMD[:, start : start + step])
            for block, k_BHNK, v_BHNK in zip(self.blocks, cache.keys, cache.values, strict=True):
                h_qry_BMD = block(h_qry_BMD, k_BHNK, v_BHNK)
            logits.append(self.head_logits(h_qry_BMD))
        logits_BMK = logits[0] if len(logits) == 1 else torch.cat(logits, dim=1)
        loc_scale = None if cache.loc is None else (cache.loc, cache.scale)
        return self.output_distribution(
            logits_BMK, validate_args=validate_args, loc_scale=loc_scale
        )

    def use_reference_attention(self, enabled: bool = True) -> None:
        """Switch every layer to the plain softmax(QKᵀ/√d)V attention (tests only)."""
        for block in self.blocks:
            block.attn.use_reference = enabled

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
