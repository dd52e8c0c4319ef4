"""Validate a single-curve PFN against NUTS over the parametric learning-curve posterior.

A task of a parametric curve prior (`priors.learning_curves_parametric`; LC-PFN, Adriaensen
et al., arXiv 2310.20447) is one training run observed for its first epochs; the queries
are later epochs. For each task, NUTS over θ (`pfnkit.reference.lc_posterior`, the prior's
own log-joint as target, the R-hat/ESS gate on the curve at the query epochs and log σ)
gives the reference posterior predictive, a mixture over draws of N(curve(t | θ), σ²).
Per number of observed epochs the report gives the NLL per query epoch of the PFN and of
that reference on the tasks whose NUTS run is trusted (and on all tasks), the 90%
central-interval coverage of both, and the time per task of each: the PFN's fit + predict
against the whole NUTS run. Registered as "lc-nuts"; it gates ``nll_gap_mean`` (mean over
the sizes with a trusted NUTS run of PFN − NUTS NLL on those runs' tasks),
``coverage90_error_max`` (worst per-size |PFN coverage − 0.90|), ``speedup_min`` (NUTS
seconds per task over the PFN's) and ``trusted_fraction_min`` (the share of NUTS runs that
passed their gate; the last two are lower bounds), each only when the card names it. A
long context pins the curve but not how the families share it, so NUTS mixes slowly along
that ridge and some runs stay untrusted: the report counts them per size.

The scoring and the report are shared with `pfnkit.validation.lc_smc` (tempered SMC as the
reference): a reference is a picklable callable (`NutsReference`, `SmcReference` there)
that maps (prior, task, seed) to a `ReferenceFit`; the figures name it ``ref_*``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table
from torch import nn

from pfnkit.data import Batch
from pfnkit.metrics import interval_coverage, mean_or_none, nll, stderr_or_none
from pfnkit.reference.gp_nuts import GaussianMixturePredictive
from pfnkit.reference.lc_posterior import (
    DEFAULT_LC_NUTS,
    CurvePosteriorPrior,
    curve_posterior,
    require_curve_prior,
)
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.report import Check, Report
from pfnkit.validation.plots import plot_nll_by_size
from pfnkit.validation.pool import map_in_workers
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import checks_table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "LcNutsReport",
    "LcNutsSize",
    "LcNutsTask",
    "LcNutsValidator",
    "NutsReference",
    "ReferenceFit",
    "lc_nuts_tables",
    "score_curve_task",
    "validate_lc_nuts",
]

LEVEL = 0.9  # central-interval mass of the reported and gated coverage


@dataclass(frozen=True)
class ReferenceFit:
    """A reference's posterior predictive at a task's query inputs, its verdict, diagnostics."""

    predictive: GaussianMixturePredictive
    trusted: bool
    diagnostics: dict[str, float]


@dataclass(frozen=True)
class NutsReference:
    """NUTS over θ (`curve_posterior`) as an lc validator's reference."""

    config: NUTSConfig = DEFAULT_LC_NUTS
    label = "nuts over the parametric curve posterior"
    short = "NUTS"

    def __call__(self, prior: CurvePosteriorPrior, task: Batch, seed: int) -> ReferenceFit:
        posterior = curve_posterior(prior, task, nuts=self.config, seed=seed)
        diagnostics = {"max_r_hat": posterior.run.max_r_hat, "min_ess": posterior.run.min_ess}
        return ReferenceFit(posterior.predictive(task.x_qry[0]), posterior.trusted, diagnostics)


Reference = Callable[[CurvePosteriorPrior, Batch, int], ReferenceFit]


@dataclass(frozen=True)
class LcNutsTask:
    """One task's scores: NLL per query epoch, 90% coverage, seconds, the reference's verdict."""

    pfn_nll: float
    ref_nll: float
    pfn_coverage: float
    ref_coverage: float
    pfn_seconds: float
    ref_seconds: float
    trusted: bool
    diagnostics: dict[str, float]


