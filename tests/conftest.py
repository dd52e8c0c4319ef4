"""Shared fixtures (tiny float64 PFNs, a tiny checkpoint on disk) and the tolerance constants.

Tolerances come in one constant per class of comparison; tests import them from here
(``from tests.conftest import FLOAT64_ATOL``) instead of keeping their own copies. A test
whose comparison is of another class (quadrature, bisection, a bit-exact round trip) names
its own constant beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFN, PFNConfig
from tests.helpers import make_tiny_pfn

FLOAT64_ATOL = 1e-10  # float64 identities: the same computation by another route or order
FLOAT32_ATOL = 1e-5  # float32 identities: the same computation by another route or order
STANDARD_ERRORS = 4.0  # statistical comparisons: within this many (Monte Carlo) standard errors


@pytest.fixture
def tiny_pfn64() -> PFN:
    return make_tiny_pfn().double()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A tiny 1-feature checkpoint with identity data mapping, saved under tmp_path."""
    config = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    model = make_tiny_pfn(config)
    card = save_checkpoint(
        tmp_path / "tiny",
        model,
        prior_name="gp",
        prior_config={"kernel": "rbf"},
        train_config={"n_ctx_max": 50},
        command="pytest fixture",
    )
    return card.with_suffix(".safetensors")
