"""`PosteriorEstimator`: a GMM prior chosen at inference time plus data → GMM posterior.

The estimator wraps a Distribution Transformer checkpoint (Whittle et al., arXiv
2502.02463). A posterior it returns can be passed straight back as the next prior, which
is how sequential updates (and sensor fusion) work.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.data import check_finite
from pfnkit.mixtures import mixture_task
from pfnkit.models import DistributionTransformer

__all__ = ["GMMPriorSpec", "PosteriorEstimator"]

log = logging.getLogger(__name__)

WEIGHT_SUM_TOL = 1e-6  # |Σ weights - 1| accepted as rounding
# (weights (K,), means (K, d), covariances (K, d, d)) or a mixture of MVNs
GMMPriorSpec = MixtureSameFamily | tuple[Any, Any, Any]


class PosteriorEstimator:
    """Amortized posterior over θ for any GMM prior, from a Distribution Transformer checkpoint.

    Args:
        checkpoint: short name (e.g. "dt-gauss2d") or path of a `model_kind == "dt"` card.
        device: where the model runs.
        dtype: computation dtype; float64 by default so results do not depend on batching.

    Example:
        >>> est = PosteriorEstimator("dt-gauss2d")
        >>> post = est.posterior(([1.0], [[0.0, 0.0]], [[[4.0, 0.0], [0.0, 4.0]]]), x)
        >>> post = est.posterior(post, x_next)  # sequential update
    """

    def __init__(
        self,
        checkpoint: str = "dt-gauss2d",
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.dtype = dtype
        self._loaded: Checkpoint = load_checkpoint(checkpoint, device=self.device)
        if not isinstance(self._loaded.model, DistributionTransformer):
            raise ValueError(
                f"checkpoint {checkpoint!r} holds a {self._loaded.card['model_kind']!r} model; "
                "PosteriorEstimator needs a Distribution Transformer ('dt') checkpoint"
            )
        self.model: DistributionTransformer = self._loaded.model.to(dtype)

    @property
    def card(self) -> dict[str, Any]:
        return self._loaded.card

    @property
    def trained_n_obs_max(self) -> int:
        return int(self.card["train_config"]["n_ctx_max"])

    # ------------------------------------------------------------------------ inputs
    def prior_parameters(self, prior: GMMPriorSpec) -> tuple[Tensor, Tensor, Tensor]:
        """(logits (K,), means (K, d), Cholesky factors (K, d, d)) of a prior, validated."""
        cfg = self.model.config
        as_tensor = lambda v: torch.as_tensor(np.asarray(v), dtype=self.dtype)  # noqa: E731
        if isinstance(prior, MixtureSameFamily):
            mix, comp = prior.mixture_distribution, prior.component_distribution
            if not isinstance(comp, MultivariateNormal) or not isinstance(mix, Categorical):
                raise TypeError("a mixture prior must be MixtureSameFamily(Categorical, MVN)")
            if prior.batch_shape != ():
                raise ValueError(f"pass one prior at a time, got batch_shape {prior.batch_shape}")
            logits = mix.logits.to(self.dtype).log_softmax(-1)
            means, tril = comp.loc.to(self.dtype), comp.scale_tril.to(self.dtype)
        elif isinstance(prior, tuple | list) and len(prior) == 3:
            weights, means, covs = (as_tensor(v) for v in prior)
            logits = self._checked_log_weights(weights)
            means, tril = means, self._checked_cholesky(covs, means)
        else:
            raise TypeError(
                "prior must be (weights, means, covariances) or a MixtureSameFamily of MVNs"
            )
        k = logits.shape[0]
        if means.shape != (k, cfg.dim) or tril.shape != (k, cfg.dim, cfg.dim):
            raise ValueError(
                f"prior means must be (K, {cfg.dim}) and covariances (K, {cfg.dim}, {cfg.dim}) "
                f"with K={k}; got {tuple(means.shape)} and {tuple(tril.shape)}"
            )
        if k > cfg.k_max:
            raise ValueError(
                f"the prior has {k} components, but checkpoint {self.checkpoint!r} takes at most "
                f"{cfg.k_max}; merge or prune components first"
            )
        for name, value in (("prior means", means), ("prior covariances", tril)):
            check_finite(name, value)
        return logits, means, tril

    @staticmethod
    def _checked_log_weights(weights: Tensor) -> Tensor:
        if weights.ndim != 1 or weights.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D array, got {tuple(weights.shape)}")
        check_finite("prior weights", weights)
        if (weights < 0).any():
            raise ValueError(f"prior weights must be non-negative, got {weights.tolist()}")
        total = float(weights.sum())
        if abs(total - 1.0) > WEIGHT_SUM_TOL:
            raise ValueError(f"prior weights must sum to 1, they sum to {total:.8g}")
        return weights.log()

    def _checked_cholesky(self, covs: Tensor, means: Tensor) -> Tensor:
        d = self.model.config.dim
        if covs.ndim != 3 or covs.shape[1:] != (d, d):
            raise ValueError(f"covariances must be (K, {d}, {d}), got {tuple(covs.shape)}")
        check_finite("prior covariances", covs)
        if not torch.allclose(covs, covs.transpose(-1, -2), atol=1e-10, rtol=1e-8):
            raise ValueError("prior covariances must be symmetric")
        tril, info = torch.linalg.cholesky_ex(covs)
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(f"prior covariance(s) of component(s) {bad} are not positive definite")
        return tril

    def observations_tensor(self, observations: Any) -> Tensor:
        """Observations as an (N, obs_dim) tensor, validated (N may be 0)."""
        obs_dim = self.model.config.obs_dim
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float64), dtype=self.dtype)
        if obs.ndim == 1 and obs.numel() == 0:
            obs = obs.reshape(0, obs_dim)
        if obs.ndim != 2 or obs.shape[1] != obs_dim:
            raise ValueError(
                f"observations must be (N, {obs_dim}) for checkpoint {self.checkpoint!r}, "
                f"got {tuple(obs.shape)}"
            )
        check_finite("observations", obs)
        if obs.shape[0] > self.trained_n_obs_max:
            warnings.warn(
                f"{obs.shape[0]} observations, but checkpoint {self.checkpoint!r} was trained "
                f"on at most {self.trained_n_obs_max}; the posterior may be miscalibrated. "
                "Consider feeding them in batches, each posterior as the next prior.",
                stacklevel=3,
            )
        return obs

    # ------------------------------------------------------------------------ output
    @torch.no_grad()
    def posterior(self, prior: GMMPriorSpec, observations: Any) -> MixtureSameFamily:
        """The GMM posterior p(θ | observations) under `prior`, batch_shape ().

        Args:
            prior: (weights (K,), means (K, d), covariances (K, d, d)) or a
                `MixtureSameFamily(Categorical, MultivariateNormal)`, e.g. an earlier
                posterior.
            observations: (N, obs_dim) array; N = 0 returns the model's prior fit.
        """
        logits, means, tril = self.prior_parameters(prior)
        obs = self.observations_tensor(observations).to(self.device)
        post = self.model(
            logits[None].to(self.device),
            means[None].to(self.device),
            tril[None].to(self.device),
            obs[None],
        )
        return mixture_task(post, 0)
