"""Validate a PFN classifier trained on a BNN prior against NUTS on the exact weight posterior.

On each fresh prior task (context size n_ctx, query points with their sampled labels) this
module scores, per query point:

* the PFN: one forward pass of the checkpoint's network, timed from context to all
  query predictions (after one untimed warm-up pass per process);
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
`ParametricClassPrior` (the BNN prior in fixed-architecture mode has them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pfnkit.data import Batch
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.reference.nuts_classifier import nuts_class_predictive
from pfnkit.validation.bnn_nuts_report import (
    BNNNutsReport,
    ClassCellResult,
    ClassTaskScores,
    CurvePoint,
)

__all__ = [
    "DEFAULT_BNN_NUTS",
    "BNNNutsValidationConfig",
    "ParametricClassPrior",
    "validate_classifier_against_nuts",
]

# 2 chains x (200 warmup + 300 kept draws), trees of at most 2**6 - 1 leapfrog steps.
# Measured on one core of this CPU for the 33-parameter tanh net of `bnn-clf`: 28 s per
# task at 5 context points, 62 s at 50 (another job on the second core).
DEFAULT_BNN_NUTS = NUTSConfig(
    num_chains=2,
    warmup=200,
    num_samples=300,
    max_tree_depth=6,
    target_accept_prob=0.8,
    dense_mass=False,
    time_cap_seconds=300.0,
    r_hat_max=1.01,
    min_ess=100.0,
)


class ParametricClassPrior(Protocol):
    """A classification prior with a finite weight vector θ and a log-joint for NUTS."""

    n_parameters: int

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:  # fmt: skip
        """Fresh tasks; ``meta["weights"]`` (B, P) holds each task's true θ."""
        ...

    def log_joint(self, params_SP: Tensor, x_ND: Tensor, y_N: Tensor) -> Tensor:
        """log p(θ) + log p(y | x, θ) for one task, shape (S,) (0-d for a (P,) input)."""
        ...

    def predictive(self, params_SP: Tensor, x_MD: Tensor) -> Distribution:
        """p(y | x, θ): Bernoulli or Categorical with batch shape (S, M)."""
        ...


