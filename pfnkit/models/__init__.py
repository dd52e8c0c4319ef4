"""Model families: the PFN (data → predictive) and, later, the Distribution Transformer."""

from pfnkit.models.pfn import PFN, ContextCache, PFNConfig

__all__ = ["PFN", "ContextCache", "PFNConfig"]
