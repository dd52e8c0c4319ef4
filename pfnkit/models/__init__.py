"""Model families: the PFN (data → predictive) and the Distribution Transformer (→ posterior)."""

from pfnkit.models.context_scaling import LocScaleBars
from pfnkit.models.distribution_transformer import DistributionTransformer, DTConfig
from pfnkit.models.pfn import PFN, ContextCache, PFNConfig

__all__ = [
    "PFN",
    "ContextCache",
    "DTConfig",
    "DistributionTransformer",
    "LocScaleBars",
    "PFNConfig",
]
