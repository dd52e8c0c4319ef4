"""Validate a GP-prior PFN against the exact GP posterior predictive on fresh prior tasks.

Each task comes with the hyperparameters the prior drew for it (`GPRegressionPrior`), so the
Bayes-optimal predictive is the exact GP at those hyperparameters (`exact_gp_predictive`, in
float64). The validator registered as "gp-exact" scores the PFN and that GP on the same tasks
per context size, and gates the mean and the worst per-size NLL gap on the card's
``nll_gap_mean`` / ``nll_gap_max``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.distributions import Distribution

from pfnkit.data import Batch, GPRegressionPrior, Prior
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive
from pfnkit.report import Check, Report
from pfnkit.validation.per_size import GapReport, SizeResult, score_sizes, size_figures
from pfnkit.validation.plots import plot_gp_bands, plot_nll_by_size
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import gp_exact_tables

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "GPExactValidator",
    "GPValidationReport",
    "SizeResult",
    "require_gp_prior",
    "validate_against_exact_gp",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GPValidationReport(GapReport):
    """Gates the mean and the worst per-size PFN − exact GP NLL gap."""

    def checks(self) -> list[Check]:
        """Mean and worst per-size PFN - exact NLL gap; a tolerance the card lacks is not gated."""
        return [
            Check("nll_gap_mean", self.mean_gap, self.tolerances.get("nll_gap_mean")),
            Check("nll_gap_max", self.max_gap, self.tolerances.get("nll_gap_max")),
        ]

    def figures(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "sizes": size_figures(self.sizes),
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
        }


def _exact_predictive(prior: GPRegressionPrior, task: Batch) -> Distribution:
    """The exact GP at the task's own hyperparameters, float64."""
    hyper = GPHyperparameters(**prior.gp_hyperparameters(task))
    x_ctx, y_ctx, x_qry = task.x_ctx[0].double(), task.y_ctx[0].double(), task.x_qry[0].double()
    return exact_gp_predictive(x_ctx, y_ctx, x_qry, hyper).to_distribution()


def validate_against_exact_gp(
    model: nn.Module,
    prior: GPRegressionPrior,
    *,
    checkpoint: str = "",
    n_ctx_sizes: Sequence[int] = (1, 3, 10, 30, 100),
    n_tasks: int = 256,
    n_qry: int = 100,
    seed: int = 12345,
    tolerances: Mapping[str, float] | None = None,
    progress: bool = False,
) -> GPValidationReport:
    """Score `model` and the exact GP on the same fresh tasks at each context size.

    Tasks come from `prior` with a generator seeded by `seed` (distinct from training's
    streams); the prior names each task's GP (`GPRegressionPrior.gp_hyperparameters`). Each
    task is run on its own, so times are per task (fit + predict).
    """
    sizes = score_sizes(
        model, prior, lambda task: _exact_predictive(prior, task), n_ctx_sizes=n_ctx_sizes,
        n_tasks=n_tasks, n_qry=n_qry, seed=seed, progress=progress,
    )  # fmt: skip
    return GPValidationReport(checkpoint=checkpoint, sizes=sizes, tolerances=dict(tolerances or {}))


def require_gp_prior(prior: Prior, validator: str, checkpoint: str) -> GPRegressionPrior:
    """`prior`, if it is a GP regression prior; else a ValueError naming `validator`."""
    if not isinstance(prior, GPRegressionPrior):
        raise ValueError(
            f"the {validator} validator needs a GP regression prior "
            f"(pfnkit.data.GPRegressionPrior), but {checkpoint!r} was trained on "
            f"{type(prior).__name__}; pass another --reference"
        )
    return prior


class GPExactValidator:
    """A GP-prior PFN against the exact GP at each task's own hyperparameters."""

    name = "gp-exact"
    defaults = ValidationOptions(tasks=256, sizes=(1, 3, 10, 30, 100))

    def run(
        self, checkpoint: Checkpoint, prior: Prior, options: ValidationOptions
    ) -> GPValidationReport:
        options = options.with_defaults(self.defaults)
        gp_prior = require_gp_prior(prior, self.name, checkpoint.name)
        return validate_against_exact_gp(
            checkpoint.model, gp_prior, checkpoint=checkpoint.name,
            n_ctx_sizes=options.sizes, n_tasks=options.tasks, n_qry=options.n_qry,
            seed=options.seed, tolerances=checkpoint.card.get("tolerances", {}),
            progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return gp_exact_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Prior, report: Report, out_dir: Path
    ) -> list[Path]:
        """NLL by context size; predictive bands too where the prior is 1-D and bounded."""
        paths = [plot_nll_by_size(report.to_dict(), Path(out_dir) / "nll_by_size.png")]
        gp_prior = require_gp_prior(prior, self.name, checkpoint.name)
        x_range = gp_prior.input_range()
        if gp_prior.feature_range()[1] != 1 or x_range is None:
            logger.info("predictive-band plots need a 1-D prior with bounded inputs; skipped")
            return paths
        return paths + plot_gp_bands(checkpoint.model, gp_prior, out_dir=out_dir, x_range=x_range)


register_validator(GPExactValidator())
