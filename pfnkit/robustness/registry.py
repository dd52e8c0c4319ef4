"""The attack registry: `RobustnessOptions`, the `RobustnessAttack` protocol and `ATTACKS`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pfnkit.robustness.attacks import TARGETS
from pfnkit.robustness.pgd import AttackConfig

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint
    from pfnkit.robustness.report import RobustnessReport

__all__ = [
    "ATTACKS",
    "RobustnessAttack",
    "RobustnessOptions",
    "UnsupportedCheckpointError",
    "register_attack",
]


class UnsupportedCheckpointError(ValueError):
    """The checkpoint, or its prior, is not one the requested attack applies to."""


@dataclass(frozen=True, kw_only=True)
class RobustnessOptions:
    """Run settings shared by every attack.

    Attributes:
        eps: non-decreasing radii, in units of each task's data standard deviation.
        tasks: fresh prior tasks, attacked together.
        n_ctx: context points (observations) per task.
        n_qry: query points per task (ignored by posteriors over θ).
        target: which context values a context attack perturbs: "y", "x" or "xy"
            (observation attacks perturb every observation).
        attack: the projected gradient ascent's settings.
        seed: seed of the tasks and the attacks.
        progress: show a rich progress bar.
    """

    eps: tuple[float, ...] = (0.01, 0.05, 0.1)
    tasks: int = 64
    n_ctx: int = 20
    n_qry: int = 50
    target: str = "y"
    attack: AttackConfig = field(default_factory=AttackConfig)
    seed: int = 2718
    progress: bool = False

    def __post_init__(self) -> None:
        eps = tuple(float(e) for e in self.eps)
        if not eps or any(not (math.isfinite(e) and e >= 0) for e in eps):
            raise ValueError(f"eps must be finite, non-negative radii, got {list(eps)}")
        if list(eps) != sorted(eps):
            raise ValueError(f"eps must be in increasing order, got {list(eps)}; sort them")
        object.__setattr__(self, "eps", eps)
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose one of {TARGETS}")
        if self.tasks < 1 or self.n_ctx < 1 or self.n_qry < 0:
            raise ValueError(
                "need tasks >= 1, n_ctx >= 1 and n_qry >= 0, got "
                f"{self.tasks}, {self.n_ctx} and {self.n_qry}"
            )


class RobustnessAttack(Protocol):
    """Attacks a checkpoint and the exact inference it approximates on the same tasks."""

    name: str
    applies_to: str  # one line for refusals, e.g. "a PFN on a fixed-hyperparameter GP prior"

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: RobustnessOptions
    ) -> RobustnessReport:
        """Draw tasks from `prior`, attack the model and exact inference, return the report.

        Raises:
            UnsupportedCheckpointError: the checkpoint or its prior is not one this attack
                applies to.
        """
        ...

    def tables(self, report: RobustnessReport) -> list[Table]:
        """The report as rich tables (the library never prints)."""
        ...

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: RobustnessReport, out_dir: Path
    ) -> list[Path]:
        """Write the report's figures to `out_dir`; returns the paths written (maybe none)."""
        ...


ATTACKS: dict[str, RobustnessAttack] = {}


def register_attack(attack: RobustnessAttack) -> RobustnessAttack:
    """Add `attack` to `ATTACKS` under its name (a name is registered once)."""
    if attack.name in ATTACKS:
        raise ValueError(f"an attack named {attack.name!r} is already registered")
    ATTACKS[attack.name] = attack
    return attack
