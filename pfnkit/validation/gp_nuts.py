"""Validate a GP-hyperprior PFN against the NUTS-marginalised GP and ML-II on fresh prior tasks.

For a PFN trained on a GP prior whose hyperparameters are drawn per task, the Bayes-optimal
predictive integrates the hyperparameters out. On each fresh task (context size n_ctx,
d used features) this module scores, per query point:

* the PFN (one forward pass; its time is fit + all query predictions),
* the NUTS-marginalised GP (`gp_hyperparameter_posterior` under the card's hyperprior:
  the reference the PFN should match), and
* the ML-II GP (`fit_ml2`: hyperparameters at their marginal-likelihood maximum, the
  usual practice, which overfits small contexts; `fit_ml2_linear`, the same kernel plus
  the linear ARD part, when the card's prior has one),

with negative log predictive density (NLL, nats), central-interval coverage and wall time.
NUTS costs 14 s to 2 min per task on one core (measured for `gp`), so only the first
``nuts_tasks`` of each cell get a NUTS run; the PFN and ML-II score all ``n_tasks``. Gaps
are paired: PFN - NUTS over the tasks with a trusted NUTS run, PFN - ML-II over every task.
NUTS runs whose R-hat, ESS or time-cap gate fails are kept and counted as untrusted; the
PFN-vs-NUTS gap the card's tolerances are checked against uses trusted runs only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.distributions import Distribution

from pfnkit.data import Batch, GPRegressionPrior, Prior
from pfnkit.metrics import interval_coverage, nll
from pfnkit.reference.exact_gp import exact_gp_predictive, fit_ml2
from pfnkit.reference.gp_cholesky import cholesky_gp_predictive
from pfnkit.reference.gp_hyperprior import GPHyperprior
from pfnkit.reference.gp_linear_ml2 import fit_ml2_linear
from pfnkit.reference.gp_nuts import gp_hyperparameter_posterior
from pfnkit.report import Report
from pfnkit.validation.gp_exact import require_gp_prior
from pfnkit.validation.gp_nuts_results import (
    DEFAULT_GP_NUTS,
    CellResult,
    GPNutsReport,
    GPNutsValidationConfig,
    TaskScores,
)
from pfnkit.validation.plots import plot_nll_by_context
from pfnkit.validation.pool import map_in_workers
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import gp_nuts_tables

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "DEFAULT_GP_NUTS",
    "CellResult",
    "GPNutsReport",
    "GPNutsValidationConfig",
    "GPNutsValidator",
    "TaskScores",
    "validate_gp_against_nuts",
]

logger = logging.getLogger(__name__)


def _scores(dist: Distribution, y_M: torch.Tensor, level: float) -> tuple[float, float]:
    return float(nll(dist, y_M)), interval_coverage(dist, y_M, (level,))[level]


def _score_pfn(model: nn.Module, task: Batch, level: float) -> tuple[float, float, float]:
    start = time.perf_counter()
    with torch.inference_mode():
        dist = model.predict_from_cache(model.encode_context(task.x_ctx, task.y_ctx), task.x_qry)
    seconds = time.perf_counter() - start
    return (*_scores(dist, task.y_qry, level), seconds)


def _score_ml2(
    x_ctx_ND: torch.Tensor, y_ctx_N: torch.Tensor, x_qry_MD: torch.Tensor, y_M: torch.Tensor,
    hyperprior: GPHyperprior, level: float,
) -> tuple[float, float, float, str]:  # fmt: skip
    """ML-II in the hyperprior's kernel family (with its linear part when it has one)."""
    start = time.perf_counter()
    try:
        if hyperprior.has_linear:
            hyper = fit_ml2_linear(x_ctx_ND, y_ctx_N, kernel=hyperprior.kernel)
            gp = cholesky_gp_predictive(x_ctx_ND, y_ctx_N, x_qry_MD, hyper)
        else:
            hyper = fit_ml2(x_ctx_ND, y_ctx_N, kernel=hyperprior.kernel)
            gp = exact_gp_predictive(x_ctx_ND, y_ctx_N, x_qry_MD, hyper)
        dist = gp.to_distribution()
    except RuntimeError as error:  # every restart failed numerically: flagged, not hidden
        return math.nan, math.nan, time.perf_counter() - start, str(error)
    seconds = time.perf_counter() - start
    return (*_scores(dist, y_M, level), seconds, "")


