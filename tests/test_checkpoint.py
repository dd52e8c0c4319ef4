"""Checkpoints: round trip, tamper detection, name resolution, the shipped manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pfnkit.checkpoint import (
    available_checkpoints,
    checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
    sha256_of,
    write_manifest,
)
from pfnkit.models import PFN, PFNConfig
from tests.helpers import make_tiny_pfn

FLOAT32_ATOL = 0.0  # a round trip must be bit-exact


def test_round_trip_rebuilds_an_identical_model(tiny_checkpoint: Path) -> None:
    loaded = load_checkpoint(tiny_checkpoint)
    original = make_tiny_pfn(loaded.model.config)
    x_ctx, y_ctx, x_qry = torch.rand(1, 5, 1), torch.randn(1, 5), torch.rand(1, 3, 1)
    torch.testing.assert_close(
        loaded.model(x_ctx, y_ctx, x_qry).logits,
        original(x_ctx, y_ctx, x_qry).logits,
        atol=FLOAT32_ATOL,
        rtol=0,
    )
    assert loaded.card["sha256"] == sha256_of(tiny_checkpoint)
    assert loaded.trained_n_ctx_max == 50
    assert load_checkpoint(tiny_checkpoint.with_suffix(".json")).name == "tiny"


def test_tampered_weights_are_refused(tiny_checkpoint: Path) -> None:
    data = bytearray(tiny_checkpoint.read_bytes())
    data[-1] ^= 0xFF
    tiny_checkpoint.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(tiny_checkpoint)


def test_unknown_name_lists_available_checkpoints() -> None:
    with pytest.raises(ValueError, match="available"):
        load_checkpoint("no-such-checkpoint")


def test_short_names_resolve_in_pfnkit_checkpoints(tiny_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setenv("PFNKIT_CHECKPOINTS", str(tiny_checkpoint.parent))
    assert available_checkpoints() == ["tiny"]
    assert load_checkpoint("tiny").name == "tiny"
    manifest = json.loads(write_manifest().read_text())
    assert manifest["tiny"]["sha256"] == sha256_of(tiny_checkpoint)


def test_manifest_skips_json_that_is_not_a_card(tiny_checkpoint: Path) -> None:
    folder = tiny_checkpoint.parent
    (folder / "report.json").write_text(json.dumps({"nll": 1.0}))
    (folder / "orphan.json").write_text(tiny_checkpoint.with_suffix(".json").read_text())
    manifest = json.loads(write_manifest(folder).read_text())
    assert sorted(manifest) == ["tiny"]


def test_shipped_manifest_matches_cards_and_weights() -> None:
    folder = checkpoint_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest) == available_checkpoints()
    for name, entry in manifest.items():
        card = json.loads((folder / entry["card"]).read_text())
        assert entry["sha256"] == card["sha256"] == sha256_of(folder / entry["weights"]), name
        assert (folder / entry["weights"]).stat().st_size < 20_000_000
        for field in ("model_config", "prior_config", "train_config", "command", "validation"):
            assert card[field], f"{name}: card field {field!r} is empty"


def test_classification_pfn_round_trips_without_borders(tmp_path: Path) -> None:
    config = PFNConfig(num_features=2, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_classes=3)
    torch.manual_seed(0)
    model = PFN(config).eval()
    card = save_checkpoint(
        tmp_path / "clf",
        model,
        prior_name="logistic",
        prior_config={"n_classes": 3},
        train_config={"n_ctx_max": 10},
        command="pytest",
    )
    loaded = load_checkpoint(card)
    assert loaded.card["model_kind"] == "pfn" and loaded.card["model_config"]["n_classes"] == 3
    assert loaded.model.config == config and "borders" not in loaded.model.state_dict()
    x_ctx, y_ctx, x_qry = (
        torch.rand(1, 5, 2),
        torch.tensor([[0.0, 2, 1, 1, 0]]),
        torch.rand(1, 3, 2),
    )
    torch.testing.assert_close(
        loaded.model(x_ctx, y_ctx, x_qry).logits,
        model(x_ctx, y_ctx, x_qry).logits,
        atol=FLOAT32_ATOL,
        rtol=0,
    )


def test_record_validation_writes_the_card_and_the_manifest(tiny_checkpoint) -> None:
    from pfnkit.checkpoint import load_checkpoint, record_validation

    card_path = record_validation(
        tiny_checkpoint, {"mean_gap": 0.01, "passed": True}, command="pytest", n_tasks=3
    )
    card = json.loads(card_path.read_text())
    assert card["validation"] == {
        "command": "pytest", "n_tasks": 3, "mean_gap": 0.01, "passed": True
    }  # fmt: skip
    manifest = json.loads((card_path.parent / "manifest.json").read_text())
    assert manifest["tiny"]["validation"]["mean_gap"] == 0.01
    assert load_checkpoint(tiny_checkpoint).card["validation"]["n_tasks"] == 3  # sha256 holds
