"""The "gp-exact" attack: a PFN on a fixed-hyperparameter GP prior against the exact GP.

Both predictors see the same fresh tasks of the checkpoint's prior and the same attack on
their context (`robustness_report`); the exact GP runs at the hyperparameters every task
was drawn with, which the prior itself states (``prior.fixed_gp_hyperparameters()``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from rich.table import Table

from pfnkit.data import Batch
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.plots import plot_attacked_task
from pfnkit.robustness.registry import (
    RobustnessOptions,
    UnsupportedCheckpointError,
    register_attack,
)
from pfnkit.robustness.report import (
    RobustnessReport,
    replay_tasks,
    robustness_report,
    seeded_tasks,
)
from pfnkit.robustness.tables import robustness_table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = ["FixedGPPrior", "GPExactAttack", "gp_hyperparameters"]

logger = logging.getLogger(__name__)


@runtime_checkable
class FixedGPPrior(Protocol):
    """What the attack needs from a GP prior: its tasks, the one GP, the input interval."""

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch: ...

    def fixed_gp_hyperparameters(self) -> dict[str, Any]:
        """kernel, lengthscale, outputscale, noise; ValueError if drawn per task."""
        ...

    def input_range(self) -> tuple[float, float] | None:
        """The interval every input feature is drawn from, None if unbounded."""
        ...


def gp_hyperparameters(checkpoint: Checkpoint, prior: Any) -> GPHyperparameters:
    """The exact GP behind a PFN checkpoint's tasks, or a clear refusal.

    Raises:
        UnsupportedCheckpointError: not a PFN, or a prior that is not one fixed GP.
    """
    card = checkpoint.card
    if card.get("model_kind") != "pfn" or not isinstance(prior, FixedGPPrior):
        raise UnsupportedCheckpointError(
            f"'gp-exact' attacks a PFN trained on a GP prior with fixed hyperparameters, like "
            f"gp-rbf; {checkpoint.name!r} is a {card.get('model_kind')!r} model on prior "
            f"{card.get('prior_name')!r}"
        )
    try:
        return GPHyperparameters(**prior.fixed_gp_hyperparameters())
    except ValueError as err:
        raise UnsupportedCheckpointError(
            f"'gp-exact' cannot attack {checkpoint.name!r}: {err}. Use a checkpoint whose GP "
            "prior fixes every hyperparameter, like gp-rbf"
        ) from err


class GPExactAttack:
    """`RobustnessAttack` "gp-exact": context attacks on the PFN and on the exact GP."""

    name = "gp-exact"
    applies_to = "a PFN on a GP prior with fixed hyperparameters (gp-rbf, gp-rbf-robust)"

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: RobustnessOptions
    ) -> RobustnessReport:
        hyper = gp_hyperparameters(checkpoint, prior)
        batch, generator = seeded_tasks(prior, options.tasks, options.n_ctx, options.n_qry,
                                        options.seed)  # fmt: skip
        report = robustness_report(
            checkpoint.model, batch, hyper, eps=options.eps, target=options.target,
            config=options.attack, generator=generator, checkpoint=checkpoint.name,
            progress=options.progress,
        )  # fmt: skip
        return dataclasses.replace(report, reference=self.name, seed=options.seed)

    def tables(self, report: RobustnessReport) -> list[Table]:
        return [robustness_table(report)]

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: RobustnessReport, out_dir: Path
    ) -> list[Path]:
        """The model's worst-attacked task at the largest radius (1-D priors, some ε > 0)."""
        hyper = gp_hyperparameters(checkpoint, prior)
        batch, generator = replay_tasks(prior, report)
        eps = max(report.eps)
        if batch.num_features != 1 or eps == 0:
            logger.info("attack plots need a 1-D prior and some eps > 0; skipped")
            return []
        config = AttackConfig.from_dict(report.attack)
        task = report.worst_task()
        path = plot_attacked_task(
            checkpoint.model, batch.task(task), hyper,
            Path(out_dir) / f"attack_{report.target}_{config.norm}.png", eps=eps,
            target=report.target, config=config, generator=generator,
            x_range=prior.input_range(),
        )  # fmt: skip
        logger.info("%s: task %d, the model's worst at eps=%g", path, task, eps)
        return [path]


register_attack(GPExactAttack())
