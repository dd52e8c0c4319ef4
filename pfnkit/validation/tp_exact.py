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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from scipy import stats
from torch import Tensor, nn
from torch.distributions import StudentT

from pfnkit.data import Batch, Prior
from pfnkit.reference.student_t import student_t_predictive
from pfnkit.report import Report
from pfnkit.validation.per_size import SizeResult, SizeValidationReport, score_sizes
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


@runtime_checkable
class StudentTProcessPrior(Prior, Protocol):
    """A prior whose tasks are Student-t-process draws with one shared base kernel."""

    def kernel_matrix(self, x1_BND: Tensor, x2_BMD: Tensor) -> Tensor:
        """The base kernel K(x1, x2), shape (B, N, M), float64: no noise, no scale."""
        ...

    def student_t_hyperparameters(self) -> dict[str, float]:
        """``concentration`` α and ``rate`` β of the scale prior, and the ``noise`` variance."""
        ...


TPSizeResult = SizeResult  # the per-size scores are the same as gp-exact's
TPValidationReport = SizeValidationReport  # gates nll_gap_mean and coverage90_error_max


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
    sizes = score_sizes(
        model, prior, lambda task: _exact_predictive(prior, task),
        exact_coverage=exact_student_t_coverage, n_ctx_sizes=n_ctx_sizes, n_tasks=n_tasks,
        n_qry=n_qry, seed=seed, progress=progress,
    )  # fmt: skip
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
