"""Distribution Transformer (Whittle et al., arXiv 2502.02463): GMM prior + data → GMM posterior.

The prior is an input: each of its K Gaussian components is one token carrying the
component's log weight, mean and Cholesky factor. Each observation is one more token.
All tokens attend to all tokens through the same maskless SDPA blocks as the PFN, so the
model is invariant to the order of the observations and equivariant in the components.
Each component token is decoded into one posterior component, relative to its prior:

    logit' = log w + Δ,   μ' = μ + L a,   L' = L M,

with M lower-triangular with a positive diagonal, so L' is again a valid Cholesky factor
and a posterior can be fed back in as the next prior.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from pfnkit.data import Batch
from pfnkit.nn import ContextBlock, FeedForward

__all__ = ["DTConfig", "DistributionTransformer", "gmm"]

_MAX_LOG_SHRINK = 5.0  # bound on |log diag M|: posterior scales within e^±5 of the prior's


@dataclass(frozen=True, kw_only=True)
class DTConfig:
    """Architecture of a Distribution Transformer.

    Attributes:
        dim: dimension d of θ.
        obs_dim: length of one observation vector.
        k_max: the most prior components the model was built (and trained) for.
        d_model: token width.
        n_heads: attention heads.
        n_layers: transformer blocks.
        d_ff: hidden width of the feed-forward nets and of the encoders and head.
    """

    dim: int = 2
    obs_dim: int = 2
    k_max: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    d_ff: int = 256

    def __post_init__(self) -> None:
        for name in ("dim", "obs_dim", "k_max", "d_model", "n_heads", "n_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"DTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")

    @property
    def component_features(self) -> int:
        """log weight, mean, log-diagonal and strict lower triangle of the Cholesky factor."""
        d = self.dim
        return 1 + d + d + d * (d - 1) // 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DTConfig:
        return cls(**data)


def gmm(logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor) -> MixtureSameFamily:
    """The mixture with these component logits, means and Cholesky factors."""
    return MixtureSameFamily(
        Categorical(logits=logits_BK),
        MultivariateNormal(means_BKD, scale_tril=scale_tril_BKDD, validate_args=False),
        validate_args=False,
    )


class DistributionTransformer(nn.Module):
    """Maps a GMM prior over θ and a set of observations to a GMM posterior over θ."""

    def __init__(self, config: DTConfig) -> None:
        super().__init__()
        self.config = config
        d, d_model = config.dim, config.d_model
        self.component_encoder = FeedForward(config.component_features + 1, config.d_ff, d_model)
        self.obs_encoder = FeedForward(config.obs_dim + 1, config.d_ff, d_model)
        self.blocks = nn.ModuleList(
            ContextBlock(d_model, config.n_heads, config.d_ff) for _ in range(config.n_layers)
        )
        self.norm_out = nn.LayerNorm(d_model)
        self.head = FeedForward(d_model, config.d_ff, 1 + d + d * (d + 1) // 2)
        rows, cols = torch.tril_indices(d, d)
        self.register_buffer("_tril_rows", rows, persistent=False)
        self.register_buffer("_tril_cols", cols, persistent=False)

    # ------------------------------------------------------------------------- checks
    def check_inputs(
        self, logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor, obs_BND: Tensor
    ) -> None:
        """Raise a ValueError naming the first input whose shape does not fit the model."""
        cfg = self.config
        if logits_BK.ndim != 2:
            raise ValueError(f"prior logits must be (B, K), got {tuple(logits_BK.shape)}")
        b, k = logits_BK.shape
        if not 1 <= k <= cfg.k_max:
            raise ValueError(f"the prior has {k} components but this model takes 1 to {cfg.k_max}")
        if means_BKD.shape != (b, k, cfg.dim):
            raise ValueError(
                f"prior means must be (B, K, d) = {(b, k, cfg.dim)}, got {tuple(means_BKD.shape)}"
            )
        if scale_tril_BKDD.shape != (b, k, cfg.dim, cfg.dim):
            raise ValueError(
                f"prior Cholesky factors must be {(b, k, cfg.dim, cfg.dim)}, "
                f"got {tuple(scale_tril_BKDD.shape)}"
            )
        if obs_BND.ndim != 3 or obs_BND.shape[0] != b or obs_BND.shape[2] != cfg.obs_dim:
            raise ValueError(
                f"observations must be (B, N, {cfg.obs_dim}) with B={b}, got {tuple(obs_BND.shape)}"
            )

    # ----------------------------------------------------------------------- encoding
    def _component_tokens(
        self, logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor, n_obs: int
    ) -> Tensor:
        d = self.config.dim
        log_w_BK1 = logits_BK.log_softmax(-1).unsqueeze(-1)
        log_diag_BKD = scale_tril_BKDD.diagonal(dim1=-2, dim2=-1).log()
        rows, cols = torch.tril_indices(d, d, offset=-1, device=logits_BK.device)
        off_BKL = scale_tril_BKDD[..., rows, cols]
        count_BK1 = torch.full_like(log_w_BK1, math.log1p(n_obs))
        feats = [log_w_BK1, means_BKD, log_diag_BKD, off_BKL, count_BK1]
        return self.component_encoder(torch.cat(feats, dim=-1))

    def _obs_tokens(self, obs_BND: Tensor) -> Tensor:
        count_BN1 = torch.full_like(obs_BND[..., :1], math.log1p(obs_BND.shape[1]))
        return self.obs_encoder(torch.cat([obs_BND, count_BN1], dim=-1))

    # ------------------------------------------------------------------------ forward
    def forward(
        self, logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor, obs_BND: Tensor
    ) -> MixtureSameFamily:
        """Posterior GMM with batch shape (B,) and K components, one per prior component.

        Args:
            logits_BK: prior component log weights (normalisation not required).
            means_BKD: prior component means.
            scale_tril_BKDD: prior component Cholesky factors (positive diagonals).
            obs_BND: N observations per task (N may be 0).
        """
        self.check_inputs(logits_BK, means_BKD, scale_tril_BKDD, obs_BND)
        k = logits_BK.shape[1]
        h_comp = self._component_tokens(logits_BK, means_BKD, scale_tril_BKDD, obs_BND.shape[1])
        h_BTD = torch.cat([h_comp, self._obs_tokens(obs_BND)], dim=1)
        for block in self.blocks:
            k_BHTK, v_BHTK = block.context_keys_values(h_BTD)
            h_BTD = block(h_BTD, k_BHTK, v_BHTK)
        out_BKF = self.head(self.norm_out(h_BTD[:, :k]))
        return self._decode(out_BKF, logits_BK, means_BKD, scale_tril_BKDD)

    def _decode(
        self, out_BKF: Tensor, logits_BK: Tensor, means_BKD: Tensor, scale_tril_BKDD: Tensor
    ) -> MixtureSameFamily:
        d = self.config.dim
        delta_BK, shift_BKD, tril_BKL = out_BKF.split([1, d, d * (d + 1) // 2], dim=-1)
        logits = logits_BK.log_softmax(-1) + delta_BK.squeeze(-1)
        means = means_BKD + (scale_tril_BKDD @ shift_BKD.unsqueeze(-1)).squeeze(-1)
        m_BKDD = out_BKF.new_zeros(*out_BKF.shape[:2], d, d)
        m_BKDD[..., self._tril_rows, self._tril_cols] = tril_BKL
        log_diag = m_BKDD.diagonal(dim1=-2, dim2=-1)
        bounded = _MAX_LOG_SHRINK * torch.tanh(log_diag / _MAX_LOG_SHRINK)
        m_BKDD = m_BKDD - torch.diag_embed(log_diag) + torch.diag_embed(bounded.exp())
        return gmm(logits, means, scale_tril_BKDD @ m_BKDD)

    def from_batch(self, batch: Batch) -> MixtureSameFamily:
        """The posterior for a `Batch` of the GMM prior (prior in meta, observations in x_ctx)."""
        meta = batch.meta
        return self(
            meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], batch.x_ctx
        )

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
