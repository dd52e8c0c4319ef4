"""Validate a PFN classifier trained on a BNN prior against NUTS on the exact weight posterior.

On each fresh prior task (context size n_ctx, query points with their sampled labels) this
module scores, per query point:

* the PFN: one forward pass of the checkpoint's network, timed from context to all
  query predictions (after one untimed warm-up pass on the same task);
* the NUTS reference (`pfnkit.reference.nuts_classifier`): pyro NUTS on the network's
  weights under the prior's log-joint; the mean over draws of p(y | x, θ) is the
  Bayes-optimal answer the PFN approximates. It is timed from the start of sampling to the
  query probabilities; diagnostics computed afterwards are not timed.

Both get the negative log predictive density of the query labels (NLL, nats) and the
accuracy of their most probable class. A run is trusted when its function-level R-hat/ESS
gate passes (`GATED_ON`) and no single query point's R-hat reaches ``point_r_hat_max``;
the gap PFN - NUTS uses trusted runs only, and a size passes only if at least
``min_trusted_fraction`` of its runs are trusted.

**NLL against wall-clock time.** As in Müller et al. (arXiv 2112.10510, Fig. 6), NUTS is
also run with growing budgets (one chain, b warmup steps and b draws) on a few tasks, and
its NLL is plotted against its time with the PFN as one point.

`pfnkit` does not import `priors`: the prior arrives as an object with the methods of
`FixedClassifierPrior` (the BNN prior in fixed-architecture classification mode has them).
Registered as the "bnn-nuts" validator.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pfnkit.data import Batch, LogJointPrior
from pfnkit.metrics import mean_or_none
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.reference.nuts_classifier import NUTSClassPredictive, nuts_class_predictive
from pfnkit.report import Report
from pfnkit.validation.bnn_nuts_results import (
    DEFAULT_BNN_NUTS,
    BNNNutsReport,
    BNNNutsValidationConfig,
    ClassCellResult,
    ClassTaskScores,
    CurvePoint,
)
from pfnkit.validation.plots import plot_bnn_nuts
from pfnkit.validation.pool import map_in_workers
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import bnn_nuts_tables

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "BNNNutsValidator",
    "FixedClassifierPrior",
    "validate_classifier_against_nuts",
]


class FixedClassifierPrior(LogJointPrior, Protocol):
    """A classification prior with one finite weight vector θ: a log-joint and a predictive."""

    @property
    def is_fixed_classifier(self) -> bool:
        """True when θ has one fixed layout and the likelihood is a class distribution."""
        ...

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:  # fmt: skip
        """Fresh tasks; ``meta["weights"]`` (B, P) holds each task's true θ."""
        ...

    def predictive(self, params_SP: Tensor, x_MD: Tensor) -> Distribution:
        """p(y | x, θ): Bernoulli or Categorical with batch shape (S, M)."""
        ...


class _Job(NamedTuple):
    """One unit of work: a scored task, or one budget of the NLL-vs-time curve."""

    task: Batch
    seed: int
    index: int
    budget: int | None = None  # None: a scored task with the full NUTS budget


class _State(NamedTuple):
    """What every job needs; sent once to each worker process."""

    model: nn.Module
    prior: FixedClassifierPrior
    config: BNNNutsValidationConfig


class _CurveResult(NamedTuple):
    budget: int
    nuts_nll: float
    nuts_seconds: float
    pfn_nll: float
    pfn_seconds: float


def _accuracy(probs_MC: Tensor, y_M: Tensor) -> float:
    return float((probs_MC.argmax(-1) == y_M.long()).to(torch.float64).mean())


def _score_pfn(model: nn.Module, task: Batch) -> tuple[float, float, float]:
    """NLL, accuracy and seconds of one forward pass (context in, all queries out)."""
    with torch.inference_mode():
        model(task.x_ctx, task.y_ctx, task.x_qry)  # untimed: pays one-off allocation costs
        start = time.perf_counter()
        dist = model(task.x_ctx, task.y_ctx, task.x_qry)
        seconds = time.perf_counter() - start
    nll = -float(dist.log_prob(task.y_qry.long())[0].double().mean())
    return nll, _accuracy(dist.probs[0].double(), task.y_qry[0]), seconds


