"""Per-context standardization of a regression PFN's targets, and the predictive it implies.

A PFN with ``PFNConfig.y_context_floor > 0`` reads each task's context targets standardized
by that task's own statistics, ``z = (y - loc) / scale`` with ``loc`` the context mean and
``scale = sqrt(var + floor²)`` (`context_loc_scale`), and its bars live on the z scale. Its
predictive for y is then ``loc + scale * Z`` (`LocScaleBars`): the density picks up the
Jacobian ``1 / scale``, so the training loss is the NLL of y itself. The network sees O(1)
variations whatever a task's level and spread, which is what lets a small model resolve the
last few thousandths of a nearly noiseless learning curve; ``loc`` and ``log scale`` are
embedded into the context tokens too, so no information is lost. TabPFN standardizes its
targets per dataset for the same reason (Hollmann et al., arXiv 2207.01848).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from pfnkit.distributions import BarDistribution

__all__ = ["LocScaleBars", "context_loc_scale", "standardized_targets"]


def context_loc_scale(y_ctx_BN: Tensor, floor: float) -> tuple[Tensor, Tensor]:
    """Each task's context mean and ``sqrt(var + floor²)``, both (B, 1).

    The variance is the population one (divisor N), so one context point gives ``floor``.
    """
    if floor <= 0:
        raise ValueError(f"the scale floor must be positive, got {floor}")
    if y_ctx_BN.ndim != 2 or y_ctx_BN.shape[1] == 0:
        raise ValueError(f"y_ctx must be (B, N) with N >= 1, got {tuple(y_ctx_BN.shape)}")
    y = y_ctx_BN.to(torch.promote_types(y_ctx_BN.dtype, torch.float32))
    loc = y.mean(-1, keepdim=True)
    var = (y - loc).square().mean(-1, keepdim=True)
    return loc, torch.sqrt(var + floor**2)


def standardized_targets(y_ctx_BN: Tensor, y_qry_BM: Tensor, floor: float) -> Tensor:
    """Query targets on the z scale of their own task's context (for placing bar borders)."""
    loc, scale = context_loc_scale(y_ctx_BN, floor)
    return (y_qry_BM - loc) / scale


class LocScaleBars(Distribution):
    """The distribution of ``loc + scale * Z`` for a `BarDistribution` Z.

    `loc` and `scale` broadcast against Z's batch shape (a PFN passes (B, 1) for a (B, M)
    batch of queries), which `BarDistribution.affine` (one scalar shift) cannot do.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, base: BarDistribution, loc: Tensor, scale: Tensor) -> None:
        if not bool((scale > 0).all()):
            raise ValueError("every scale must be positive")
        try:
            batch_shape = torch.broadcast_shapes(base.batch_shape, loc.shape, scale.shape)
        except RuntimeError:
            batch_shape = None
        if batch_shape != base.batch_shape:
            raise ValueError(
                f"loc {tuple(loc.shape)} and scale {tuple(scale.shape)} must broadcast to the "
                f"bars' batch shape {tuple(base.batch_shape)}"
            )
        self.base, self.loc, self.scale = base, loc, scale
        super().__init__(batch_shape, validate_args=False)

    def _z(self, value: Tensor) -> Tensor:
        return (value - self.loc) / self.scale

    def log_prob(self, value: Tensor) -> Tensor:
        return self.base.log_prob(self._z(value)) - torch.log(self.scale)

    def cdf(self, value: Tensor) -> Tensor:
        return self.base.cdf(self._z(value))

    def icdf(self, value: Tensor) -> Tensor:
        return self.loc + self.scale * self.base.icdf(value)

    def quantiles(self, levels: Tensor | list[float]) -> Tensor:
        """(*batch, L): see `BarDistribution.quantiles`."""
        z = self.base.quantiles(levels)
        return self.loc.unsqueeze(-1) + self.scale.unsqueeze(-1) * z

    @property
    def mean(self) -> Tensor:
        return self.loc + self.scale * self.base.mean

    @property
    def variance(self) -> Tensor:
        return self.scale.square() * self.base.variance

    @property
    def median(self) -> Tensor:
        return self.loc + self.scale * self.base.median

    @property
    def mode(self) -> Tensor:
        return self.loc + self.scale * self.base.mode

    def entropy(self) -> Tensor:
        return self.base.entropy() + torch.log(self.scale).expand(self.batch_shape)

    def sample(
        self,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return self.loc + self.scale * self.base.sample(sample_shape, generator=generator)

    def __getitem__(self, index: object) -> LocScaleBars:
        loc = self.loc.expand(self.batch_shape)[index]
        scale = self.scale.expand(self.batch_shape)[index]
        return LocScaleBars(self.base[index], loc, scale)
