"""Validate a GP-hyperprior PFN against the NUTS-marginalised GP and ML-II on fresh prior tasks.

For a PFN trained on a GP prior whose hyperparameters are drawn per task, the Bayes-optimal
predictive integrates the hyperparameters out. On each fresh task (context size n_ctx,
d used features) this module scores, per query point:

* the PFN (one forward pass; its time is fit + all query predictions),
* the NUTS-marginalised GP (`gp_hyperparameter_posterior` under the card's hyperprior:
  the reference the PFN should match), and
* the ML-II GP (`fit_ml2`: hyperparameters at their marginal-likelihood maximum, the
  usual practice, which overfits small contexts),

with negative log predictive density (NLL, nats), central-interval coverage and wall time.
NUTS costs 14 s to 2 min per task on one core (measured for `gp`), so only the first
``nuts_tasks`` of each cell get a NUTS run; the PFN and ML-II score all ``n_tasks``. Gaps
are paired: PFN - NUTS over the tasks with a trusted NUTS run, PFN - ML-II over every task.
NUTS runs whose R-hat, ESS or time-cap gate fails are kept and counted as untrusted; the
PFN-vs-NUTS gap the card's tolerances are checked against uses trusted runs only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from pfnkit.data import Batch
from pfnkit.metrics import interval_coverage, mean_or_none, nll, stderr_or_none
from pfnkit.reference.exact_gp import exact_gp_predictive, fit_ml2
from pfnkit.reference.gp_hyperprior import GPHyperprior
from pfnkit.reference.gp_nuts import gp_hyperparameter_posterior
from pfnkit.reference.mcmc import NUTSConfig

__all__ = [
    "DEFAULT_GP_NUTS",
    "CellResult",
    "GPNutsReport",
    "GPNutsValidationConfig",
    "TaskSampler",
    "TaskScores",
    "validate_gp_against_nuts",
]

logger = logging.getLogger(__name__)

# (n_tasks, n_ctx, n_qry, d, generator) -> Batch of tasks with d used features (model units)
TaskSampler = Callable[[int, int, int, int, torch.Generator], Batch]

# Affordable on 2 CPU cores: 2 chains x (200 warmup + 200 kept draws), trees of at most
# 2**5 - 1 leapfrog steps, no second chain once a task has run for 120 s.
DEFAULT_GP_NUTS = NUTSConfig(
    num_chains=2,
    warmup=200,
    num_samples=200,
    max_tree_depth=5,
    target_accept_prob=0.8,
    dense_mass=False,
    time_cap_seconds=120.0,
    r_hat_max=1.01,
    min_ess=100.0,
)


@dataclass(frozen=True, kw_only=True)
class GPNutsValidationConfig:
    """What to run: the grid of context sizes and feature counts, tasks, and the NUTS budget.

    Attributes:
        n_ctx_sizes: context sizes.
        dims: numbers of used features d (each within the prior's range).
        n_tasks: fresh prior tasks per (n_ctx, d) cell, scored by the PFN and ML-II.
        nuts_tasks: the first tasks of each cell that also get a NUTS run (at most n_tasks).
        n_qry: query points per task.
        level: central-interval mass whose coverage is reported.
        predictive_draws: thinned NUTS draws in the predictive mixture.
        seed: seed of the tasks; NUTS seeds derive from it.
        nuts: NUTS budget and gates.
    """

    n_ctx_sizes: tuple[int, ...] = (2, 5, 10, 20, 50, 100)
    dims: tuple[int, ...] = (1, 3, 10)
    n_tasks: int = 64
    nuts_tasks: int = 4
    n_qry: int = 100
    level: float = 0.9
    predictive_draws: int = 100
    seed: int = 12345
    nuts: NUTSConfig = DEFAULT_GP_NUTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ctx_sizes", tuple(int(n) for n in self.n_ctx_sizes))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if isinstance(self.nuts, Mapping):
            object.__setattr__(self, "nuts", NUTSConfig.from_dict(dict(self.nuts)))
        if not self.n_ctx_sizes or min(self.n_ctx_sizes) < 1:
            raise ValueError(f"n_ctx_sizes must be positive sizes, got {self.n_ctx_sizes}")
        if not self.dims or min(self.dims) < 1:
            raise ValueError(f"dims must be positive feature counts, got {self.dims}")
        if self.n_tasks < 1 or self.n_qry < 1 or self.predictive_draws < 1:
            raise ValueError(
                "n_tasks, n_qry and predictive_draws must be positive, got "
                f"{self.n_tasks}, {self.n_qry} and {self.predictive_draws}"
            )
        if not 1 <= self.nuts_tasks <= self.n_tasks:
            raise ValueError(
                f"nuts_tasks must lie in [1, n_tasks = {self.n_tasks}], got {self.nuts_tasks}"
            )
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must lie strictly between 0 and 1, got {self.level}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["nuts"] = self.nuts.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GPNutsValidationConfig:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class TaskScores:
    """One task's scores: NLL and coverage are means over its query points.

    NUTS fields are NaN (and ``nuts_run`` False) on tasks beyond the cell's ``nuts_tasks``.
    ML-II fields are NaN, with ``ml2_error`` set, when every ML-II restart failed.
    """

    n_ctx: int
    d: int
    index: int
    pfn_nll: float
    nuts_nll: float
    ml2_nll: float
    pfn_coverage: float
    nuts_coverage: float
    ml2_coverage: float
    pfn_seconds: float
    nuts_seconds: float
    ml2_seconds: float
    trusted: bool
    reason: str
    max_r_hat: float
    min_ess: float
    divergences: int
    nuts_run: bool = True
    ml2_error: str = ""


@dataclass(frozen=True, kw_only=True)
class CellResult:
    """Averages over the tasks of one (n_ctx, d) cell (None where no task qualifies).

    PFN and ML-II figures average all tasks; NUTS figures the tasks NUTS ran on.
    """

    n_ctx: int
    d: int
    n_tasks: int
    nuts_tasks: int
    trusted_fraction: float  # of the NUTS runs
    pfn_nll: float
    nuts_nll: float
    ml2_nll: float | None
    gap: float | None  # mean PFN - NUTS NLL over tasks with a trusted NUTS run
    gap_stderr: float | None
    ml2_gap: float | None  # mean PFN - ML-II NLL over the tasks where ML-II succeeded
    ml2_gap_stderr: float | None
    pfn_coverage: float
    nuts_coverage: float
    ml2_coverage: float | None
    pfn_seconds: float
    nuts_seconds: float
    ml2_seconds: float
    ml2_failures: int

    @property
    def speed_ratio(self) -> float:
        """How many times faster the PFN is than NUTS, per task."""
        return self.nuts_seconds / self.pfn_seconds

    @classmethod
    def from_tasks(cls, tasks: Sequence[TaskScores]) -> CellResult:
        ok = [t for t in tasks if not t.ml2_error]
        ran = [t for t in tasks if t.nuts_run]
        gaps = [t.pfn_nll - t.nuts_nll for t in ran if t.trusted]
        ml2_gaps = [t.pfn_nll - t.ml2_nll for t in ok]
        return cls(
            n_ctx=tasks[0].n_ctx,
            d=tasks[0].d,
            n_tasks=len(tasks),
            nuts_tasks=len(ran),
            trusted_fraction=sum(t.trusted for t in ran) / len(ran),
            pfn_nll=mean_or_none([t.pfn_nll for t in tasks]),
            nuts_nll=mean_or_none([t.nuts_nll for t in ran]),
            ml2_nll=mean_or_none([t.ml2_nll for t in ok]),
            gap=mean_or_none(gaps),
            gap_stderr=stderr_or_none(gaps),
            ml2_gap=mean_or_none(ml2_gaps),
            ml2_gap_stderr=stderr_or_none(ml2_gaps),
            pfn_coverage=mean_or_none([t.pfn_coverage for t in tasks]),
            nuts_coverage=mean_or_none([t.nuts_coverage for t in ran]),
            ml2_coverage=mean_or_none([t.ml2_coverage for t in ok]),
            pfn_seconds=mean_or_none([t.pfn_seconds for t in tasks]),
            nuts_seconds=mean_or_none([t.nuts_seconds for t in ran]),
            ml2_seconds=mean_or_none([t.ml2_seconds for t in tasks]),
            ml2_failures=len(tasks) - len(ok),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "speed_ratio": self.speed_ratio}


@dataclass(frozen=True, kw_only=True)
class GPNutsReport:
    """Every cell, every task, the configuration, and the card's tolerances."""

    checkpoint: str
    config: GPNutsValidationConfig
    cells: list[CellResult]
    tasks: list[TaskScores]
    tolerances: dict[str, float]

    @property
    def trusted_fraction(self) -> float:
        """Of the NUTS runs."""
        ran = [t for t in self.tasks if t.nuts_run]
        return sum(t.trusted for t in ran) / len(ran)

    @property
    def mean_gap(self) -> float | None:
        """Mean PFN - NUTS NLL over the cells that have trusted tasks."""
        return mean_or_none([c.gap for c in self.cells if c.gap is not None])

    def ml2_gap(self, max_n_ctx: int) -> float | None:
        """Mean PFN - ML-II NLL over the cells with n_ctx <= max_n_ctx (negative: PFN better)."""
        return mean_or_none([c.ml2_gap for c in self.cells if c.n_ctx <= max_n_ctx])

    @property
    def max_gap(self) -> float | None:
        gaps = [c.gap for c in self.cells if c.gap is not None]
        return max(gaps) if gaps else None

    @property
    def passed(self) -> bool:
        """Within the card's nll_gap_mean / nll_gap_max; a cell without trusted NUTS fails."""
        mean_tol = self.tolerances.get("nll_gap_mean", math.inf)
        max_tol = self.tolerances.get("nll_gap_max", math.inf)
        if math.isinf(mean_tol) and math.isinf(max_tol):
            return True
        if any(c.gap is None for c in self.cells):
            return False
        return self.mean_gap <= mean_tol and self.max_gap <= max_tol

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "reference": "nuts",
            "config": self.config.to_dict(),
            "cells": [c.to_dict() for c in self.cells],
            "trusted_fraction": self.trusted_fraction,
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
            "ml2_gap_n_ctx_le_20": self.ml2_gap(20),
            "tolerances": self.tolerances,
            "passed": self.passed,
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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
    kernel: str, level: float,
) -> tuple[float, float, float, str]:  # fmt: skip
    start = time.perf_counter()
    try:
        hyper = fit_ml2(x_ctx_ND, y_ctx_N, kernel=kernel)
        dist = exact_gp_predictive(x_ctx_ND, y_ctx_N, x_qry_MD, hyper).to_distribution()
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
    ml2 = _score_ml2(x_ctx_ND, y_ctx_N, x_qry_MD, y_M, hyperprior.kernel, config.level)
    return TaskScores(
        n_ctx=task.n_ctx, d=d, index=index, pfn_nll=pfn_nll, ml2_nll=ml2[0],
        pfn_coverage=pfn_cov, ml2_coverage=ml2[1], pfn_seconds=pfn_seconds,
        ml2_seconds=ml2[2], ml2_error=ml2[3], **nuts,
    )  # fmt: skip


