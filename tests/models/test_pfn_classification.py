"""Classification PFN: the Categorical head, label embedding and label checks.

The equivalences every model obeys (cached = full pass, chunks, batch = loop, permuted
context, independent queries, fused = reference attention) are in test_model_contract.py.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical

from pfnkit.models import PFN, PFNConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import TINY_CLF_CONFIG as CLF_CONFIG
from tests.helpers import make_tiny_pfn

N_CLASSES = CLF_CONFIG.n_classes


@pytest.fixture
def clf_pfn64() -> PFN:
    return make_tiny_pfn(CLF_CONFIG).double()


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
    cache = clf_pfn64.encode_context(x_ctx, y_ctx)
    assert isinstance(clf_pfn64.predict_from_cache(cache, x_qry, chunk_size=3), Categorical)


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
