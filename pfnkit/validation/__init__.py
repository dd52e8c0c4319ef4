"""Validation of checkpoints against exact inference: `validate()` and the `VALIDATORS` registry.

One module per (target, oracle) pair (`gp_exact`, `gp_nuts`, `bnn_nuts`, `dt_exact`,
`dt_nuts`, `tp_exact`), each registering one `Validator` in `registry.py`; `tables.py` builds
the rich tables and `plots.py` draws the figures. A checkpoint's card names the validator that
checks it (``card["reference"]``, written at pretrain time from the TOML's ``[card]``);
`validate` looks it up, so a new validator is one module plus one `register_validator` call (and its
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
    "ALIASES",
    "VALIDATORS",
    "ValidationOptions",
    "Validator",
    "register_validator",
    "resolve_reference",
    "validate",
]

_MODULES = (
    "gp_exact",
    "gp_nuts",
    "bnn_nuts",
    "dt_exact",
    "dt_nuts",
    "tp_exact",
    "freeze_thaw_exact",
    "lc_nuts",
    "lc_smc",
)
for _module in _MODULES:  # each module registers its validator on import
    importlib.import_module(f"pfnkit.validation.{_module}")


ALIASES = ("exact", "nuts")  # the card's own target against the exact oracle, or NUTS


def resolve_reference(card: dict[str, Any], reference: str | None = None) -> str:
    """The validator name for a card: `reference` if given, else the card's ``reference``.

    `reference` is a registered name, or an alias in `ALIASES` that keeps the card's target
    and swaps the oracle: "nuts" on a card naming "gp-exact" resolves to "gp-nuts".

    Raises:
        ValueError: no name to resolve, or it names no registered validator.
    """
    name = reference or card.get("reference")
    if name is None:
        raise ValueError(
            f"the card of {card.get('name', 'this checkpoint')!r} (prior "
            f"{card.get('prior_name')!r}) names no reference validator; pass one of "
            f"{sorted(VALIDATORS)}"
        )
    if name in ALIASES:
        own = card.get("reference")
        if own is None:
            raise ValueError(
                f"--reference {name} keeps the card's target, but the card names no "
                f"reference; pass one of {sorted(VALIDATORS)}"
            )
        name = f"{own.rsplit('-', 1)[0]}-{name}"
        if name not in VALIDATORS:
            raise ValueError(
                f"no {reference!r} reference for a card checked by {own!r} ({name!r} is not "
                f"registered; registered: {sorted(VALIDATORS)})"
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
    imports `priors`). Options left None take the validator's defaults.

    Raises:
        ValueError: no validator resolves (see `resolve_reference`), or the one that does
            does not apply to this checkpoint or prior.
    """
    validator = VALIDATORS[resolve_reference(checkpoint.card, reference)]
    options = (options or ValidationOptions()).with_defaults(validator.defaults)
    return validator.run(checkpoint, prior, options)
