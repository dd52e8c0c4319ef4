"""Validation of checkpoints against exact inference: `validate()` and the `VALIDATORS` registry.

One module per (target, oracle) pair (`gp_exact`, `gp_nuts`, `bnn_nuts`, `dt_exact`,
`dt_nuts`), each registering one `Validator` in `registry.py`; `tables.py` builds the rich
tables and `plots.py` draws the figures. A checkpoint's card names the validator that checks
it (``card["reference"]``, written at pretrain time from the TOML's ``[card]``); `validate`
looks it up, so a new validator is one module plus one `register_validator` call (and its
module name in `_MODULES` below).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pfnkit.validation.registry import (
    VALIDATORS,
    ValidationOptions,
    Validator,
    register_validator,
)

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint
    from pfnkit.report import Report

__all__ = [
    "VALIDATORS",
    "ValidationOptions",
    "Validator",
    "register_validator",
    "resolve_reference",
    "validate",
]

_MODULES = ("gp_exact", "gp_nuts", "bnn_nuts", "dt_exact", "dt_nuts")
for _module in _MODULES:  # each module registers its validator on import
    importlib.import_module(f"pfnkit.validation.{_module}")


def resolve_reference(card: dict[str, Any], reference: str | None = None) -> str:
    """The validator name for a card: `reference` if given, else the card's ``reference``."""
    name = reference or card.get("reference")
    if name is None:
        raise ValueError(
            f"checkpoint card of prior {card.get('prior_name')!r} names no reference "
            f"validator; pass one of {sorted(VALIDATORS)}"
        )
    if name not in VALIDATORS:
        raise ValueError(f"unknown reference {name!r}; registered: {sorted(VALIDATORS)}")
    return name


def validate(
    checkpoint: Checkpoint,
    prior: Any,
    *,
    reference: str | None = None,
    options: ValidationOptions | None = None,
) -> Report:
    """Validate `checkpoint` against the oracle its card names (or `reference`).

    `prior` is the checkpoint's own prior, rebuilt by the caller from the card (pfnkit never
    imports `priors`).
    """
    name = resolve_reference(checkpoint.card, reference)
    return VALIDATORS[name].run(checkpoint, prior, options or ValidationOptions())
