"""Adversarial robustness of checkpoints and of exact inference on the same tasks.

`run_attack` is the front door: a checkpoint's card names its exact reference
(``card["reference"]``, e.g. "gp-exact" or "dt-exact"), and the `RobustnessAttack`
registered under that name in `ATTACKS` draws fresh tasks from the checkpoint's prior,
attacks the model and the exact oracle alike, and returns a `RobustnessReport`;
`tables` and `plots` render it. A new attack is one module plus one `register_attack`
call (and its module name in `_MODULES` below).

The layers underneath, each usable alone:

- `pgd`: the optimiser, projected gradient ascent in L2 and L∞ balls, monotone in ε.
- `attacks`: what is perturbed (a predictor's context, a posterior's observations) and
  the KL objectives.
- `report`: `RobustnessReport` and the runners that attack a model and its oracle.
- `tables`, `plots`: rich tables (returned, not printed) and PNGs.
- `gp_exact`, `dt_exact`, `tp_exact`: the registered attacks.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.registry import (
    ATTACKS,
    RobustnessAttack,
    RobustnessOptions,
    UnsupportedCheckpointError,
    register_attack,
)
from pfnkit.robustness.report import RobustnessReport

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "ATTACKS",
    "AttackConfig",
    "RobustnessAttack",
    "RobustnessOptions",
    "RobustnessReport",
    "UnsupportedCheckpointError",
    "plots",
    "register_attack",
    "resolve_attack",
    "run_attack",
    "tables",
]

_MODULES = ("gp_exact", "dt_exact", "tp_exact")
for _module in _MODULES:  # each module registers its attack on import
    importlib.import_module(f"pfnkit.robustness.{_module}")


def _supported() -> str:
    return "; ".join(f"{name!r}: {attack.applies_to}" for name, attack in ATTACKS.items())


def resolve_attack(card: dict[str, Any], reference: str | None = None) -> str:
    """The attack for a card: `reference` if given, else the card's ``reference``.

    Raises:
        UnsupportedCheckpointError: no reference, or one no attack is registered for.
    """
    name = reference or card.get("reference")
    if name is None:
        raise UnsupportedCheckpointError(
            f"the checkpoint card (prior {card.get('prior_name')!r}) names no reference; "
            f"pass one of the robustness attacks as reference: {_supported()}"
        )
    if name not in ATTACKS:
        raise UnsupportedCheckpointError(
            f"no robustness attack for {name!r} (it has no differentiable exact "
            f"oracle); supported: {_supported()}"
        )
    return name


def run_attack(
    checkpoint: Checkpoint,
    prior: Any,
    *,
    reference: str | None = None,
    options: RobustnessOptions | None = None,
) -> RobustnessReport:
    """Attack `checkpoint` and the exact inference its card names (or `reference`).

    `prior` is the checkpoint's own prior, rebuilt by the caller from the card (pfnkit never
    imports `priors`).

    Raises:
        UnsupportedCheckpointError: no registered attack applies to the checkpoint.
    """
    name = resolve_attack(checkpoint.card, reference)
    return ATTACKS[name].run(checkpoint, prior, options or RobustnessOptions())


def _attack_of(report: RobustnessReport) -> RobustnessAttack:
    if report.reference not in ATTACKS:
        raise ValueError(
            f"the report names no registered attack ({report.reference!r}); make it with "
            "run_attack, or use pfnkit.robustness.tables.robustness_table directly"
        )
    return ATTACKS[report.reference]


def tables(report: RobustnessReport) -> list[Table]:
    """The report as rich tables, built by the attack that made it."""
    return _attack_of(report).tables(report)


def plots(
    checkpoint: Checkpoint, prior: Any, report: RobustnessReport, out_dir: str | Path
) -> list[Path]:
    """Write the report's figures to `out_dir`; returns the paths written (maybe none)."""
    return _attack_of(report).plots(checkpoint, prior, report, Path(out_dir))
