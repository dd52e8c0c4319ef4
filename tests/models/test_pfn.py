"""PFN equivalences: fused vs reference attention, cached vs full pass, independence, invariance."""

from __future__ import annotations

import pytest
import torch

from pfnkit.models import PFN, PFNConfig

FLOAT64_ATOL = 1e-10


def _data(b: int = 3, n: int = 7, m: int = 5, d: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(b, n, d, generator=g, dtype=torch.float64)
    y_ctx = torch.randn(b, n, generator=g, dtype=torch.float64)
    x_qry = torch.rand(b, m, d, generator=g, dtype=torch.float64)
    return x_ctx, y_ctx, x_qry


def test_fused_attention_matches_reference(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    fused = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    tiny_pfn64.use_reference_attention(True)
    reference = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    torch.testing.assert_close(fused, reference, atol=FLOAT64_ATOL, rtol=0)


def test_cached_context_matches_full_pass(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    full = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    cache = tiny_pfn64.encode_context(x_ctx, y_ctx)
    cached = tiny_pfn64.predict_from_cache(cache, x_qry).logits
    chunked = tiny_pfn64.predict_from_cache(cache, x_qry, chunk_size=2).logits
    torch.testing.assert_close(cached, full, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(chunked, full, atol=FLOAT64_ATOL, rtol=0)


def test_queries_are_independent(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data(m=2)
    both = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    first = tiny_pfn64(x_ctx, y_ctx, x_qry[:, :1]).logits
    second = tiny_pfn64(x_ctx, y_ctx, x_qry[:, 1:]).logits
    torch.testing.assert_close(both, torch.cat([first, second], 1), atol=FLOAT64_ATOL, rtol=0)


def test_permuting_the_context_changes_nothing(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    perm = torch.randperm(x_ctx.shape[1], generator=torch.Generator().manual_seed(3))
    original = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    permuted = tiny_pfn64(x_ctx[:, perm], y_ctx[:, perm], x_qry).logits
    torch.testing.assert_close(original, permuted, atol=FLOAT64_ATOL, rtol=0)


def test_batch_equals_loop(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    batched = tiny_pfn64(x_ctx, y_ctx, x_qry).logits
    for i in range(x_ctx.shape[0]):
        single = tiny_pfn64(x_ctx[i : i + 1], y_ctx[i : i + 1], x_qry[i : i + 1]).logits
        torch.testing.assert_close(batched[i : i + 1], single, atol=FLOAT64_ATOL, rtol=0)


def test_output_is_a_bar_distribution_over_queries(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data(b=2, m=4)
    dist = tiny_pfn64(x_ctx, y_ctx, x_qry)
    assert dist.batch_shape == (2, 4)
    assert torch.isfinite(dist.log_prob(torch.zeros(2, 4, dtype=torch.float64))).all()


def test_shape_errors_are_clear(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    with pytest.raises(ValueError, match="x_ctx must have shape"):
        tiny_pfn64(x_ctx[..., :1], y_ctx, x_qry)
    with pytest.raises(ValueError, match="context is empty"):
        tiny_pfn64(x_ctx[:, :0], y_ctx[:, :0], x_qry)
    with pytest.raises(ValueError, match="divisible"):
        PFNConfig(d_model=30, n_heads=4)


def test_no_queries_gives_an_empty_batch(tiny_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    cache = tiny_pfn64.encode_context(x_ctx, y_ctx)
    assert tiny_pfn64.predict_from_cache(cache, x_qry[:, :0]).batch_shape == (3, 0)
