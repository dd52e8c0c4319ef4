"""Attention onto the context: fused SDPA vs the plain reference vs torch's MultiheadAttention,
hand-derived cases of the reference, and the cacheable context keys and values of a block."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pfnkit.nn import ContextBlock, KVAttention, reference_attention
from tests.conftest import FLOAT32_ATOL, FLOAT64_ATOL

D_MODEL, N_HEADS, D_FF = 16, 4, 32


def _tokens(b: int, t: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, D_MODEL, generator=gen, dtype=dtype)


def _attention(dtype: torch.dtype = torch.float64) -> KVAttention:
    torch.manual_seed(0)
    return KVAttention(D_MODEL, N_HEADS).to(dtype)


@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float64, FLOAT64_ATOL), (torch.float32, FLOAT32_ATOL)]
)
def test_fused_sdpa_equals_the_reference(dtype: torch.dtype, atol: float) -> None:
    attention, h_ctx, h_all = _attention(dtype), _tokens(3, 6, dtype), _tokens(3, 9, dtype, 1)
    k_BHNK, v_BHNK = attention.keys_values(h_ctx)
    fused = attention(h_all, k_BHNK, v_BHNK)
    attention.use_reference = True
    torch.testing.assert_close(attention(h_all, k_BHNK, v_BHNK), fused, atol=atol, rtol=0)


@pytest.mark.parametrize("use_reference", [False, True])
def test_equals_torch_multihead_attention_with_the_same_weights(use_reference: bool) -> None:
    attention, h_ctx, h_all = _attention(), _tokens(2, 5), _tokens(2, 8, seed=1)
    attention.use_reference = use_reference
    mha = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attention.q_proj.weight, attention.kv_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([attention.q_proj.bias, attention.kv_proj.bias]))
        mha.out_proj.weight.copy_(attention.out_proj.weight)
        mha.out_proj.bias.copy_(attention.out_proj.bias)
    expected, _ = mha(h_all, h_ctx, h_ctx, need_weights=False)
    actual = attention(h_all, *attention.keys_values(h_ctx))
    torch.testing.assert_close(actual, expected, atol=FLOAT64_ATOL, rtol=0)


def test_reference_attention_on_hand_derived_cases() -> None:
    gen = torch.Generator().manual_seed(0)
    q_BHTK = torch.randn(1, 2, 3, 4, generator=gen, dtype=torch.float64)
    v_BHNK = torch.randn(1, 2, 5, 4, generator=gen, dtype=torch.float64)
    same_keys = torch.ones(1, 2, 5, 4, dtype=torch.float64)  # equal scores: the mean value
    mean_BHTK = v_BHNK.mean(dim=2, keepdim=True).expand(1, 2, 3, 4)
    torch.testing.assert_close(
        reference_attention(q_BHTK, same_keys, v_BHNK), mean_BHTK, atol=FLOAT64_ATOL, rtol=0
    )
    one_key = torch.randn(1, 2, 1, 4, generator=gen, dtype=torch.float64)  # weight 1 on it
    torch.testing.assert_close(
        reference_attention(q_BHTK, one_key, v_BHNK[:, :, :1]),
        v_BHNK[:, :, :1].expand(1, 2, 3, 4),
        atol=FLOAT64_ATOL,
        rtol=0,
    )
    # one query, two keys: softmax weights (1 + e^s)^-1 with s = (q·k1 - q·k0)/√d
    q, k = q_BHTK[..., :1, :], v_BHNK[..., :2, :]
    s = ((q * (k[..., 1:, :] - k[..., :1, :])).sum(-1, keepdim=True)) / 2.0
    w1 = torch.sigmoid(s)
    expected = (1 - w1) * v_BHNK[..., :1, :] + w1 * v_BHNK[..., 1:2, :]
    torch.testing.assert_close(
        reference_attention(q, k, v_BHNK[..., :2, :]), expected, atol=FLOAT64_ATOL, rtol=0
    )


def test_a_block_with_cached_context_keys_values_updates_each_token_on_its_own() -> None:
    torch.manual_seed(0)
    block = ContextBlock(D_MODEL, N_HEADS, D_FF).double()
    h_ctx, h_qry = _tokens(2, 6), _tokens(2, 4, seed=1)
    k_BHNK, v_BHNK = block.context_keys_values(h_ctx)
    assert k_BHNK.shape == v_BHNK.shape == (2, N_HEADS, 6, D_MODEL // N_HEADS)
    together = block(torch.cat([h_ctx, h_qry], dim=1), k_BHNK, v_BHNK)
    torch.testing.assert_close(
        together[:, :6], block(h_ctx, k_BHNK, v_BHNK), atol=FLOAT64_ATOL, rtol=0
    )
    for j in range(4):
        alone = block(h_qry[:, j : j + 1], k_BHNK, v_BHNK)
        torch.testing.assert_close(together[:, 6 + j : 7 + j], alone, atol=FLOAT64_ATOL, rtol=0)


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        KVAttention(10, 4)