def _run_reference(
    prior: FixedClassifierPrior, task: Batch, nuts: NUTSConfig, seed: int
) -> tuple[NUTSClassPredictive, float]:
    """NUTS on one task's weights, and its seconds from sampling to query probabilities."""
    task64 = task.to(torch.float64)
    x_MD = task64.x_qry[0]
    starts_CP = prior.sample(  # over-dispersed starts: independent draws from the prior
        nuts.num_chains, 0, 0, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    ).meta["weights"]

    def log_joint(theta: Tensor) -> Tensor:  # NUTS passes one (P,) vector, the gate (N, P)
        if theta.ndim == 1:
            return prior.log_joint(theta[None], task64)[0]
        return prior.log_joint(theta, task64)

    start = time.perf_counter()
    reference = nuts_class_predictive(
        log_joint, lambda theta_NP: prior.predictive(theta_NP, x_MD), starts_CP, nuts, seed=seed
    )
    return reference, time.perf_counter() - start


def _score_task(state: _State, job: _Job) -> ClassTaskScores:
    config = state.config
    pfn_nll, pfn_accuracy, pfn_seconds = _score_pfn(state.model, job.task)
    reference, nuts_seconds = _run_reference(state.prior, job.task, config.nuts, job.seed)
    y_M, run = job.task.y_qry[0], reference.run
    reasons = [run.reason] if run.reason else []
    if not reference.max_point_r_hat < config.point_r_hat_max:
        reasons.append(f"a query point's R-hat {reference.max_point_r_hat:.4g} is not below "
                       f"{config.point_r_hat_max}")  # fmt: skip
    return ClassTaskScores(
        n_ctx=job.task.n_ctx, index=job.index, nuts_seed=job.seed, pfn_nll=pfn_nll,
        nuts_nll=reference.nll(y_M), pfn_accuracy=pfn_accuracy,
        nuts_accuracy=_accuracy(reference.probs_MC, y_M), pfn_seconds=pfn_seconds,
        nuts_seconds=nuts_seconds, trusted=not reasons, reason="; ".join(reasons),
        max_r_hat=run.max_r_hat, min_ess=run.min_ess, divergences=run.divergences,
        max_point_r_hat=reference.max_point_r_hat,
        chain_nll_spread=reference.chain_nll_spread(y_M),
    )  # fmt: skip


def _score_curve(state: _State, job: _Job) -> _CurveResult:
    """One chain of ``job.budget`` warmup steps and draws; its NLL and time, and the PFN's."""
    pfn_nll, _, pfn_seconds = _score_pfn(state.model, job.task)
    one_chain = dataclasses.replace(
        state.config.nuts, num_chains=1, warmup=job.budget, num_samples=job.budget,
        time_cap_seconds=None, min_ess=0.0,
    )  # fmt: skip
    reference, nuts_seconds = _run_reference(state.prior, job.task, one_chain, job.seed)
    return _CurveResult(
        job.budget, reference.nll(job.task.y_qry[0]), nuts_seconds, pfn_nll, pfn_seconds
    )


def _run_job(state: _State, job: _Job) -> ClassTaskScores | _CurveResult:
    return _score_task(state, job) if job.budget is None else _score_curve(state, job)


def _jobs(prior: FixedClassifierPrior, config: BNNNutsValidationConfig) -> list[_Job]:
    """Every scored task (sizes in order), then every curve budget; one seed per job."""
    generator = torch.Generator().manual_seed(config.seed)
    jobs: list[_Job] = []
    for n_ctx in config.n_ctx_sizes:
        batch = prior.sample(config.n_tasks, n_ctx, config.n_qry, generator=generator)
        for i in range(config.n_tasks):
            jobs.append(_Job(batch.task(i), config.seed + 1 + len(jobs), i))
    if config.curve_tasks:
        batch = prior.sample(
            config.curve_tasks, config.curve_n_ctx, config.n_qry, generator=generator
        )
        for i in range(config.curve_tasks):
            for budget in config.curve_budgets:
                jobs.append(_Job(batch.task(i), config.seed + 1 + len(jobs), i, budget))
    return jobs


def _curve(results: list[_CurveResult]) -> tuple[list[CurvePoint], float | None, float | None]:
    """Mean NUTS NLL and time per budget; the PFN's mean NLL and time on the same tasks."""
    if not results:
        return [], None, None
    points = []
    for budget in sorted({r.budget for r in results}):
        rows = [r for r in results if r.budget == budget]
        points.append(CurvePoint(
            budget=budget, nuts_nll=mean_or_none([r.nuts_nll for r in rows]),
            nuts_seconds=mean_or_none([r.nuts_seconds for r in rows]),
        ))  # fmt: skip
    first = [r for r in results if r.budget == points[0].budget]  # one PFN score per task
    return (points, mean_or_none([r.pfn_nll for r in first]),
            mean_or_none([r.pfn_seconds for r in first]))  # fmt: skip


