"""Validate a PFN classifier trained on a BNN prior against NUTS on the exact weight posterior.

On each fresh prior task (context size n_ctx, query points with their sampled labels) this
module scores, per query point:

* the PFN: one forward pass of the checkpoint's network, timed from context to all
  query predictions;
* the NUTS reference: pyro NUTS on the network's weights under the prior's log-joint
  (`pfnkit.reference.mcmc.run_nuts`), whose Monte Carlo posterior predictive
  (1/K) Σ_k p(y | x, θ_k) is the Bayes-optimal answer the PFN approximates, timed from the
  start of sampling to all query predictions.

Both get the negative log predictive density of the query labels (NLL, nats) and the
accuracy of their most probable class. The gap PFN - NUTS uses trusted runs only.

**The R-hat gate is on function-level summaries, not weights.** A network's hidden units
can be permuted, and a tanh unit's signs flipped, without changing the function, so two
chains in equivalent modes disagree on every weight while agreeing on every prediction.
The gate (`run_nuts`'s ``gate_fn``) therefore asks R-hat < ``r_hat_max`` and ESS ≥
``min_ess`` of the log-joint (Stan's ``lp__``) and of each class's predicted probability
averaged over the query points; none of them looks at a query label. Two more diagnostics
are reported but not gated: the worst per-query-point R-hat (at a few hundred draws per
chain, the maximum over 100 points of R-hat's own sampling noise exceeds 0.01) and the
spread of the NLL between chains, a direct estimate of the reference's Monte Carlo error.

**NLL against wall-clock time.** As in Müller et al. (arXiv 2112.10510, Fig. 6), NUTS is
also run with growing budgets (one chain, b warmup steps and b draws) on a few tasks, and
its NLL is plotted against its time with the PFN as one point.

`pfnkit` does not import `priors`: the prior arrives as an object with the methods of
`ParametricClassPrior` (the BNN prior in fixed-architecture mode has them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from pyro.ops.stats import split_gelman_rubin
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution

from pfnkit.data import Batch
from pfnkit.metrics import mean_or_none, stderr_or_none
from pfnkit.reference.mcmc import NUTSConfig, NUTSResult, mc_predictive_log_prob, run_nuts

__all__ = [
    "DEFAULT_BNN_NUTS",
    "GATED_ON",
    "BNNNutsReport",
    "BNNNutsValidationConfig",
    "ClassCellResult",
    "ClassTaskScores",
    "CurvePoint",
    "ParametricClassPrior",
    "validate_classifier_against_nuts",
]

logger = logging.getLogger(__name__)

# 2 chains x (200 warmup + 300 kept draws), trees of at most 2**6 - 1 leapfrog steps: on one
# core of this CPU, 10-40 s per task for the 33-parameter tanh net of `bnn-clf`.
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


GATED_ON = "log-joint and mean class probabilities over the query points"


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
    """What to run: context sizes, tasks, the NUTS budget and the NLL-vs-time curve.

    Attributes:
        n_ctx_sizes: context sizes; each gets ``n_tasks`` fresh tasks.
        n_tasks: fresh tasks per context size.
        n_qry: query points per task.
        seed: seed of the tasks; NUTS seeds derive from it.
        nuts: budget and gates of the reference runs.
        curve_n_ctx: context size of the NLL-vs-time tasks.
        curve_tasks: tasks on the NLL-vs-time curve (0 skips it).
        curve_budgets: per point, warmup steps = kept draws of one NUTS chain.
    """

    n_ctx_sizes: tuple[int, ...] = (1, 5, 20, 50, 100)
    n_tasks: int = 16
    n_qry: int = 100
    seed: int = 4242
    nuts: NUTSConfig = DEFAULT_BNN_NUTS
    curve_n_ctx: int = 20
    curve_tasks: int = 8
    curve_budgets: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256, 512)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ctx_sizes", tuple(int(n) for n in self.n_ctx_sizes))
        object.__setattr__(self, "curve_budgets", tuple(int(b) for b in self.curve_budgets))
        if isinstance(self.nuts, Mapping):
            object.__setattr__(self, "nuts", NUTSConfig.from_dict(dict(self.nuts)))
        if not self.n_ctx_sizes or min(self.n_ctx_sizes) < 1:
            raise ValueError(f"n_ctx_sizes must be positive sizes, got {self.n_ctx_sizes}")
        if self.n_tasks < 1 or self.n_qry < 1 or self.curve_tasks < 0:
            raise ValueError(
                "n_tasks and n_qry must be positive and curve_tasks non-negative, got "
                f"{self.n_tasks}, {self.n_qry} and {self.curve_tasks}"
            )
        if self.curve_tasks and (self.curve_n_ctx < 1 or min(self.curve_budgets, default=0) < 4):
            raise ValueError(
                "the NLL-vs-time curve needs curve_n_ctx >= 1 and budgets of at least 4 "
                f"draws, got {self.curve_n_ctx} and {self.curve_budgets}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "nuts": self.nuts.to_dict()}


@dataclass(frozen=True, kw_only=True)
class ClassTaskScores:
    """One task's scores; NLL and accuracy are means over its query points."""

    n_ctx: int
    index: int
    pfn_nll: float
    nuts_nll: float
    pfn_accuracy: float
    nuts_accuracy: float
    pfn_seconds: float
    nuts_seconds: float
    trusted: bool
    reason: str
    max_r_hat: float
    min_ess: float
    divergences: int
    max_point_r_hat: float  # worst R-hat of a query point's class probability (not gated)
    chain_nll_spread: float  # max - min of the NLL computed from each chain alone


