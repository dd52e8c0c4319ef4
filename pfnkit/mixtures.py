"""Gaussian-mixture helpers: draws that take a `torch.Generator` (torch's `sample` cannot)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

__all__ = ["mixture_task", "sample_mixture"]


def _component_draws(
    components: Distribution, index_bS: Tensor, generator: torch.Generator
) -> Tensor:
    """One draw from the chosen component of each flattened task: shape (b, S, *event)."""
    n_components = components.batch_shape[-1]
    event = components.event_shape
    rows_b1 = torch.arange(index_bS.shape[0], device=index_bS.device).unsqueeze(-1)
    if isinstance(components, MultivariateNormal):
        loc_bSP = components.loc.reshape(-1, n_components, *event)[rows_b1, index_bS]
        tril_bKPP = components.scale_tril.reshape(-1, n_components, *event, *event)
        z_bSP = torch.randn(
            loc_bSP.shape, generator=generator, dtype=loc_bSP.dtype, device=loc_bSP.device
        )
        return loc_bSP + (tril_bKPP[rows_b1, index_bS] @ z_bSP.unsqueeze(-1)).squeeze(-1)
    base = components
    if isinstance(components, Independent) and components.reinterpreted_batch_ndims == 1:
        base = components.base_dist
    if isinstance(base, Normal) and len(event) <= 1:
        loc = base.loc.expand(base.batch_shape).reshape(-1, n_components, *event)
        scale = base.scale.expand(base.batch_shape).reshape(-1, n_components, *event)
        loc, scale = loc[rows_b1, index_bS], scale[rows_b1, index_bS]
        z = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + scale * z
    raise TypeError(
        f"cannot sample {type(components).__name__} components with a generator; use "
        "MultivariateNormal, Normal or Independent(Normal, 1) components"
    )


def sample_mixture(
    mixture: MixtureSameFamily, n_samples: int, *, generator: torch.Generator
) -> Tensor:
    """Draws from a Gaussian mixture that use only ``generator`` (torch's `sample` cannot).

    Args:
        mixture: ``MixtureSameFamily`` with MultivariateNormal, Normal or
            Independent(Normal, 1) components.
        n_samples: S.

    Returns:
        Samples of shape (S, *batch_shape, *event_shape), detached.
    """
    if not isinstance(mixture, MixtureSameFamily):
        raise TypeError(f"expected a MixtureSameFamily, got {type(mixture).__name__}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    with torch.no_grad():
        probs = mixture.mixture_distribution.probs
        probs_bK = probs.expand(*mixture.batch_shape, probs.shape[-1]).reshape(-1, probs.shape[-1])
        index_bS = torch.multinomial(probs_bK, n_samples, replacement=True, generator=generator)
        draws = _component_draws(mixture.component_distribution, index_bS, generator)
    draws = draws.movedim(1, 0)  # (S, b, *event)
    return draws.reshape(n_samples, *mixture.batch_shape, *mixture.event_shape)


def mixture_task(mixture: MixtureSameFamily, index: int) -> MixtureSameFamily:
    """Task ``index`` of a Gaussian mixture with batch shape (B,): batch shape ()."""
    comp = mixture.component_distribution
    if not isinstance(comp, MultivariateNormal):
        raise TypeError(f"expected MultivariateNormal components, got {type(comp).__name__}")
    return MixtureSameFamily(
        Categorical(logits=mixture.mixture_distribution.logits[index]),
        MultivariateNormal(comp.loc[index], scale_tril=comp.scale_tril[index]),
    )