def validate_classifier_against_nuts(
    model: nn.Module,
    prior: FixedClassifierPrior,
    *,
    config: BNNNutsValidationConfig | None = None,
    checkpoint: str = "",
    tolerances: Mapping[str, float] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> BNNNutsReport:
    """Score the PFN classifier and NUTS on the same fresh prior tasks.

    Args:
        model: the classification PFN, called as ``model(x_ctx, y_ctx, x_qry)``.
        prior: the prior the PFN was trained on (fixed architecture), picklable when
            ``workers > 1``.
        config: sizes, task count, NUTS budget and curve (`DEFAULT_BNN_NUTS` unless given).
        checkpoint: name for the report.
        tolerances: the card's ``nll_gap_mean`` (PFN - NUTS, nats per query point).
        workers: processes running NUTS in parallel, one thread each. Tasks and seeds do
            not depend on it, so neither do the scores; only times do.
        progress: show a rich progress bar.

    Raises:
        ValueError: ``workers`` is not positive.
    """
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    config = config or BNNNutsValidationConfig()
    jobs = _jobs(prior, config)
    results = map_in_workers(
        _run_job, jobs, workers=workers, init_state=_State(model.eval(), prior, config),
        progress=progress, description="PFN vs NUTS",
    )  # fmt: skip
    tasks = [r for r in results if isinstance(r, ClassTaskScores)]
    cells = [ClassCellResult.from_tasks([t for t in tasks if t.n_ctx == n])
             for n in config.n_ctx_sizes]  # fmt: skip
    curve, curve_pfn_nll, curve_pfn_seconds = _curve(
        [r for r in results if isinstance(r, _CurveResult)]
    )
    return BNNNutsReport(
        checkpoint=checkpoint, config=config, cells=cells, tasks=tasks, curve=curve,
        curve_pfn_nll=curve_pfn_nll, curve_pfn_seconds=curve_pfn_seconds,
        tolerances=dict(tolerances or {}),
    )  # fmt: skip


def _config(options: ValidationOptions) -> BNNNutsValidationConfig:
    """The run's settings from `options` (their None fields already filled by defaults)."""
    return BNNNutsValidationConfig(
        n_ctx_sizes=options.sizes, n_tasks=options.tasks, n_qry=options.n_qry,
        seed=options.seed, curve_tasks=options.curve_tasks,
        nuts=dataclasses.replace(
            DEFAULT_BNN_NUTS, warmup=options.nuts_warmup, num_samples=options.nuts_samples
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class BNNNutsValidator:
    """A fixed-architecture BNN classifier's PFN against NUTS on the weight posterior."""

    name: str = "bnn-nuts"
    defaults: ValidationOptions = ValidationOptions(
        tasks=16,  # x 5 sizes: 80 fresh tasks
        sizes=(1, 5, 20, 50, 100),
        nuts_warmup=DEFAULT_BNN_NUTS.warmup,
        nuts_samples=DEFAULT_BNN_NUTS.num_samples,
    )

    def run(self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions) -> BNNNutsReport:
        """Score `checkpoint` and NUTS on fresh tasks of `prior` (see the module docstring).

        Raises:
            ValueError: `prior` is not a fixed-architecture classification prior.
        """
        if not getattr(prior, "is_fixed_classifier", False):
            raise ValueError(
                f"bnn-nuts needs a classifier trained on a fixed-architecture prior with a "
                f"log-joint (e.g. a BNN prior with mode='fixed' and output='classification'); "
                f"{checkpoint.name!r} has prior {checkpoint.card.get('prior_name')!r} that is "
                "not one (there is no exact posterior to compare with otherwise)"
            )
        options = options.with_defaults(self.defaults)
        return validate_classifier_against_nuts(
            checkpoint.model, prior, config=_config(options), checkpoint=checkpoint.name,
            tolerances=checkpoint.card.get("tolerances", {}), workers=options.workers,
            progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return bnn_nuts_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """NLL by context size, and the NLL-vs-time curve when the report has one."""
        return [plot_bnn_nuts(report.to_dict(), Path(out_dir) / "nll_vs_nuts.png")]


register_validator(BNNNutsValidator())
