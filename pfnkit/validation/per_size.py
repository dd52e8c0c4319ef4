"""Score a PFN and an exact oracle on the same fresh prior tasks, one context size at a time.

The shared loop of the closed-form validators (`gp_exact`, `tp_exact`, `freeze_thaw_exact`):
each validator supplies the oracle's predictive for one task and how to read interval
coverage off it. `SizeValidationReport` is the report of those that gate the mean NLL gap
and the worst per-size 90%-coverage error (`tp_exact`, `freeze_thaw_exact`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pfnkit.data import Batch, Prior
from pfnkit.metrics import interval_coverage, mean_or_none, nll
from pfnkit.report import Check, Report

__all__ = [
    "COVERAGE_LEVEL",
    "LEVELS",
    "SizeResult",
    "SizeValidationReport",
    "coverage90_error",
    "score_sizes",
    "size_figures",
]

LEVELS = (0.5, 0.9, 0.95)
COVERAGE_LEVEL = 0.9  # the level of the gated coverage check (one of LEVELS)

ExactPredictive = Callable[[Batch], Distribution]  # one task -> batch shape (1, M), float64
Coverage = Callable[[Distribution, Tensor, Sequence[float]], dict[float, float]]


@dataclass(frozen=True)
class SizeResult:
    """PFN and exact scores at one context size (per query point, averaged over tasks)."""

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


def _score_size(
    model: nn.Module, batch: Batch, exact_predictive: ExactPredictive, exact_coverage: Coverage
) -> tuple[float, float, dict, dict, float, float]:
    pfn_nlls, exact_nlls, pfn_cov, exact_cov = [], [], [], []
    pfn_time = exact_time = 0.0
    for i in range(batch.batch_size):  # one task at a time: times are per task (fit + predict)
        task = batch.task(i)
        start = time.perf_counter()
        with torch.inference_mode():
            dist = model.predict_from_cache(
                model.encode_context(task.x_ctx, task.y_ctx), task.x_qry
            )
        pfn_time += time.perf_counter() - start
        pfn_nlls.append(float(nll(dist, task.y_qry)))
        pfn_cov.append(interval_coverage(dist, task.y_qry, LEVELS))
        start = time.perf_counter()
        exact = exact_predictive(task)
        exact_time += time.perf_counter() - start
        y64 = task.y_qry.double()
        exact_nlls.append(float(nll(exact, y64)))
        exact_cov.append(exact_coverage(exact, y64, LEVELS))

    def average(covs: list[dict]) -> dict[float, float]:
        return {level: mean_or_none([c[level] for c in covs]) for level in LEVELS}

    n = batch.batch_size
    return (mean_or_none(pfn_nlls), mean_or_none(exact_nlls), average(pfn_cov),
            average(exact_cov), pfn_time / n, exact_time / n)  # fmt: skip


def score_sizes(
    model: nn.Module,
    prior: Prior,
    exact_predictive: ExactPredictive,
    *,
    exact_coverage: Coverage = interval_coverage,
    n_ctx_sizes: Sequence[int],
    n_tasks: int,
    n_qry: int,
    seed: int,
    progress: bool = False,
) -> list[SizeResult]:
    """Per context size, `n_tasks` fresh tasks from `prior` (generator seeded by `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    model = model.eval()
    iterator: Any = n_ctx_sizes
    if progress:
        from rich.progress import track

        iterator = track(n_ctx_sizes, description="validating context sizes")
    sizes = []
    for n_ctx in iterator:
        batch = prior.sample(n_tasks, n_ctx, n_qry, generator=generator)
        scores = _score_size(model, batch, exact_predictive, exact_coverage)
        sizes.append(SizeResult(n_ctx, n_tasks, *scores))
    return sizes


def size_figures(sizes: Sequence[SizeResult], **extra: Callable[[SizeResult], float]) -> list:
    """Each size as plain data with its gap, plus one entry per `extra` figure of a size."""
    return [
        {**dataclasses.asdict(s), "gap": s.gap, **{k: f(s) for k, f in extra.items()}}
        for s in sizes
    ]


def coverage90_error(size: SizeResult) -> float:
    """|PFN 90% central-interval coverage − 0.90| at one context size."""
    return abs(size.pfn_coverage[COVERAGE_LEVEL] - COVERAGE_LEVEL)


@dataclass(frozen=True)
class GapReport(Report):
    """All context sizes, plus the tolerances the checkpoint card declares; the mean and
    worst per-size NLL gap. Subclasses choose which figures they gate (`checks`)."""

    checkpoint: str
    sizes: list[SizeResult]
    tolerances: dict[str, float]

    @property
    def mean_gap(self) -> float | None:
        return mean_or_none([s.gap for s in self.sizes])

    @property
    def max_gap(self) -> float | None:
        return max((s.gap for s in self.sizes), default=None)


@dataclass(frozen=True)
class SizeValidationReport(GapReport):
    """Gates ``nll_gap_mean`` (mean over sizes of PFN NLL − exact NLL) and
    ``coverage90_error_max`` (worst per-size `coverage90_error`); a tolerance the card
    lacks is shown but not gated.
    """

    @property
    def coverage90_error_max(self) -> float | None:
        return max((coverage90_error(s) for s in self.sizes), default=None)

    def checks(self) -> list[Check]:
        """Mean NLL gap and worst 90%-coverage error; a tolerance the card lacks is not gated."""
        return [
            Check("nll_gap_mean", self.mean_gap, self.tolerances.get("nll_gap_mean")),
            Check(
                "coverage90_error_max",
                self.coverage90_error_max,
                self.tolerances.get("coverage90_error_max"),
            ),
        ]

    def figures(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "sizes": size_figures(self.sizes, coverage90_error=coverage90_error),
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
            "coverage90_error_max": self.coverage90_error_max,
        }
