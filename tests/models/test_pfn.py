"""Regression PFN: the bar-distribution head and clear input errors.

The equivalences every model obeys (cached = full pass, chunks, batch = loop, permuted
context, independent queries, fused = reference attention) are in test_model_contract.py.
"""

from __future__ import annotations

import pytest
import torch

from pfnkit.distributions import BarDistribution
from pfnkit.models import PFN, PFNConfig


def _data(b: int = 3, n: int = 7, m: int = 5, d: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(b, n, d, generator=g, dtype=torch.float64)
    y_ctx = torch.randn(b, n, generator=g, dtype=torch.float64)
    x_qry = torch.rand(b, m, d, generator=g, dtype=torch.float64)
    return x_ctx, y_ctx, x_qry


def test_output_is_a_bar_distribution_on_the_model_borders(tiny_pfn64: PFN) -> None:
    dist = tiny_pfn64(*_data(b=2, m=4))
    assert isinstance(dist, BarDistribution)
    assert dist.logits.shape == (2, 4, tiny_pfn64.config.n_bars)
    torch.testing.assert_close(dist.borders, tiny_pfn64.borders.to(dist.borders.dtype))


def test_shape_errors_are_clear(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    with pytest.raises(ValueError, match="x_ctx must have shape"):
        tiny_pfn64(x_ctx[..., :1], y_ctx, x_qry)
    with pytest.raises(ValueError, match="context is empty"):
        tiny_pfn64(x_ctx[:, :0], y_ctx[:, :0], x_qry)
    with pytest.raises(ValueError, match="divisible"):
        PFNConfig(d_model=30, n_heads=4)
