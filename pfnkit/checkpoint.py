"""Checkpoints as plain data: safetensors weights plus a JSON card, resolved by short name."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pfnkit.models import PFN, DistributionTransformer, DTConfig, PFNConfig

__all__ = [
    "Checkpoint",
    "available_checkpoints",
    "checkpoint_dir",
    "load_checkpoint",
    "model_kind",
    "record_validation",
    "resolve_checkpoint",
    "save_checkpoint",
    "sha256_of",
    "write_manifest",
]

FORMAT_VERSION = 1


def _build_pfn(config: PFNConfig, state: dict[str, torch.Tensor]) -> PFN:
    return PFN(config, None if config.is_classifier else state["borders"])


def _build_dt(config: DTConfig, state: dict[str, torch.Tensor]) -> DistributionTransformer:
    return DistributionTransformer(config)


# model_kind -> (model class, config class, builder from config and weights)
_MODEL_KINDS: dict[str, tuple[type[nn.Module], type, Callable[..., nn.Module]]] = {
    "pfn": (PFN, PFNConfig, _build_pfn),
    "dt": (DistributionTransformer, DTConfig, _build_dt),
}


def model_kind(model: nn.Module) -> str:
    """The card's `model_kind` for `model`."""
    for kind, (model_cls, _, _) in _MODEL_KINDS.items():
        if isinstance(model, model_cls):
            return kind
    raise TypeError(f"cannot save a {type(model).__name__}; known: {sorted(_MODEL_KINDS)}")


_SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout, when run from one
_PACKAGED = Path(__file__).resolve().parent / "_checkpoints"  # the wheel's copy of checkpoints/


def checkpoint_dir() -> Path:
    """The folder that short checkpoint names (``gp-rbf``, ...) resolve in.

    The first of:

    1. ``$PFNKIT_CHECKPOINTS``, when set (and not empty): your own folder wins.
    2. ``checkpoints/`` of the source checkout that pfnkit is imported from (a clone,
       or an editable install), so checkpoints written there are found at once.
    3. The checkpoints shipped inside the installed package (``pfnkit/_checkpoints``,
       the wheel's copy of ``checkpoints/``); read-only in a shared site-packages, so
       write new checkpoints to a path of your own or to ``$PFNKIT_CHECKPOINTS``.

    Paths bypass this lookup (see `resolve_checkpoint`); loading checks the weights'
    sha256 whichever folder they come from.
    """
    env = os.environ.get("PFNKIT_CHECKPOINTS")
    if env:
        return Path(env)
    if (_SOURCE_ROOT / "pyproject.toml").is_file() and (_SOURCE_ROOT / "checkpoints").is_dir():
        return _SOURCE_ROOT / "checkpoints"
    return _PACKAGED


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode) and its card."""

    name: str
    model: nn.Module
    card: dict[str, Any]

    @property
    def trained_n_ctx_max(self) -> int:
        return int(self.card["train_config"]["n_ctx_max"])

    @property
    def data_mapping(self) -> dict[str, str]:
        return self.card["data_mapping"]  # save_checkpoint always writes one


def available_checkpoints() -> list[str]:
    """Short names of the checkpoints in `checkpoint_dir()`."""
    folder = checkpoint_dir()
    return sorted(p.stem for p in folder.glob("*.json") if p.name != "manifest.json")


def resolve_checkpoint(name_or_path: str | Path) -> tuple[str, Path, Path]:
    """Return (name, card path, weights path) for a short name or a path.

    In this order: an existing ``.json`` or ``.safetensors`` file; a path stem with a
    folder (``out/my-gp``, ``/abs/my-gp``) whose ``.json`` exists; else a short name in
    `checkpoint_dir()` (``$PFNKIT_CHECKPOINTS``, a checkout's ``checkpoints/``, or the
    checkpoints installed with pfnkit).

    Raises:
        ValueError: a short name that `checkpoint_dir()` does not hold.
        FileNotFoundError: a card without its weights file.
    """
    path = Path(name_or_path)
    if path.suffix in (".json", ".safetensors") and path.exists():
        stem = path.with_suffix("")
    elif path.with_suffix(".json").exists() and (path.parent != Path(".") or path.is_absolute()):
        stem = path
    else:
        stem = checkpoint_dir() / str(name_or_path)
        if not stem.with_suffix(".json").exists():
            raise ValueError(
                f"unknown checkpoint {str(name_or_path)!r}; available in {checkpoint_dir()}: "
                f"{available_checkpoints()} (or pass a path to a .safetensors/.json file, "
                "or set $PFNKIT_CHECKPOINTS to a folder of checkpoints)"
            )
    card_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not weights_path.exists():
        raise FileNotFoundError(f"checkpoint card {card_path} has no weights file {weights_path}")
    return stem.name, card_path, weights_path


def load_checkpoint(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from its card's config and its safetensors weights (never unpickles).

    Raises:
        ValueError: unknown name, sha256 mismatch, or an unsupported card.
    """
    name, card_path, weights_path = resolve_checkpoint(name_or_path)
    card = json.loads(card_path.read_text())
    if card.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{card_path} has format_version {card.get('format_version')}, "
            f"this pfnkit reads {FORMAT_VERSION}"
        )
    actual = sha256_of(weights_path)
    if actual != card["sha256"]:
        raise ValueError(
            f"sha256 of {weights_path} is {actual}, but its card records {card['sha256']}; "
            "the weights were modified or corrupted, refusing to load"
        )
    kind = card["model_kind"]
    if kind not in _MODEL_KINDS:
        raise ValueError(
            f"unknown model_kind {kind!r} in {card_path}; known: {sorted(_MODEL_KINDS)}"
        )
    _, config_cls, build = _MODEL_KINDS[kind]
    state = load_file(weights_path, device=str(device))
    model = build(config_cls.from_dict(card["model_config"]), state)
    model.load_state_dict(state, strict=True)
    return Checkpoint(name=name, model=model.to(device).eval(), card=card)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    prior_name: str,
    prior_config: dict[str, Any],
    train_config: dict[str, Any],
    command: str,
    data_mapping: dict[str, str] | None = None,
    tolerances: dict[str, float] | None = None,
    training: dict[str, float] | None = None,
    description: str = "",
    reference: str | None = None,
) -> Path:
    """Write `path.safetensors` and `path.json`; return the card's path.

    `reference` names the validator that checks the checkpoint (a key of
    `pfnkit.validation.VALIDATORS`, e.g. "gp-exact"); None names none.
    """
    stem = Path(path).with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights_path = stem.with_suffix(".safetensors")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, weights_path, metadata={"format": "pt"})
    from pfnkit._version import __version__

    card = {
        "format_version": FORMAT_VERSION,
        "pfnkit_version": __version__,
        "name": stem.name,
        "description": description,
        "model_kind": model_kind(model),
        "model_config": model.config.to_dict(),
        "n_parameters": model.n_parameters,
        "prior_name": prior_name,
        "prior_config": prior_config,
        "train_config": train_config,
        "training": training or {},
        "data_mapping": data_mapping or {"x": "identity", "y": "identity"},
        "tolerances": tolerances or {},
        "reference": reference,
        "validation": {},
        "command": command,
        "sha256": sha256_of(weights_path),
    }
    card_path = stem.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path


