"""Validate a Student-t-process PFN against the exact Student-t predictive on fresh prior tasks.

A Student-t-process prior (a GP whose kernel and noise share one inverse-gamma scale) has a
closed-form posterior predictive: one Student-t per query point
(`pfnkit.reference.student_t.student_t_predictive`, float64; Shah, Wilson & Ghahramani,
arXiv 1402.4306). The prior object supplies its base kernel (``kernel_matrix(x1, x2)``) and
its scale prior and noise (``student_t_hyperparameters()``), so pfnkit never imports
`priors`. The validator registered as "tp-exact" scores the PFN and that predictive on the
same tasks per context size, and gates the mean NLL gap (``nll_gap_mean``) and the worst
per-size deviation of the PFN's 90% central-interval coverage from 0.90
(``coverage90_error_max``) on the card's tolerances.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from scipy import stats
from torch import Tensor, nn
from torch.distributions import StudentT

from pfnkit.data import Batch, Prior
from pfnkit.metrics import interval_coverage, mean_or_none, nll
from pfnkit.reference.student_t import student_t_predictive
from pfnkit.report import Check, Report
from pfnkit.validation.plots import plot_nll_by_size
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import tp_exact_tables

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "StudentTProcessPrior",
    "TPExactValidator",
    "TPSizeResult",
    "TPValidationReport",
    "exact_student_t_coverage",
    "require_student_t_prior",
    "validate_against_exact_student_t",
]

LEVELS = (0.5, 0.9, 0.95)
COVERAGE_LEVEL = 0.9  # the level of the gated coverage check


@runtime_checkable
class StudentTProcessPrior(Prior, Protocol):
    """A prior whose tasks are Student-t-process draws with one shared base kernel."""

    def kernel_matrix(self, x1_BND: Tensor, x2_BMD: Tensor) -> Tensor:
        """The base kernel K(x1, x2), shape (B, N, M), float64: no noise, no scale."""
        ...

    def student_t_hyperparameters(self) -> dict[str, float]:
        """``concentration`` α and ``rate`` β of the scale prior, and the ``noise`` variance."""
        ...


@dataclass(frozen=True)
class TPSizeResult:
    """PFN and exact Student-t scores at one context size (per query point, averaged over tasks)."""

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

    @property
    def coverage90_error(self) -> float:
        """|PFN 90% central-interval coverage − 0.90|."""
        return abs(self.pfn_coverage[COVERAGE_LEVEL] - COVERAGE_LEVEL)


@dataclass(frozen=True)
class TPValidationReport(Report):
    """All context sizes, plus the tolerances the checkpoint card declares."""

    checkpoint: str
    sizes: list[TPSizeResult]
    tolerances: dict[str, float]

    @property
    def mean_gap(self) -> float | None:
        return mean_or_none([s.gap for s in self.sizes])

    @property
    def max_gap(self) -> float | None:
        return max((s.gap for s in self.sizes), default=None)

    @property
    def coverage90_error_max(self) -> float | None:
        return max((s.coverage90_error for s in self.sizes), default=None)

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
        sizes = []
        for s in self.sizes:
            entry = dataclasses.asdict(s)
            entry["gap"] = s.gap
            entry["coverage90_error"] = s.coverage90_error
            sizes.append(entry)
        return {
            "checkpoint": self.checkpoint,
            "sizes": sizes,
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
            "coverage90_error_max": self.coverage90_error_max,
        }


def exact_student_t_coverage(
    dist: StudentT, y: Tensor, levels: Sequence[float]
) -> dict[float, float]:
    """Fraction of `y` inside each central interval of `dist` (torch's StudentT has no icdf).

    y lies inside the central interval of mass L exactly when its cdf value u satisfies
    (1 − L)/2 <= u <= (1 + L)/2; u comes from `scipy.stats.t.cdf`.
    """
    u = stats.t.cdf(
        y.double().cpu().numpy(),
        dist.df.double().cpu().numpy(),
        loc=dist.loc.double().cpu().numpy(),
        scale=dist.scale.double().cpu().numpy(),
    )
    out = {}
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"interval level must lie in (0, 1), got {level}")
        inside = (u >= (1 - level) / 2) & (u <= (1 + level) / 2)
        out[level] = float(inside.mean())
    return out


def _exact_predictive(prior: StudentTProcessPrior, task: Batch) -> StudentT:
    """The exact predictive of one task, batch shape (1, M), float64."""
    x_ctx, x_qry = task.x_ctx.double(), task.x_qry.double()
    k_qry_BM = prior.kernel_matrix(x_qry, x_qry).diagonal(dim1=-2, dim2=-1)
    return student_t_predictive(
        prior.kernel_matrix(x_ctx, x_ctx),
        prior.kernel_matrix(x_qry, x_ctx),
        k_qry_BM,
        task.y_ctx.double(),
        **prior.student_t_hyperparameters(),
    )


def _score_size(
    model: nn.Module, batch: Batch, prior: StudentTProcessPrior
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
        exact = _exact_predictive(prior, task)
        exact_time += time.perf_counter() - start
        y64 = y.double()
        exact_nlls.append(float(nll(exact, y64)))
        exact_cov.append(exact_student_t_coverage(exact, y64, LEVELS))
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


def validate_against_exact_student_t(
    model: nn.Module,
    prior: StudentTProcessPrior,
    *,
    checkpoint: str = "",
    n_ctx_sizes: Sequence[int] = (1, 3, 10, 30, 100),
    n_tasks: int = 256,
    n_qry: int = 100,
    seed: int = 12345,
    tolerances: Mapping[str, float] | None = None,
    progress: bool = False,
) -> TPValidationReport:
    """Score `model` and the exact Student-t predictive on the same fresh tasks per size.

    Tasks come from `prior` with a generator seeded by `seed` (distinct from training's
    streams). Each task is run on its own, so times are per task (fit + predict).
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
        sizes.append(TPSizeResult(n_ctx, n_tasks, *scores))
    return TPValidationReport(checkpoint=checkpoint, sizes=sizes, tolerances=dict(tolerances or {}))


def require_student_t_prior(prior: Any, validator: str, checkpoint: str) -> StudentTProcessPrior:
    """`prior`, if it offers the Student-t-process methods; else a ValueError naming `validator`."""
    if not isinstance(prior, StudentTProcessPrior):
        raise ValueError(
            f"the {validator} validator needs a Student-t-process prior (one with "
            "`kernel_matrix(x1, x2)` and `student_t_hyperparameters()`, such as the 'tp' "
            f"prior), but {checkpoint!r} was trained on {type(prior).__name__}; pass "
            "another --reference"
        )
    return prior


class TPExactValidator:
    """A Student-t-process PFN against the exact Student-t posterior predictive."""

    name = "tp-exact"
    defaults = ValidationOptions(tasks=256, sizes=(1, 3, 10, 30, 100))

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions
    ) -> TPValidationReport:
        options = options.with_defaults(self.defaults)
        tp_prior = require_student_t_prior(prior, self.name, checkpoint.name)
        return validate_against_exact_student_t(
            checkpoint.model, tp_prior, checkpoint=checkpoint.name,
            n_ctx_sizes=options.sizes, n_tasks=options.tasks, n_qry=options.n_qry,
            seed=options.seed, tolerances=checkpoint.card.get("tolerances", {}),
            progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return tp_exact_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """NLL by context size."""
        path = Path(out_dir) / "nll_by_size.png"
        return [plot_nll_by_size(report.to_dict(), path, reference_label="exact Student-t")]


register_validator(TPExactValidator())
