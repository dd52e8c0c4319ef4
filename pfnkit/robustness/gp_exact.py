"""The "gp-exact" attack: a PFN on a fixed-hyperparameter GP prior against the exact GP.

Both predictors see the same fresh tasks of the checkpoint's prior and the same attack on
their context (`robustness_report`); the exact GP runs at the hyperparameters every task
was drawn with, which the prior itself states (``prior.fixed_gp_hyperparameters()``).

`ExactContextAttack` is the run, tables and plots of every such context attack, a PFN
against an `ExactPredictive`: "gp-exact" here, "tp-exact" (`pfnkit.robustness.tp_exact`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from rich.table import Table
from torch import Tensor

from pfnkit.data import Batch
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive
from pfnkit.robustness.attacks import exact_gp_predictor
from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.plots import Band, ExactPredictive, plot_attacked_task
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

__all__ = [
    "ExactContextAttack",
    "FixedGPPrior",
    "GPExactAttack",
    "exact_gp_band",
    "gp_hyperparameters",
    "require_pfn_on",
]

logger = logging.getLogger(__name__)


class ExactContextAttack:
    """Base of the `RobustnessAttack`s on a PFN's context against an exact predictive.

    Both see the same fresh tasks of the checkpoint's prior and the same attack on their
    context (`robustness_report`). A subclass sets `name` and `applies_to` and says which
    exact predictive a checkpoint and its prior call for (`exact_predictive`, which refuses
    the others); `run`, `tables` and `plots` are shared.
    """

    name: str
    applies_to: str

    def exact_predictive(self, checkpoint: Checkpoint, prior: Any) -> ExactPredictive:
        """The exact predictive of the checkpoint's tasks.

        Raises:
            UnsupportedCheckpointError: the checkpoint or its prior is not one this attack
                applies to.
        """
        raise NotImplementedError

    def plot_range(self, prior: Any, task: Batch) -> tuple[float, float] | None:
        """The x interval a plot of ``task`` spans; None spans its context inputs."""
        return None

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: RobustnessOptions
    ) -> RobustnessReport:
        exact = self.exact_predictive(checkpoint, prior)
        batch, generator = seeded_tasks(prior, options.tasks, options.n_ctx, options.n_qry,
                                        options.seed)  # fmt: skip
        report = robustness_report(
            checkpoint.model, batch, exact.predict, eps=options.eps, target=options.target,
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
        exact = self.exact_predictive(checkpoint, prior)
        batch, generator = replay_tasks(prior, report)
        eps = max(report.eps)
        if batch.num_features != 1 or eps == 0:
            logger.info("attack plots need a 1-D prior and some eps > 0; skipped")
            return []
        config = AttackConfig.from_dict(report.attack)
        task = report.worst_task()
        one = batch.task(task)
        path = plot_attacked_task(
            checkpoint.model, one, exact,
            Path(out_dir) / f"attack_{report.target}_{config.norm}.png", eps=eps,
            target=report.target, config=config, generator=generator,
            x_range=self.plot_range(prior, one),
        )  # fmt: skip
        logger.info("%s: task %d, the model's worst at eps=%g", path, task, eps)
        return [path]


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


def require_pfn_on(
    checkpoint: Checkpoint, prior: Any, protocol: type, *, attack: str, prior_kind: str
) -> None:
    """Refuse unless the checkpoint is a PFN and ``prior`` has ``protocol``'s methods.

    Raises:
        UnsupportedCheckpointError: "'<attack>' attacks a PFN trained on <prior_kind>; ...".
    """
    card = checkpoint.card
    if card.get("model_kind") != "pfn" or not isinstance(prior, protocol):
        raise UnsupportedCheckpointError(
            f"{attack!r} attacks a PFN trained on {prior_kind}; {checkpoint.name!r} is a "
            f"{card.get('model_kind')!r} model on prior {card.get('prior_name')!r}"
        )


def gp_hyperparameters(checkpoint: Checkpoint, prior: Any) -> GPHyperparameters:
    """The exact GP behind a PFN checkpoint's tasks, or a clear refusal.

    Raises:
        UnsupportedCheckpointError: not a PFN, or a prior that is not one fixed GP.
    """
    require_pfn_on(checkpoint, prior, FixedGPPrior, attack="gp-exact",
                   prior_kind="a GP prior with fixed hyperparameters, like gp-rbf")  # fmt: skip
    try:
        return GPHyperparameters(**prior.fixed_gp_hyperparameters())
    except ValueError as err:
        raise UnsupportedCheckpointError(
            f"'gp-exact' cannot attack {checkpoint.name!r}: {err}. Use a checkpoint whose GP "
            "prior fixes every hyperparameter, like gp-rbf"
        ) from err


def exact_gp_band(
    hyper: GPHyperparameters, x_ctx_BND: Tensor, y_ctx_BN: Tensor, grid_G: Tensor
) -> Band:
    """The exact GP's predictive mean and 90% interval on a grid, for one task (B = 1)."""
    with torch.no_grad():
        pred = exact_gp_predictive(x_ctx_BND[0], y_ctx_BN[0], grid_G.reshape(-1, 1), hyper)
        low, high = pred.interval(0.9)
    return pred.mean, low, high


class GPExactAttack(ExactContextAttack):
    """`RobustnessAttack` "gp-exact": context attacks on the PFN and on the exact GP."""

    name = "gp-exact"
    applies_to = "a PFN on a GP prior with fixed hyperparameters (gp-rbf, gp-rbf-robust)"

    def exact_predictive(self, checkpoint: Checkpoint, prior: Any) -> ExactPredictive:
        hyper = gp_hyperparameters(checkpoint, prior)
        return ExactPredictive(
            "exact GP", exact_gp_predictor(hyper), functools.partial(exact_gp_band, hyper)
        )

    def plot_range(self, prior: FixedGPPrior, task: Batch) -> tuple[float, float] | None:
        """The interval the prior draws inputs from, if bounded."""
        return prior.input_range()


register_attack(GPExactAttack())