def _score_nuts(
    x_ctx_ND: torch.Tensor, y_ctx_N: torch.Tensor, x_qry_MD: torch.Tensor, y_M: torch.Tensor,
    hyperprior: GPHyperprior, config: GPNutsValidationConfig, seed: int,
) -> dict[str, Any]:  # fmt: skip
    start = time.perf_counter()
    posterior = gp_hyperparameter_posterior(
        x_ctx_ND, y_ctx_N, hyperprior, config.nuts, seed=seed,
        predictive_draws=config.predictive_draws,
    )  # fmt: skip
    nuts_nll, nuts_cov = _scores(posterior.predictive(x_qry_MD), y_M, config.level)
    run = posterior.nuts
    return {
        "nuts_nll": nuts_nll, "nuts_coverage": nuts_cov,
        "nuts_seconds": time.perf_counter() - start, "trusted": run.trusted,
        "reason": run.reason, "max_r_hat": run.max_r_hat, "min_ess": run.min_ess,
        "divergences": run.divergences,
    }  # fmt: skip


_NOT_RUN = {
    "nuts_nll": math.nan, "nuts_coverage": math.nan, "nuts_seconds": math.nan,
    "trusted": False, "reason": "no NUTS run (beyond the cell's nuts_tasks)",
    "max_r_hat": math.nan, "min_ess": math.nan, "divergences": 0, "nuts_run": False,
}  # fmt: skip


def _score_task(
    model: nn.Module, task: Batch, hyperprior: GPHyperprior, config: GPNutsValidationConfig,
    index: int, seed: int, with_nuts: bool,
) -> TaskScores:  # fmt: skip
    """The PFN, ML-II and (``with_nuts``) NUTS on one task (batch of one, d used features first)."""
    d = hyperprior.num_features
    pfn_nll, pfn_cov, pfn_seconds = _score_pfn(model, task, config.level)
    x_ctx_ND = task.x_ctx[0, :, :d].double()
    y_ctx_N = task.y_ctx[0].double()
    x_qry_MD = task.x_qry[0, :, :d].double()
    y_M = task.y_qry[0].double()
    nuts = (_score_nuts(x_ctx_ND, y_ctx_N, x_qry_MD, y_M, hyperprior, config, seed)
            if with_nuts else _NOT_RUN)  # fmt: skip
    ml2 = _score_ml2(x_ctx_ND, y_ctx_N, x_qry_MD, y_M, hyperprior, config.level)
    return TaskScores(
        n_ctx=task.n_ctx, d=d, index=index, pfn_nll=pfn_nll, ml2_nll=ml2[0],
        pfn_coverage=pfn_cov, ml2_coverage=ml2[1], pfn_seconds=pfn_seconds,
        ml2_seconds=ml2[2], ml2_error=ml2[3], **nuts,
    )  # fmt: skip


def _score_job(model: nn.Module, job: tuple) -> TaskScores:
    return _score_task(model, *job)


