"""The "dt-exact" attack: a conjugate Distribution Transformer against the exact posterior.

Both posteriors over θ see the same fresh tasks of the checkpoint's GMM prior and the same
attack on the observations (`posterior_robustness_report`). The exact posterior is the
closed-form GMM posterior of the conjugate Gaussian simulator, whose observation
covariance the prior states (``prior.obs_cov``); NUTS would be too costly inside an attack.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table
from torch import Tensor, nn

from pfnkit.data import Batch
from pfnkit.reference.analytic import conjugate_gmm_posterior
from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.plots import plot_attacked_posterior
from pfnkit.robustness.registry import (
    RobustnessOptions,
    UnsupportedCheckpointError,
    register_attack,
)
from pfnkit.robustness.report import (
    RobustnessReport,
    posterior_robustness_report,
    replay_tasks,
    seeded_tasks,
)
from pfnkit.robustness.tables import robustness_table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = ["DTExactAttack", "conjugate_obs_cov", "posterior_fns"]

logger = logging.getLogger(__name__)

PosteriorPair = tuple[Callable[[Tensor], Any], Callable[[Tensor], Any]]


def conjugate_obs_cov(checkpoint: Checkpoint, prior: Any) -> Tensor:
    """The (d, d) observation covariance of a conjugate DT's prior, or a clear refusal.

    Raises:
        UnsupportedCheckpointError: not a Distribution Transformer, or a prior without a
            closed-form posterior (``prior.is_conjugate`` false or absent).
    """
    card = checkpoint.card
    if card.get("model_kind") != "dt" or not getattr(prior, "is_conjugate", False):
        raise UnsupportedCheckpointError(
            f"'dt-exact' attacks a Distribution Transformer whose prior has a closed-form "
            f"posterior (the conjugate Gaussian simulator, like dt-gauss2d); "
            f"{checkpoint.name!r} is a {card.get('model_kind')!r} model on prior "
            f"{card.get('prior_name')!r} without one"
        )
    return prior.obs_cov.to(torch.float64)


def posterior_fns(model: nn.Module, batch: Batch, obs_cov: Tensor) -> PosteriorPair:
    """Observations -> (model posterior, exact posterior), each task's mixture prior bound."""
    m = batch.meta
    parts = (m["prior_logits"], m["prior_means"], m["prior_scale_tril"])
    return (
        lambda obs_BND: model(*parts, obs_BND),
        lambda obs_BND: conjugate_gmm_posterior(*parts, obs_BND, obs_cov),
    )


def _float64_model(checkpoint: Checkpoint) -> nn.Module:
    """A float64 copy of the checkpoint's model (the checkpoint's own stays as it is)."""
    return copy.deepcopy(checkpoint.model).double().eval()


class DTExactAttack:
    """`RobustnessAttack` "dt-exact": observation attacks on a DT and the exact posterior."""

    name = "dt-exact"
    applies_to = "a Distribution Transformer on a conjugate GMM prior (dt-gauss2d)"

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: RobustnessOptions
    ) -> RobustnessReport:
        obs_cov = conjugate_obs_cov(checkpoint, prior)
        batch, generator = seeded_tasks(prior, options.tasks, options.n_ctx, 0, options.seed)
        batch = batch.to(torch.float64)
        report = posterior_robustness_report(
            *posterior_fns(_float64_model(checkpoint), batch, obs_cov), batch.x_ctx,
            eps=options.eps, config=options.attack, generator=generator,
            checkpoint=checkpoint.name, progress=options.progress,
        )  # fmt: skip
        return dataclasses.replace(report, reference=self.name, seed=options.seed)

    def tables(self, report: RobustnessReport) -> list[Table]:
        return [robustness_table(report)]

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: RobustnessReport, out_dir: Path
    ) -> list[Path]:
        """The model's worst-attacked task at the largest radius (2-D θ, some ε > 0)."""
        obs_cov = conjugate_obs_cov(checkpoint, prior)
        batch, generator = replay_tasks(prior, report)
        batch = batch.to(torch.float64)
        eps = max(report.eps)
        if batch.meta["prior_means"].shape[-1] != 2 or eps == 0:
            logger.info("posterior contour plots need a 2-D θ and some eps > 0; skipped")
            return []
        task = report.worst_task()
        one = batch.task(task)
        path = plot_attacked_posterior(
            posterior_fns(_float64_model(checkpoint), one, obs_cov), one.x_ctx,
            Path(out_dir) / "attack_observations.png", eps=eps,
            config=AttackConfig.from_dict(report.attack), generator=generator,
            title=checkpoint.name,
        )  # fmt: skip
        logger.info("%s: task %d, the model's worst at eps=%g", path, task, eps)
        return [path]


register_attack(DTExactAttack())
