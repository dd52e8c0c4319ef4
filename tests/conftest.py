"""Shared fixtures: tiny float64 PFNs and a tiny checkpoint on disk."""

from __future__ import annotations

import pytest

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFN, PFNConfig
from tests.helpers import make_tiny_pfn


@pytest.fixture
def tiny_pfn64() -> PFN:
    return make_tiny_pfn().double()


@pytest.fixture
def tiny_checkpoint(tmp_path):
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