@dataclass(frozen=True)
class LcNutsSize:
    """Figures at one number of observed epochs (NLLs and coverage over trusted tasks)."""

    n_ctx: int
    n_tasks: int
    n_trusted: int
    pfn_nll: float | None
    ref_nll: float | None
    pfn_nll_all: float
    ref_nll_all: float
    pfn_coverage: float | None
    ref_coverage: float | None
    pfn_seconds_per_task: float
    ref_seconds_per_task: float
    gap_stderr: float | None = None

    @property
    def gap(self) -> float | None:
        """PFN − reference NLL over the trusted tasks; None when none is trusted."""
        if self.pfn_nll is None or self.ref_nll is None:
            return None
        return self.pfn_nll - self.ref_nll

    @property
    def coverage_error(self) -> float | None:
        return None if self.pfn_coverage is None else abs(self.pfn_coverage - LEVEL)

    @classmethod
    def from_tasks(cls, n_ctx: int, tasks: Sequence[LcNutsTask]) -> LcNutsSize:
        trusted = [t for t in tasks if t.trusted]

        def mean(key: str, rows: Sequence[LcNutsTask]) -> float | None:
            return mean_or_none([getattr(row, key) for row in rows])

        return cls(
            n_ctx=n_ctx, n_tasks=len(tasks), n_trusted=len(trusted),
            pfn_nll=mean("pfn_nll", trusted), ref_nll=mean("ref_nll", trusted),
            pfn_nll_all=mean("pfn_nll", tasks), ref_nll_all=mean("ref_nll", tasks),
            pfn_coverage=mean("pfn_coverage", trusted),
            ref_coverage=mean("ref_coverage", trusted),
            pfn_seconds_per_task=mean("pfn_seconds", tasks),
            ref_seconds_per_task=mean("ref_seconds", tasks),
            gap_stderr=stderr_or_none([t.pfn_nll - t.ref_nll for t in trusted]),
        )  # fmt: skip


@dataclass(frozen=True)
class LcNutsReport(Report):
    """Per-size figures, the reference's budget and the card's tolerances (see the module)."""

    checkpoint: str
    budget: dict[str, Any]
    sizes: list[LcNutsSize]
    tolerances: dict[str, float]
    reference: str = NutsReference.label
    tasks: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def mean_gap(self) -> float | None:
        """Mean over the sizes with a trusted reference run of their gap; None when none has one."""
        return mean_or_none([s.gap for s in self.sizes if s.gap is not None])

    @property
    def mean_gap_stderr(self) -> float | None:
        """Standard error of `mean_gap` (sizes independent); None when a trusted size lacks one."""
        errors = [s.gap_stderr for s in self.sizes if s.gap is not None]
        if not errors or None in errors:
            return None
        return math.sqrt(sum(e * e for e in errors)) / len(errors)

    @property
    def coverage90_error_max(self) -> float | None:
        errors = [s.coverage_error for s in self.sizes]
        return None if None in errors or not errors else max(errors)

    @property
    def speedup(self) -> float | None:
        """Mean reference seconds per task over mean PFN seconds per task, all sizes together."""
        pfn = mean_or_none([s.pfn_seconds_per_task for s in self.sizes])
        mcmc = mean_or_none([s.ref_seconds_per_task for s in self.sizes])
        return None if not pfn or mcmc is None else mcmc / pfn

    @property
    def trusted_fraction(self) -> float | None:
        total = sum(s.n_tasks for s in self.sizes)
        return sum(s.n_trusted for s in self.sizes) / total if total else None

    def checks(self) -> list[Check]:
        tol = self.tolerances
        return [
            Check("nll_gap_mean", self.mean_gap, tol.get("nll_gap_mean")),
            Check(
                "coverage90_error_max", self.coverage90_error_max, tol.get("coverage90_error_max")
            ),
            Check("speedup_min", self.speedup, tol.get("speedup_min"), bound="lower"),
            Check(
                "trusted_fraction_min",
                self.trusted_fraction,
                tol.get("trusted_fraction_min"),
                bound="lower",
            ),  # fmt: skip
        ]

    def figures(self) -> dict[str, Any]:
        sizes = [
            {**dataclasses.asdict(s), "gap": s.gap, "coverage_error": s.coverage_error}
            for s in self.sizes
        ]
        return {
            "checkpoint": self.checkpoint,
            "reference": self.reference,
            "coverage_level": LEVEL,
            "budget": self.budget,
            "sizes": sizes,
            "tasks": self.tasks,
            "mean_gap": self.mean_gap,
            "mean_gap_stderr": self.mean_gap_stderr,
            "coverage90_error_max": self.coverage90_error_max,
            "speedup": self.speedup,
            "trusted_fraction": self.trusted_fraction,
        }