def validate_gp_against_nuts(
    model: nn.Module,
    prior: GPRegressionPrior,
    prior_config: Mapping[str, Any],
    *,
    config: GPNutsValidationConfig | None = None,
    checkpoint: str = "",
    tolerances: Mapping[str, float] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> GPNutsReport:
    """Score the PFN, the NUTS-marginalised GP and ML-II on the same fresh tasks.

    Args:
        model: the PFN (in the dtype it serves in; timed as fit + predict per task).
        prior: draws the tasks, with exactly d used features (``num_used_features=d``),
            in the model's units (with the prior's linear part, when it has one).
        prior_config: the card's plain-data GP prior config; the hyperprior NUTS samples
            under is read from it (`GPHyperprior.from_prior_config`), independently of
            the sampler in `prior`.
        config: grid, task counts and NUTS budget (`DEFAULT_GP_NUTS` unless given).
        checkpoint: name for the report.
        tolerances: the card's ``nll_gap_mean`` / ``nll_gap_max`` (PFN - NUTS, nats).
        workers: processes scoring tasks in parallel (one CPU core each is best). Tasks
            and seeds do not depend on it, so neither do the scores; only times do.
        progress: show a rich progress bar.
    """
    config = config or GPNutsValidationConfig()
    model = model.eval()
    generator = torch.Generator().manual_seed(config.seed)
    jobs = []
    for d in config.dims:
        hyperprior = GPHyperprior.from_prior_config(prior_config, d)
        for n_ctx in config.n_ctx_sizes:
            batch = prior.sample(config.n_tasks, n_ctx, config.n_qry, generator=generator,
                                 num_used_features=d)  # fmt: skip
            jobs += [(batch.task(i), hyperprior, config, i, config.seed + 1 + len(jobs) + i,
                      i < config.nuts_tasks) for i in range(config.n_tasks)]  # fmt: skip
    tasks = map_in_workers(_score_job, jobs, workers=workers, init_state=model,
                           progress=progress, description="PFN vs NUTS")  # fmt: skip
    cells = []
    for start in range(0, len(tasks), config.n_tasks):
        cells.append(CellResult.from_tasks(tasks[start : start + config.n_tasks]))
        logger.info("d=%d n_ctx=%d: %s", cells[-1].d, cells[-1].n_ctx, cells[-1])
    return GPNutsReport(
        checkpoint=checkpoint,
        config=config,
        cells=cells,
        tasks=tasks,
        tolerances=dict(tolerances or {}),
    )


def _dims(prior: GPRegressionPrior, dims: Sequence[int] | None, checkpoint: str) -> tuple:
    """The requested feature counts, checked against the prior's; default 1, 3, 10 in range."""
    low, high = prior.feature_range()
    allowed = range(low, high + 1)
    dims = tuple(dims) if dims else tuple(d for d in (1, 3, 10) if d in allowed) or (high,)
    if any(d not in allowed for d in dims):
        raise ValueError(f"--dims {list(dims)}: {checkpoint!r} was trained on d in {list(allowed)}")
    return dims


class GPNutsValidator:
    """A GP-hyperprior PFN against the NUTS-marginalised GP, next to ML-II."""

    name = "gp-nuts"
    defaults = ValidationOptions(tasks=64, sizes=(2, 5, 10, 20, 50, 100), nuts_tasks=4)

    def run(self, checkpoint: Checkpoint, prior: Prior, options: ValidationOptions) -> GPNutsReport:
        options = options.with_defaults(self.defaults)
        gp_prior = require_gp_prior(prior, self.name, checkpoint.name)
        if not gp_prior.has_hyperpriors:
            raise ValueError(
                f"the gp-nuts reference needs a GP prior with hyperpriors, but "
                f"{checkpoint.name!r} fixes every hyperparameter; use --reference exact"
            )
        budget = {"warmup": options.nuts_warmup, "num_samples": options.nuts_samples}
        config = GPNutsValidationConfig(
            n_ctx_sizes=options.sizes, dims=_dims(gp_prior, options.dims, checkpoint.name),
            n_tasks=options.tasks, n_qry=options.n_qry, seed=options.seed,
            nuts_tasks=min(options.nuts_tasks, options.tasks),
            nuts=dataclasses.replace(
                DEFAULT_GP_NUTS, **{k: v for k, v in budget.items() if v is not None}
            ),
        )  # fmt: skip
        return validate_gp_against_nuts(
            checkpoint.model, gp_prior, checkpoint.card["prior_config"], config=config,
            checkpoint=checkpoint.name, tolerances=checkpoint.card.get("tolerances", {}),
            workers=options.workers, progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return gp_nuts_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Prior, report: Report, out_dir: Path
    ) -> list[Path]:
        return [plot_nll_by_context(report.to_dict(), Path(out_dir) / "nll_by_context.png")]


register_validator(GPNutsValidator())
