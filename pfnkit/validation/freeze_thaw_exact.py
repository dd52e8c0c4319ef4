"""Validate a freeze-thaw PFN against the exact freeze-thaw GP predictive on fresh prior tasks.

A task of the freeze-thaw prior (Swersky, Snoek & Adams, arXiv 1406.3896) is a set of
partial learning curves: rows (configuration features..., epoch fraction t / T), the
context being the cells trained so far and the queries later epochs and unseen
configurations. Its posterior predictive at the task's own hyperparameters is the
structured GP of `pfnkit.reference.freeze_thaw` (float64, block form). The prior object
names those hyperparameters (``freeze_thaw_hyperparameters(task)``), so pfnkit never
imports `priors`. Where the prior draws hyperparameters per task, this oracle knows the
draw, so it is a lower bound on the NLL that a PFN marginalising them can reach.

The validator registered as "freeze-thaw-exact" scores the PFN and that predictive on the
same tasks per number of observed (configuration, epoch) cells, and gates the mean NLL gap
(``nll_gap_mean``) and the worst per-size deviation of the PFN's 90% central-interval
coverage from 0.90 (``coverage90_error_max``) on the card's tolerances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rich.table import Table
from torch import nn
from torch.distributions import Normal

from pfnkit.data import Batch, Prior
from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters, freeze_thaw_predictive
from pfnkit.report import Report
from pfnkit.validation.per_size import COVERAGE_LEVEL, SizeValidationReport, score_sizes
from pfnkit.validation.plots import plot_nll_by_size
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import checks_table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "FreezeThawExactValidator",
    "FreezeThawTaskPrior",
    "FreezeThawValidationReport",
    "freeze_thaw_exact_tables",
    "require_freeze_thaw_prior",
    "validate_against_exact_freeze_thaw",
]


@runtime_checkable
class FreezeThawTaskPrior(Prior, Protocol):
    """A prior whose tasks are freeze-thaw GP draws and that names each task's GP."""

    def freeze_thaw_hyperparameters(self, task: Batch) -> dict[str, Any]:
        """Keyword arguments of `FreezeThawHyperparameters` for a one-task batch."""
        ...


FreezeThawValidationReport = SizeValidationReport  # gates nll_gap_mean, coverage90_error_max


def _exact_predictive(prior: FreezeThawTaskPrior, task: Batch) -> Normal:
    """The exact freeze-thaw GP of one task at its own hyperparameters, float64, shape (M,)."""
    hyper = FreezeThawHyperparameters(**prior.freeze_thaw_hyperparameters(task))
    x_ctx, y_ctx, x_qry = task.x_ctx[0].double(), task.y_ctx[0].double(), task.x_qry[0].double()
    return freeze_thaw_predictive(x_ctx, y_ctx, x_qry, hyper).to_distribution()


def validate_against_exact_freeze_thaw(
    model: nn.Module,
    prior: FreezeThawTaskPrior,
    *,
    checkpoint: str = "",
    n_ctx_sizes: Sequence[int] = (1, 5, 20, 50, 150),
    n_tasks: int = 128,
    n_qry: int = 100,
    seed: int = 12345,
    tolerances: Mapping[str, float] | None = None,
    progress: bool = False,
) -> FreezeThawValidationReport:
    """Score `model` and the exact freeze-thaw GP on the same fresh tasks per context size.

    A context size is the number of observed (configuration, epoch) cells; tasks come from
    `prior` with a generator seeded by `seed`. Each task is run on its own, so times are
    per task (fit + predict).
    """
    sizes = score_sizes(
        model, prior, lambda task: _exact_predictive(prior, task), n_ctx_sizes=n_ctx_sizes,
        n_tasks=n_tasks, n_qry=n_qry, seed=seed, progress=progress,
    )  # fmt: skip
    return FreezeThawValidationReport(
        checkpoint=checkpoint, sizes=sizes, tolerances=dict(tolerances or {})
    )


def require_freeze_thaw_prior(prior: Any, validator: str, checkpoint: str) -> FreezeThawTaskPrior:
    """`prior`, if it names each task's freeze-thaw GP; else a ValueError naming `validator`."""
    if not isinstance(prior, FreezeThawTaskPrior):
        raise ValueError(
            f"the {validator} validator needs a freeze-thaw prior (one with "
            "`freeze_thaw_hyperparameters(task)`, such as the 'freeze-thaw' prior), but "
            f"{checkpoint!r} was trained on {type(prior).__name__}; pass another --reference"
        )
    return prior


def _coverage_pair(size: Mapping[str, Any]) -> str:
    """PFN / exact 90% coverage in percent (float or JSON string keys)."""
    pick = lambda cov: next(v for k, v in cov.items() if float(k) == COVERAGE_LEVEL)  # noqa: E731
    return f"{100 * pick(size['pfn_coverage']):.1f} / {100 * pick(size['exact_coverage']):.1f}"


def freeze_thaw_exact_tables(report: Mapping[str, Any]) -> list[Table]:
    """Per number of observed cells: PFN and exact NLL, gap, 90% coverage, time; the checks."""
    sizes = report["sizes"]
    table = Table(
        title=f"{report['checkpoint']} vs exact freeze-thaw GP ({sizes[0]['n_tasks']} tasks per "
        "size; NLL in nats per query cell)",
        caption=f"mean gap {report['mean_gap']:+.4f}, max gap {report['max_gap']:+.4f}",
        caption_justify="left",
    )
    for name in ("observed cells", "PFN NLL", "exact NLL", "gap", "cov90 PFN / exact",
                 "PFN ms/task", "exact ms/task"):  # fmt: skip
        table.add_column(name, justify="right")
    for s in sizes:
        table.add_row(
            str(s["n_ctx"]), f"{s['pfn_nll']:.4f}", f"{s['exact_nll']:.4f}", f"{s['gap']:+.4f}",
            _coverage_pair(s), f"{1e3 * s['pfn_seconds_per_task']:.2f}",
            f"{1e3 * s['exact_seconds_per_task']:.2f}",
        )  # fmt: skip
    return [table, checks_table(report)]


class FreezeThawExactValidator:
    """A freeze-thaw PFN against the exact freeze-thaw GP at each task's own hyperparameters."""

    name = "freeze-thaw-exact"
    defaults = ValidationOptions(tasks=128, sizes=(1, 5, 20, 50, 150))

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions
    ) -> FreezeThawValidationReport:
        options = options.with_defaults(self.defaults)
        ft_prior = require_freeze_thaw_prior(prior, self.name, checkpoint.name)
        return validate_against_exact_freeze_thaw(
            checkpoint.model, ft_prior, checkpoint=checkpoint.name,
            n_ctx_sizes=options.sizes, n_tasks=options.tasks, n_qry=options.n_qry,
            seed=options.seed, tolerances=checkpoint.card.get("tolerances", {}),
            progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return freeze_thaw_exact_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """NLL by number of observed cells."""
        path = Path(out_dir) / "nll_by_size.png"
        return [plot_nll_by_size(report.to_dict(), path, reference_label="exact freeze-thaw GP")]


register_validator(FreezeThawExactValidator())