def score_curve_task(
    model: nn.Module, prior: CurvePosteriorPrior, task: Batch, reference: Reference, seed: int
) -> LcNutsTask:
    """The PFN and the reference's predictive on one task's query epochs, with their times.

    The PFN's time is that of its second pass on the task: a process's first pass pays
    one-off costs (allocator, thread pool) that raised the first size's mean time 10-15x
    above the other sizes'. Both passes give the same predictive.
    """
    with torch.inference_mode():
        model.predict_from_cache(model.encode_context(task.x_ctx, task.y_ctx), task.x_qry)
        start = time.perf_counter()
        dist = model.predict_from_cache(model.encode_context(task.x_ctx, task.y_ctx), task.x_qry)
        pfn_seconds = time.perf_counter() - start
    y_qry = task.y_qry
    start = time.perf_counter()
    fit = reference(prior, task, seed)
    ref_seconds = time.perf_counter() - start
    y64 = y_qry[0].double()
    return LcNutsTask(
        pfn_nll=float(nll(dist, y_qry)), ref_nll=float(nll(fit.predictive, y64)),
        pfn_coverage=interval_coverage(dist, y_qry, (LEVEL,))[LEVEL],
        ref_coverage=interval_coverage(fit.predictive, y64, (LEVEL,))[LEVEL],
        pfn_seconds=pfn_seconds, ref_seconds=ref_seconds, trusted=fit.trusted,
        diagnostics=fit.diagnostics,
    )  # fmt: skip


def _score_job(state: tuple[nn.Module, CurvePosteriorPrior, Reference], job: tuple) -> LcNutsTask:
    """One (task, seed) job of `map_in_workers`."""
    model, prior, reference = state
    task, seed = job
    return score_curve_task(model, prior, task, reference, seed)


def validate_lc_nuts(
    model: nn.Module,
    prior: CurvePosteriorPrior,
    *,
    checkpoint: str = "model",
    n_ctx_sizes: Sequence[int] = (2, 5, 10, 20, 40),
    n_tasks: int = 2,
    n_qry: int = 100,
    nuts: NUTSConfig = DEFAULT_LC_NUTS,
    seed: int = 12345,
    tolerances: Mapping[str, float] | None = None,
    workers: int = 1,
    progress: bool = False,
    reference: Reference | None = None,
) -> LcNutsReport:
    """Score `model` and a reference on `n_tasks` fresh prior tasks per number of observed epochs.

    The reference is `reference` (it needs ``label``, ``short`` and ``config`` attributes,
    as `NutsReference` has), else NUTS with `nuts`. Tasks come from `prior` with a
    generator seeded by `seed`; task i of a size runs the reference with seed ``seed + i``.
    Each task is scored on its own, so times are per task; with ``workers > 1`` tasks run
    in that many processes (`map_in_workers`), same results.
    """
    reference = reference or NutsReference(nuts)
    generator = torch.Generator().manual_seed(seed)
    jobs = []
    for n_ctx in n_ctx_sizes:
        batch = prior.sample(n_tasks, n_ctx, n_qry, generator=generator)
        jobs += [(batch.task(i), seed + i) for i in range(n_tasks)]
    state = (model.eval(), prior, reference)
    scores = map_in_workers(
        _score_job, jobs, workers=workers, init_state=state, progress=progress,
        description=f"PFN and {reference.short} per task",
    )  # fmt: skip
    sizes = [
        LcNutsSize.from_tasks(n_ctx, scores[j * n_tasks : (j + 1) * n_tasks])
        for j, n_ctx in enumerate(n_ctx_sizes)
    ]
    n_ctx_of_job = [n_ctx for n_ctx in n_ctx_sizes for _ in range(n_tasks)]
    tasks = [{"n_ctx": n_ctx, **dataclasses.asdict(score)}
             for n_ctx, score in zip(n_ctx_of_job, scores, strict=True)]  # fmt: skip
    return LcNutsReport(checkpoint, reference.config.to_dict(), sizes, dict(tolerances or {}),
                        reference=reference.label, tasks=tasks)  # fmt: skip