@dataclass(frozen=True, kw_only=True)
class ClassCellResult:
    """Averages over the tasks of one context size (gap over trusted tasks; None if none)."""

    n_ctx: int
    n_tasks: int
    trusted_fraction: float
    pfn_nll: float
    nuts_nll: float
    gap: float | None
    gap_stderr: float | None
    pfn_accuracy: float
    nuts_accuracy: float
    pfn_seconds: float
    nuts_seconds: float
    chain_nll_spread: float

    @property
    def speed_ratio(self) -> float:
        """How many times faster the PFN is than NUTS, per task."""
        return self.nuts_seconds / self.pfn_seconds

    @classmethod
    def from_tasks(cls, tasks: list[ClassTaskScores]) -> ClassCellResult:
        gaps = [t.pfn_nll - t.nuts_nll for t in tasks if t.trusted]

        def mean(field: str) -> float:
            return mean_or_none([getattr(t, field) for t in tasks])

        return cls(
            n_ctx=tasks[0].n_ctx, n_tasks=len(tasks),
            trusted_fraction=mean("trusted"), pfn_nll=mean("pfn_nll"), nuts_nll=mean("nuts_nll"),
            gap=mean_or_none(gaps), gap_stderr=stderr_or_none(gaps),
            pfn_accuracy=mean("pfn_accuracy"), nuts_accuracy=mean("nuts_accuracy"),
            pfn_seconds=mean("pfn_seconds"), nuts_seconds=mean("nuts_seconds"),
            chain_nll_spread=mean("chain_nll_spread"),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "speed_ratio": self.speed_ratio}


@dataclass(frozen=True, kw_only=True)
class CurvePoint:
    """One budget of the NLL-vs-time curve, averaged over the curve's tasks."""

    budget: int  # warmup steps = kept draws of the single chain
    nuts_nll: float
    nuts_seconds: float


@dataclass(frozen=True, kw_only=True)
class BNNNutsReport:
    """Every cell and task, the NLL-vs-time curve, the configuration and the tolerances."""

    checkpoint: str
    config: BNNNutsValidationConfig
    cells: list[ClassCellResult]
    tasks: list[ClassTaskScores]
    curve: list[CurvePoint]
    curve_pfn_nll: float | None
    curve_pfn_seconds: float | None
    tolerances: dict[str, float]

    @property
    def trusted_fraction(self) -> float:
        return sum(t.trusted for t in self.tasks) / len(self.tasks)

    @property
    def mean_gap(self) -> float | None:
        """Mean over context sizes of the PFN - NUTS NLL (trusted tasks)."""
        return mean_or_none([c.gap for c in self.cells if c.gap is not None])

    @property
    def speed_ratio(self) -> float:
        """Mean NUTS time per task over mean PFN time per task."""
        return mean_or_none([t.nuts_seconds for t in self.tasks]) / mean_or_none(
            [t.pfn_seconds for t in self.tasks]
        )

    @property
    def passed(self) -> bool:
        """Within the card's ``nll_gap_mean``; a size without trusted NUTS runs fails."""
        tolerance = self.tolerances.get("nll_gap_mean", math.inf)
        if math.isinf(tolerance):
            return True
        return all(c.gap is not None for c in self.cells) and self.mean_gap <= tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "reference": "nuts",
            "config": self.config.to_dict(),
            "cells": [c.to_dict() for c in self.cells],
            "trusted_fraction": self.trusted_fraction,
            "mean_gap": self.mean_gap,
            "speed_ratio": self.speed_ratio,
            "curve": [dataclasses.asdict(p) for p in self.curve],
            "curve_pfn_nll": self.curve_pfn_nll,
            "curve_pfn_seconds": self.curve_pfn_seconds,
            "tolerances": self.tolerances,
            "passed": self.passed,
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def class_probabilities(dist: Distribution) -> Tensor:
    """Class probabilities (..., C) of a Bernoulli (C = 2) or Categorical predictive."""
    if isinstance(dist, Bernoulli):
        return torch.stack([1 - dist.probs, dist.probs], dim=-1)
    if isinstance(dist, Categorical):
        return dist.probs
    raise TypeError(f"expected a Bernoulli or Categorical predictive, got {type(dist).__name__}")


