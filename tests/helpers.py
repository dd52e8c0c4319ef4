"""Test helpers shared across test modules."""

from __future__ import annotations

import torch

from pfnkit.models import PFN, PFNConfig

__all__ = ["TINY_CONFIG", "make_tiny_pfn"]

TINY_CONFIG = PFNConfig(num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)


def make_tiny_pfn(config: PFNConfig = TINY_CONFIG, seed: int = 0) -> PFN:
    """A randomly initialised PFN, perturbed so no parameter sits at its (zero) init."""
    torch.manual_seed(seed)
    model = PFN(config, torch.linspace(-3, 3, config.n_bars + 1))
    with torch.no_grad():
        model.query_marker.normal_()
    return model.eval()
