"""Validate a GP-prior PFN against the exact GP posterior predictive on fresh prior tasks.

Each task comes with the hyperparameters the prior drew for it (`GPRegressionPrior`), so the
Bayes-optimal predictive is the exact GP at those hyperparameters (`exact_gp_predictive`, in
float64). The validator registered as "gp-exact" scores the PFN and that GP on the same tasks
per context size, and gates the mean and the worst per-size NLL gap on the card's
``nll_gap_mean`` / ``nll_gap_max``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pfnkit.data import Batch, GPRegressionPrior, Prior
from pfnkit.metrics import interval_coverage, mean_or_none, nll
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive
from pfnkit.report import Check, Report
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

LEVELS = (0.5, 0.9, 0.95)


@dataclass(frozen=True)
class SizeResult:
    """PFN and exact-GP scores at one context size (per query point, averaged over tasks)."""

    n_ctx: int
    n_tasks: int
    pfn_nll: float
    exact_nll: float
    pfn_coverage: dict[float, float]
    exact_coverage: dict[float, float]
    pfn_seconds_per_task: float
    exact_seconds_per_task: float

    @property
    def gap(self) -> float:
        return self.pfn_nll - self.exact_nll


@dataclass(frozen=True)
class GPValidationReport(Report):
    """All context sizes, plus the tolerances the checkpoint card declares."""

    checkpoint: str
    sizes: list[SizeResult]
    tolerances: dict[str, float]

    @property
    def mean_gap(self) -> float | None:
        return mean_or_none([s.gap for s in self.sizes])

    @property
    def max_gap(self) -> float | None:
        return max((s.gap for s in self.sizes), default=None)

    def checks(self) -> list[Check]:
        """Mean and worst per-size PFN - exact NLL gap; a tolerance the card lacks is not gated."""
        return [
            Check("nll_gap_mean", self.mean_gap, self.tolerances.get("nll_gap_mean")),
            Check("nll_gap_max", self.max_gap, self.tolerances.get("nll_gap_max")),
        ]

    def figures(self) -> dict[str, Any]:
        sizes = []
        for s in self.sizes:
            entry = dataclasses.asdict(s)
            entry["gap"] = s.gap
            sizes.append(entry)
        return {
            "checkpoint": self.checkpoint,
            "sizes": sizes,
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
        }


def _exact_hyperparameters(prior: GPRegressionPrior, task: Batch) -> GPHyperparameters:
    return GPHyperparameters(**prior.gp_hyperparameters(task))


def _score_size(
    model: nn.Module, batch: Batch, prior: GPRegressionPrior
) -> tuple[float, float, dict, dict, float, float]:
    pfn_nlls, exact_nlls, pfn_cov, exact_cov = [], [], [], []
    pfn_time = exact_time = 0.0
    for i in range(batch.batch_size):
        task = batch.task(i)
        start = time.perf_counter()
        with torch.inference_mode():
            dist = model.predict_from_cache(
                model.encode_context(task.x_ctx, task.y_ctx), task.x_qry
            )
        pfn_time += time.perf_counter() - start
        y = task.y_qry
        pfn_nlls.append(float(nll(dist, y)))
        pfn_cov.append(interval_coverage(dist, y, LEVELS))

        start = time.perf_counter()
        exact = exact_gp_predictive(
            task.x_ctx[0].double(),
            task.y_ctx[0].double(),
            task.x_qry[0].double(),
            _exact_hyperparameters(prior, task),
        ).to_distribution()
        exact_time += time.perf_counter() - start
        y64 = y[0].double()
        exact_nlls.append(float(nll(exact, y64)))
        exact_cov.append(interval_coverage(exact, y64, LEVELS))
    n = batch.batch_size

    def average(covs: list[dict]) -> dict[float, float]:
        return {level: mean_or_none([c[level] for c in covs]) for level in LEVELS}

    return (
        mean_or_none(pfn_nlls),
        mean_or_none(exact_nlls),
        average(pfn_cov),
        average(exact_cov),
        pfn_time / n,
        exact_time / n,
    )


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
    generator = torch.Generator().manual_seed(seed)
    model = model.eval()
    sizes = []
    iterator: Any = n_ctx_sizes
    if progress:
        from rich.progress import track

        iterator = track(n_ctx_sizes, description="validating context sizes")
    for n_ctx in iterator:
        batch = prior.sample(n_tasks, n_ctx, n_qry, generator=generator)
        scores = _score_size(model, batch, prior)
        sizes.append(SizeResult(n_ctx, n_tasks, *scores))
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