@dataclass(frozen=True, kw_only=True)
class BNNNutsValidationConfig:
    """What to run: context sizes, tasks, the NUTS budget and gates, and the curve.

    Attributes:
        n_ctx_sizes: distinct context sizes; each gets ``n_tasks`` fresh tasks.
        n_tasks: fresh tasks per context size.
        n_qry: query points per task.
        seed: seed of the tasks; NUTS seeds derive from it, one per task.
        nuts: budget and function-level gates of the reference runs.
        point_r_hat_max: every query point's R-hat must lie below this for a trusted
            run (looser than ``nuts.r_hat_max``: it is a maximum over many points).
        min_trusted_fraction: a size with fewer trusted runs fails the report.
        curve_n_ctx: context size of the NLL-vs-time tasks.
        curve_tasks: tasks on the NLL-vs-time curve (0 skips it).
        curve_budgets: per point, warmup steps = kept draws of one NUTS chain.
    """

    n_ctx_sizes: tuple[int, ...] = (1, 5, 20, 50, 100)
    n_tasks: int = 16
    n_qry: int = 100
    seed: int = 4242
    nuts: NUTSConfig = DEFAULT_BNN_NUTS
    point_r_hat_max: float = 1.05
    min_trusted_fraction: float = 0.5
    curve_n_ctx: int = 20
    curve_tasks: int = 4
    curve_budgets: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ctx_sizes", tuple(int(n) for n in self.n_ctx_sizes))
        object.__setattr__(self, "curve_budgets", tuple(int(b) for b in self.curve_budgets))
        if isinstance(self.nuts, Mapping):
            object.__setattr__(self, "nuts", NUTSConfig.from_dict(dict(self.nuts)))
        sizes = self.n_ctx_sizes
        if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
            raise ValueError(f"n_ctx_sizes must be distinct positive sizes, got {sizes}")
        if self.n_tasks < 1 or self.n_qry < 1 or self.curve_tasks < 0:
            raise ValueError(
                "n_tasks and n_qry must be positive and curve_tasks non-negative, got "
                f"{self.n_tasks}, {self.n_qry} and {self.curve_tasks}"
            )
        if not self.point_r_hat_max > 1.0 or not 0.0 <= self.min_trusted_fraction <= 1.0:
            raise ValueError(
                "point_r_hat_max must exceed 1 and min_trusted_fraction lie in [0, 1], got "
                f"{self.point_r_hat_max} and {self.min_trusted_fraction}"
            )
        if self.curve_tasks and (self.curve_n_ctx < 1 or min(self.curve_budgets, default=0) < 4):
            raise ValueError(
                "the NLL-vs-time curve needs curve_n_ctx >= 1 and budgets of at least 4 "
                f"draws, got {self.curve_n_ctx} and {self.curve_budgets}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "nuts": self.nuts.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BNNNutsValidationConfig:
        return cls(**data)


class _Job(NamedTuple):
    """One unit of work: a scored task, or one budget of the NLL-vs-time curve."""

    task: Batch
    seed: int
    index: int
    budget: int | None = None  # None: a scored task with the full NUTS budget


class _CurveResult(NamedTuple):
    budget: int
    nuts_nll: float
    nuts_seconds: float
    pfn_nll: float
    pfn_seconds: float


def _accuracy(probs_MC: Tensor, y_M: Tensor) -> float:
    return float((probs_MC.argmax(-1) == y_M.long()).to(torch.float64).mean())


_warmed_up: set[int] = set()  # ids of models that ran their untimed first pass here


def _score_pfn(model: nn.Module, task: Batch) -> tuple[float, float, float]:
    """NLL, accuracy and seconds of one forward pass (context in, all queries out)."""
    with torch.inference_mode():
        if id(model) not in _warmed_up:  # the first pass pays one-off allocation costs
            model(task.x_ctx, task.y_ctx, task.x_qry)
            _warmed_up.add(id(model))
        start = time.perf_counter()
        dist = model(task.x_ctx, task.y_ctx, task.x_qry)
        seconds = time.perf_counter() - start
    nll = -float(dist.log_prob(task.y_qry.long())[0].double().mean())
    return nll, _accuracy(dist.probs[0].double(), task.y_qry[0]), seconds


def _run_reference(
    prior: ParametricClassPrior, task: Batch, nuts: NUTSConfig, seed: int
) -> tuple[Any, float]:
    """NUTS on one task's weights, and its seconds from sampling to query probabilities."""
    x_ND, y_N, x_MD = task.x_ctx[0].double(), task.y_ctx[0].double(), task.x_qry[0].double()
    starts_CP = prior.sample(  # over-dispersed starts: independent draws from the prior
        nuts.num_chains, 0, 0, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    ).meta["weights"]
    start = time.perf_counter()
    reference = nuts_class_predictive(
        lambda theta: prior.log_joint(theta, x_ND, y_N),
        lambda theta_NP: prior.predictive(theta_NP, x_MD), starts_CP, nuts, seed=seed,
    )  # fmt: skip
    return reference, time.perf_counter() - start


def _score_task(
    model: nn.Module, prior: ParametricClassPrior, job: _Job, config: BNNNutsValidationConfig
) -> ClassTaskScores:
    pfn_nll, pfn_accuracy, pfn_seconds = _score_pfn(model, job.task)
    reference, nuts_seconds = _run_reference(prior, job.task, config.nuts, job.seed)
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


def _score_curve(
    model: nn.Module, prior: ParametricClassPrior, job: _Job, config: BNNNutsValidationConfig
) -> _CurveResult:
    """One chain of ``job.budget`` warmup steps and draws; its NLL and time, and the PFN's."""
    pfn_nll, _, pfn_seconds = _score_pfn(model, job.task)
    one_chain = dataclasses.replace(
        config.nuts, num_chains=1, warmup=job.budget, num_samples=job.budget,
        time_cap_seconds=None, min_ess=0.0,
    )  # fmt: skip
    reference, nuts_seconds = _run_reference(prior, job.task, one_chain, job.seed)
    return _CurveResult(
        job.budget, reference.nll(job.task.y_qry[0]), nuts_seconds, pfn_nll, pfn_seconds
    )


def _run_job(
    model: nn.Module, prior: ParametricClassPrior, config: BNNNutsValidationConfig, job: _Job
) -> ClassTaskScores | _CurveResult:
    score = _score_task if job.budget is None else _score_curve
    return score(model, prior, job, config)


_worker_state: tuple[nn.Module, ParametricClassPrior, BNNNutsValidationConfig] | None = None


def _init_worker(
    model: nn.Module, prior: ParametricClassPrior, config: BNNNutsValidationConfig
) -> None:
    global _worker_state
    _worker_state = (model, prior, config)
    torch.set_num_threads(1)


def _run_in_worker(job: _Job) -> ClassTaskScores | _CurveResult:
    return _run_job(*_worker_state, job)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """NUTS on a small network is latency-bound: torch's thread pool only adds overhead
    (measured here: 1.2 ms per log-joint gradient on one thread, 24 ms on two while the
    other core was busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _jobs(prior: ParametricClassPrior, config: BNNNutsValidationConfig) -> list[_Job]:
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
            budget=budget, nuts_nll=sum(r.nuts_nll for r in rows) / len(rows),
            nuts_seconds=sum(r.nuts_seconds for r in rows) / len(rows),
        ))  # fmt: skip
    first = [r for r in results if r.budget == points[0].budget]  # one PFN score per task
    return (points, sum(r.pfn_nll for r in first) / len(first),
            sum(r.pfn_seconds for r in first) / len(first))  # fmt: skip


def validate_classifier_against_nuts(
    model: nn.Module,
    prior: ParametricClassPrior,
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
    """
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    config = config or BNNNutsValidationConfig()
    model = model.eval()
    jobs = _jobs(prior, config)
    with contextlib.ExitStack() as stack:
        run: Callable[[list[_Job]], Iterable[ClassTaskScores | _CurveResult]]
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(model, prior, config),
            ))  # fmt: skip
            run = partial(pool.map, _run_in_worker)
        else:
            stack.enter_context(_one_thread())
            run = partial(map, partial(_run_job, model, prior, config))
        results: Iterable[ClassTaskScores | _CurveResult] = run(jobs)
        if progress:
            from rich.progress import track

            results = track(results, total=len(jobs), description="PFN vs NUTS")
        results = list(results)
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