def _accuracy(probs_MC: Tensor, y_M: Tensor) -> float:
    return float((probs_MC.argmax(-1) == y_M.long()).to(torch.float64).mean())


def _score_pfn(model: nn.Module, task: Batch) -> tuple[float, float, float]:
    """NLL, accuracy and seconds of one forward pass (context in, all queries out)."""
    start = time.perf_counter()
    with torch.inference_mode():
        dist = model(task.x_ctx, task.y_ctx, task.x_qry)
    seconds = time.perf_counter() - start
    y_M = task.y_qry[0].long()
    nll = -float(dist.log_prob(task.y_qry.long())[0].double().mean())
    return nll, _accuracy(dist.probs[0].double(), y_M), seconds


class _NutsScores(NamedTuple):
    nll: float
    accuracy: float
    run: NUTSResult
    max_point_r_hat: float
    chain_nll_spread: float


def _nuts_predictive(
    prior: ParametricClassPrior, task: Batch, nuts: NUTSConfig, seed: int
) -> _NutsScores:
    """NUTS on one task's weights; NLL and accuracy of its MC predictive, and diagnostics."""
    x_ND, y_N = task.x_ctx[0].double(), task.y_ctx[0].double()
    x_MD, y_M = task.x_qry[0].double(), task.y_qry[0].double()
    starts = prior.sample(  # over-dispersed starts: independent draws from the prior
        nuts.num_chains, 0, 0, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    ).meta["weights"]

    def summaries(theta_NP: Tensor) -> Tensor:  # log-joint, mean class probabilities (N, 1 + C)
        mean_probs_NC = class_probabilities(prior.predictive(theta_NP, x_MD)).mean(1)
        return torch.cat([prior.log_joint(theta_NP, x_ND, y_N)[:, None], mean_probs_NC], dim=1)

    run = run_nuts(
        lambda theta_P: prior.log_joint(theta_P, x_ND, y_N), starts, nuts, seed=seed,
        gate_fn=summaries,
        gate_description=GATED_ON,
    )  # fmt: skip

    def nll(draws_KP: Tensor) -> float:
        return -float(
            mc_predictive_log_prob(draws_KP, lambda th: prior.predictive(th, x_MD), y_M).mean()
        )

    chain_nlls = [nll(draws_SP) for draws_SP in run.samples]
    probs_CSMK = class_probabilities(prior.predictive(run.flat_samples(), x_MD)).reshape(
        *run.samples.shape[:2], *x_MD.shape[:1], -1
    )
    point_r_hat = split_gelman_rubin(probs_CSMK.flatten(2), chain_dim=0, sample_dim=1)
    return _NutsScores(
        nll=nll(run.flat_samples()), accuracy=_accuracy(probs_CSMK.mean((0, 1)), y_M), run=run,
        max_point_r_hat=float(point_r_hat.max()),
        chain_nll_spread=max(chain_nlls) - min(chain_nlls),
    )  # fmt: skip


def _score_task(
    model: nn.Module, prior: ParametricClassPrior, task: Batch, nuts: NUTSConfig, index: int,
    seed: int,
) -> ClassTaskScores:  # fmt: skip
    pfn_nll, pfn_accuracy, pfn_seconds = _score_pfn(model, task)
    start = time.perf_counter()
    nuts = _nuts_predictive(prior, task, nuts, seed)
    run = nuts.run
    return ClassTaskScores(
        n_ctx=task.n_ctx, index=index, pfn_nll=pfn_nll, nuts_nll=nuts.nll,
        pfn_accuracy=pfn_accuracy, nuts_accuracy=nuts.accuracy, pfn_seconds=pfn_seconds,
        nuts_seconds=time.perf_counter() - start, trusted=run.trusted, reason=run.reason,
        max_r_hat=run.max_r_hat, min_ess=run.min_ess, divergences=run.divergences,
        max_point_r_hat=nuts.max_point_r_hat, chain_nll_spread=nuts.chain_nll_spread,
    )  # fmt: skip