_worker_model: nn.Module | None = None  # the PFN, in each worker process


def _init_worker(model: nn.Module) -> None:
    global _worker_model
    _worker_model = model
    # One thread per worker: NUTS on a small GP is latency-bound, and two workers with
    # torch's default thread pool each oversubscribe the cores many times over.
    torch.set_num_threads(1)


def _score_in_worker(job: tuple) -> TaskScores:
    return _score_task(_worker_model, *job)


def validate_gp_against_nuts(
    model: nn.Module,
    sample_tasks: TaskSampler,
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
        sample_tasks: draws tasks with exactly d used features, in the model's units
            (e.g. the GP prior's ``sample(..., num_used_features=d)``).
        prior_config: the card's plain-data GP prior config; the hyperprior NUTS samples
            under is read from it (`GPHyperprior.from_prior_config`).
        config: grid, task counts and NUTS budget (`DEFAULT_GP_NUTS` unless given).
        checkpoint: name for the report.
        tolerances: the card's ``nll_gap_mean`` / ``nll_gap_max`` (PFN - NUTS, nats).
        workers: processes scoring tasks in parallel (one CPU core each is best). Tasks
            and seeds do not depend on it, so neither do the scores; only times do.
        progress: show a rich progress bar per cell.
    """
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    config = config or GPNutsValidationConfig()
    model = model.eval()
    generator = torch.Generator().manual_seed(config.seed)
    cells, tasks = [], []
    with contextlib.ExitStack() as stack:
        score: Callable[[list[tuple]], Iterable[TaskScores]]
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(model,),
            ))  # fmt: skip
            score = partial(pool.map, _score_in_worker)
        else:
            score = partial(map, lambda job: _score_task(model, *job))
        for d in config.dims:
            hyperprior = GPHyperprior.from_prior_config(prior_config, d)
            for n_ctx in config.n_ctx_sizes:
                batch = sample_tasks(config.n_tasks, n_ctx, config.n_qry, d, generator)
                jobs = [(batch.task(i), hyperprior, config, i, config.seed + 1 + len(tasks) + i,
                         i < config.nuts_tasks) for i in range(config.n_tasks)]  # fmt: skip
                results: Iterable[TaskScores] = score(jobs)
                if progress:
                    from rich.progress import track

                    results = track(results, total=len(jobs), description=f"d={d}, n_ctx={n_ctx}")
                cell = list(results)
                cells.append(CellResult.from_tasks(cell))
                tasks.extend(cell)
                logger.info("d=%d n_ctx=%d: %s", d, n_ctx, cells[-1])
    return GPNutsReport(
        checkpoint=checkpoint,
        config=config,
        cells=cells,
        tasks=tasks,
        tolerances=dict(tolerances or {}),
    )