def _show(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def lc_nuts_tables(report: Mapping[str, Any], short: str = "NUTS") -> list[Table]:
    """Per number of observed epochs: NLLs, gap, coverage, times and trusted runs; the checks.

    `short` names the reference in the headers (the report's ``reference`` is its title).
    """
    table = Table(
        title=f"{report['checkpoint']} vs {report['reference']} (NLL in nats per query epoch, "
        f"over tasks with a trusted {short} run)",
        caption=f"mean gap {_show(report['mean_gap'], '+.4f')}"
        f" ± {_show(report.get('mean_gap_stderr'), '.4f')} (standard error over tasks), speed-up "
        f"{_show(report['speedup'], '.0f')}x, trusted {_show(report['trusted_fraction'], '.0%')}",
        caption_justify="left",
    )
    for name in ("observed epochs", "trusted / tasks", "PFN NLL", f"{short} NLL", "gap", "± s.e.",
                 f"cov90 PFN / {short}", "PFN ms/task", f"{short} s/task"):  # fmt: skip
        table.add_column(name, justify="right")
    for s in report["sizes"]:
        coverage = f"{_show(s['pfn_coverage'], '.1%')} / {_show(s['ref_coverage'], '.1%')}"
        table.add_row(
            str(s["n_ctx"]), f"{s['n_trusted']} / {s['n_tasks']}", _show(s["pfn_nll"], ".4f"),
            _show(s["ref_nll"], ".4f"), _show(s["gap"], "+.4f"), _show(s.get("gap_stderr"), ".4f"),
            coverage,
            f"{1e3 * s['pfn_seconds_per_task']:.2f}", f"{s['ref_seconds_per_task']:.1f}",
        )  # fmt: skip
    return [table, checks_table(report)]


class LcNutsValidator:
    """A single-curve PFN against NUTS over its parametric prior's posterior.

    Subclasses swap the reference (`reference`, `short`; `pfnkit.validation.lc_smc`).
    """

    name = "lc-nuts"
    short = "NUTS"
    defaults = ValidationOptions(
        tasks=2, sizes=(2, 5, 10, 20, 40), nuts_warmup=DEFAULT_LC_NUTS.warmup,
        nuts_samples=DEFAULT_LC_NUTS.num_samples,
    )  # fmt: skip

    def run(self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions) -> LcNutsReport:
        """NLL gap, coverage and speed-up against the reference on fresh tasks of `prior`.

        Raises:
            ValueError: `prior` is not a parametric curve prior (`CurvePosteriorPrior`).
        """
        options = options.with_defaults(self.defaults)
        curve_prior = require_curve_prior(prior, f"the {self.name} validator ({checkpoint.name!r})")
        return validate_lc_nuts(
            checkpoint.model, curve_prior, checkpoint=checkpoint.name,
            n_ctx_sizes=options.sizes, n_tasks=options.tasks, n_qry=options.n_qry,
            seed=options.seed, tolerances=checkpoint.card.get("tolerances", {}),
            workers=options.workers, progress=options.progress,
            reference=self.reference(options),
        )  # fmt: skip

    def reference(self, options: ValidationOptions) -> Reference:
        """NUTS with the options' warmup and draws."""
        nuts = dataclasses.replace(
            DEFAULT_LC_NUTS, warmup=options.nuts_warmup, num_samples=options.nuts_samples
        )
        return NutsReference(nuts)

    def tables(self, report: Report) -> list[Table]:
        return lc_nuts_tables(report.to_dict(), self.short)

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """NLL of the PFN and of the reference by number of observed epochs (trusted tasks)."""
        data = report.to_dict()
        rows = [{**s, "exact_nll": s["ref_nll"]} for s in data["sizes"] if s["gap"] is not None]
        if not rows:
            return []
        path = Path(out_dir) / "nll_by_observed_epochs.png"
        return [plot_nll_by_size({**data, "sizes": rows}, path,
                                 reference_label=f"{self.short}, parametric curves")]  # fmt: skip


register_validator(LcNutsValidator())