def _curve_job(
    model: nn.Module, prior: ParametricClassPrior, task: Batch, nuts: NUTSConfig, budget: int,
    seed: int,
) -> tuple[int, float, float, float, float]:  # fmt: skip
    """(budget, NUTS NLL, NUTS seconds, PFN NLL, PFN seconds) of one curve task."""
    pfn_nll, _, pfn_seconds = _score_pfn(model, task)
    one_chain = dataclasses.replace(
        nuts, num_chains=1, warmup=budget, num_samples=budget, time_cap_seconds=None, min_ess=0.0
    )
    start = time.perf_counter()
    nuts_nll = _nuts_predictive(prior, task, one_chain, seed).nll
    return budget, nuts_nll, time.perf_counter() - start, pfn_nll, pfn_seconds


def _run_job(model: nn.Module, prior: ParametricClassPrior, job: tuple) -> Any:
    kind, *args = job
    return (_score_task if kind == "task" else _curve_job)(model, prior, *args)


_worker_state: tuple[nn.Module, ParametricClassPrior] | None = None


def _init_worker(model: nn.Module, prior: ParametricClassPrior) -> None:
    global _worker_state
    _worker_state = (model, prior)
    torch.set_num_threads(1)


def _run_in_worker(job: tuple) -> Any:
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


def _jobs(prior: ParametricClassPrior, config: BNNNutsValidationConfig) -> list[tuple]:
    """Every task job (sizes in order) and then every curve job, with fixed seeds."""
    generator = torch.Generator().manual_seed(config.seed)
    jobs: list[tuple] = []
    for n_ctx in config.n_ctx_sizes:
        batch = prior.sample(config.n_tasks, n_ctx, config.n_qry, generator=generator)
        jobs += [("task", batch.task(i), config.nuts, i, config.seed + 1 + len(jobs))
                 for i in range(config.n_tasks)]  # fmt: skip
    if config.curve_tasks:
        batch = prior.sample(
            config.curve_tasks, config.curve_n_ctx, config.n_qry, generator=generator
        )
        jobs += [("curve", batch.task(i), config.nuts, budget, config.seed + 1 + len(jobs) + i)
                 for i in range(config.curve_tasks) for budget in config.curve_budgets]  # fmt: skip
    return jobs


def _curve(results: list[tuple]) -> tuple[list[CurvePoint], float | None, float | None]:
    if not results:
        return [], None, None
    points = []
    for budget in sorted({r[0] for r in results}):
        rows = [r for r in results if r[0] == budget]
        points.append(CurvePoint(
            budget=budget, nuts_nll=mean_or_none([r[1] for r in rows]),
            nuts_seconds=mean_or_none([r[2] for r in rows]),
        ))  # fmt: skip
    first = [r for r in results if r[0] == points[0].budget]  # one PFN score per task
    return points, mean_or_none([r[3] for r in first]), mean_or_none([r[4] for r in first])


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
        run: Callable[[list[tuple]], Iterable[Any]]
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(model, prior),
            ))  # fmt: skip
            run = partial(pool.map, _run_in_worker)
        else:
            stack.enter_context(_one_thread())
            run = partial(map, partial(_run_job, model, prior))
        results: Iterable[Any] = run(jobs)
        if progress:
            from rich.progress import track

            results = track(results, total=len(jobs), description="PFN vs NUTS")
        results = list(results)
    tasks = [r for r in results if isinstance(r, ClassTaskScores)]
    cells = [ClassCellResult.from_tasks([t for t in tasks if t.n_ctx == n])
             for n in config.n_ctx_sizes]  # fmt: skip
    curve, curve_pfn_nll, curve_pfn_seconds = _curve(
        [r for r in results if not isinstance(r, ClassTaskScores)]
    )
    return BNNNutsReport(
        checkpoint=checkpoint, config=config, cells=cells, tasks=tasks, curve=curve,
        curve_pfn_nll=curve_pfn_nll, curve_pfn_seconds=curve_pfn_seconds,
        tolerances=dict(tolerances or {}),
    )  # fmt: skip
