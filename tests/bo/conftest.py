"""Tiny BO checkpoints for the tests of pfnkit.bo (random weights: contracts, not quality)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFNConfig
from tests.helpers import make_tiny_pfn

TINY_BO_CONFIG = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
PADDED_STANDARDIZED = {
    "x": "standardize",
    "y": "standardize",
    "features": "pad",
    "pad_rescale": "sqrt",
}


def save_tiny(path: Path, config: PFNConfig = TINY_BO_CONFIG, mapping: dict | None = None) -> Path:
    card = save_checkpoint(
        path,
        make_tiny_pfn(config),
        prior_name="gp",
        prior_config={},
        train_config={"n_ctx_max": 64},
        command="pytest fixture",
        data_mapping=mapping or PADDED_STANDARDIZED,
    )
    return card.with_suffix(".safetensors")


@pytest.fixture
def tiny_bo_checkpoint(tmp_path: Path) -> Path:
    """A tiny 3-feature regression checkpoint with the general GP's data mapping."""
    return save_tiny(tmp_path / "tiny-bo")
