"""Classification PFN: Categorical output and the equivalences the regression head also obeys."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical

from pfnkit.models import PFN, PFNConfig

FLOAT64_ATOL = 1e-10  # float64 identities (same model, different code path)
N_CLASSES = 3
CLF_CONFIG = PFNConfig(
    num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_classes=N_CLASSES
)


@pytest.fixture
def clf_pfn64() -> PFN:
    torch.manual_seed(0)
    model = PFN(CLF_CONFIG)
    with torch.no_grad():
        model.query_marker.normal_()  # no parameter left at its (zero) init
    return model.double().eval()


def _data(b: int = 3, n: int = 7, m: int = 5, d: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(b, n, d, generator=g, dtype=torch.float64)
    y_ctx = torch.randint(0, N_CLASSES, (b, n), generator=g).double()
    x_qry = torch.rand(b, m, d, generator=g, dtype=torch.float64)
    return x_ctx, y_ctx, x_qry


def test_output_is_a_categorical_over_queries(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data(b=2, m=4)
    dist = clf_pfn64(x_ctx, y_ctx, x_qry)
    assert isinstance(dist, Categorical)
    assert dist.batch_shape == (2, 4) and dist.probs.shape == (2, 4, N_CLASSES)
    torch.testing.assert_close(
        dist.probs.sum(-1), torch.ones(2, 4, dtype=torch.float64), atol=FLOAT64_ATOL, rtol=0
    )
    labels = torch.tensor([0, 1, 2, 1]).expand(2, 4)
    assert torch.isfinite(dist.log_prob(labels)).all()


def test_fused_attention_matches_reference(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    fused = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    clf_pfn64.use_reference_attention(True)
    reference = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    torch.testing.assert_close(fused, reference, atol=FLOAT64_ATOL, rtol=0)


def test_cached_and_chunked_match_the_full_pass(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    full = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    cache = clf_pfn64.encode_context(x_ctx, y_ctx)
    cached = clf_pfn64.predict_from_cache(cache, x_qry)
    chunked = clf_pfn64.predict_from_cache(cache, x_qry, chunk_size=2)
    assert isinstance(cached, Categorical) and isinstance(chunked, Categorical)
    torch.testing.assert_close(cached.logits, full, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(chunked.logits, full, atol=FLOAT64_ATOL, rtol=0)


def test_queries_are_independent(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data(m=2)
    both = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    first = clf_pfn64(x_ctx, y_ctx, x_qry[:, :1]).logits
    second = clf_pfn64(x_ctx, y_ctx, x_qry[:, 1:]).logits
    torch.testing.assert_close(both, torch.cat([first, second], 1), atol=FLOAT64_ATOL, rtol=0)


def test_permuting_the_context_changes_nothing(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    perm = torch.randperm(x_ctx.shape[1], generator=torch.Generator().manual_seed(3))
    original = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    permuted = clf_pfn64(x_ctx[:, perm], y_ctx[:, perm], x_qry).logits
    torch.testing.assert_close(original, permuted, atol=FLOAT64_ATOL, rtol=0)


def test_batch_equals_loop(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    batched = clf_pfn64(x_ctx, y_ctx, x_qry).logits
    for i in range(x_ctx.shape[0]):
        single = clf_pfn64(x_ctx[i : i + 1], y_ctx[i : i + 1], x_qry[i : i + 1]).logits
        torch.testing.assert_close(batched[i : i + 1], single, atol=FLOAT64_ATOL, rtol=0)


def test_context_labels_are_looked_up_in_the_embedding(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data(b=1, n=1, m=1)
    y_two = torch.full_like(y_ctx, 2)
    expected = clf_pfn64.x_encoder(x_ctx) + clf_pfn64.label_embedding.weight[2]
    torch.testing.assert_close(
        clf_pfn64.embed_context(x_ctx, y_two), expected, atol=FLOAT64_ATOL, rtol=0
    )
    with_label_0 = clf_pfn64(x_ctx, torch.zeros_like(y_ctx), x_qry).logits
    with_label_1 = clf_pfn64(x_ctx, torch.ones_like(y_ctx), x_qry).logits
    assert not torch.allclose(with_label_0, with_label_1)


def test_no_queries_gives_an_empty_batch(clf_pfn64: PFN) -> None:
    x_ctx, y_ctx, x_qry = _data()
    cache = clf_pfn64.encode_context(x_ctx, y_ctx)
    assert clf_pfn64.predict_from_cache(cache, x_qry[:, :0]).batch_shape == (3, 0)


@pytest.mark.parametrize("bad", [0.5, -1.0, float(N_CLASSES)])
def test_labels_outside_0_to_c_minus_1_are_rejected(clf_pfn64: PFN, bad: float) -> None:
    x_ctx, y_ctx, x_qry = _data()
    y_ctx[0, 0] = bad
    with pytest.raises(ValueError, match=r"class labels 0\.\.2"):
        clf_pfn64(x_ctx, y_ctx, x_qry)


def test_config_checks_the_head() -> None:
    assert PFNConfig.from_dict(CLF_CONFIG.to_dict()) == CLF_CONFIG
    assert not PFNConfig.from_dict({"num_features": 1}).is_classifier  # old cards: regression
    with pytest.raises(ValueError, match="n_classes must be 0"):
        PFNConfig(n_classes=1)
    with pytest.raises(ValueError, match="no bar borders"):
        PFN(CLF_CONFIG, torch.linspace(-1, 1, 11))
    with pytest.raises(ValueError, match="needs borders"):
        PFN(PFNConfig(num_features=1, d_model=8, n_heads=2, n_layers=1, d_ff=8, n_bars=10))