def record_validation(
    name_or_path: str | Path, figures: dict[str, Any], *, command: str, **context: Any
) -> Path:
    """Record validation figures on a checkpoint's card and refresh its folder's manifest.

    The one writer of a card after `save_checkpoint`: the card's ``validation`` becomes
    ``{"command": command, **context, **figures}`` (a report's `to_dict()` as `figures`,
    run settings such as ``n_tasks`` as `context`). The weights and their sha256 are not
    touched. Returns the card's path.
    """
    _, card_path, _ = resolve_checkpoint(name_or_path)
    card = json.loads(card_path.read_text())
    card["validation"] = {"command": command, **context, **figures}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    write_manifest(card_path.parent)
    return card_path


def write_manifest(folder: str | Path | None = None) -> Path:
    """Regenerate `manifest.json` in `folder` from the checkpoint cards it holds.

    JSON files that are not cards with weights beside them are skipped.
    """
    folder = Path(folder) if folder is not None else checkpoint_dir()
    entries = {}
    for card_path in sorted(folder.glob("*.json")):
        if card_path.name == "manifest.json":
            continue
        card = json.loads(card_path.read_text())
        is_card = isinstance(card, dict) and "sha256" in card and "model_kind" in card
        if not is_card or not card_path.with_suffix(".safetensors").exists():
            continue  # other JSON in the folder (reports, benchmark output) is not a checkpoint
        entries[card_path.stem] = {
            "weights": card_path.with_suffix(".safetensors").name,
            "card": card_path.name,
            "sha256": card["sha256"],
            "model_kind": card["model_kind"],
            "prior_name": card["prior_name"],
            "n_parameters": card["n_parameters"],
            "description": card.get("description", ""),
            "validation": card.get("validation", {}),
        }
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(entries, indent=2) + "\n")
    return manifest
