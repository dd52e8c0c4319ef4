"""Distribution Transformer vs the exact conjugate GMM posterior: NLL, C2ST, SBC, fusion.

Fresh tasks come from a GMM prior whose simulator is the Gaussian location model, so the
exact posterior is a GMM again (`reference.analytic`). The report compares the DT's
log q(θ_true | x) with the exact log p(θ_true | x), runs a classifier two-sample test
(sbi's `c2st`) between samples of the two posteriors, checks calibration with
simulation-based calibration ranks (sbi's `check_sbc`), and checks sequential fusion:
five batches of four observations, each posterior fed back as the next prior, against
the exact posterior given all twenty. Registered as the "dt-exact" validator.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily

from pfnkit.data import Batch, Prior
from pfnkit.metrics import mean_or_none
from pfnkit.mixtures import sample_mixture
from pfnkit.models import DistributionTransformer
from pfnkit.reference.analytic import conjugate_gmm_posterior
from pfnkit.report import Check, Report
from pfnkit.validation.plots import plot_dt_posteriors
from pfnkit.validation.registry import ValidationOptions, register_validator
from pfnkit.validation.tables import dt_exact_tables

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "ConjugateGMMPrior",
    "DTExactValidator",
    "DTSizeResult",
    "DTValidationReport",
    "FusionResult",
    "sequential_posterior",
    "validate_dt_conjugate",
]

TASKS_PER_DRAW = 32  # tasks per prior.sample call; K is shared within one call
SBC_SAMPLES = 200  # posterior draws per task for the SBC ranks
MIN_SBC_TASKS = 5  # sbi's C2ST of the ranks cross-validates in 5 folds
FUSION_BATCHES, FUSION_BATCH_SIZE = 5, 4

PLOT_N_OBS = (2, 5, 10)  # one contour panel per task with this many observations


@dataclass(frozen=True)
class DTSizeResult:
    """Figures for one number of observations."""

    n_obs: int
    dt_nll: float
    exact_nll: float
    c2st: float | None  # None when no task of the size got a C2ST
    dt_seconds_per_task: float
    exact_seconds_per_task: float

    @property
    def gap(self) -> float:
        return self.dt_nll - self.exact_nll


@dataclass(frozen=True)
class FusionResult:
    """Sequential updates: `n_batches` batches of `batch_size` observations."""

    n_batches: int
    batch_size: int
    dt_sequential_nll: float
    dt_joint_nll: float
    exact_nll: float

    @property
    def gap(self) -> float:
        return self.dt_sequential_nll - self.exact_nll


@dataclass
class DTValidationReport(Report):
    """Everything the dt-exact validator prints, stores and gates on.

    Checks ``nll_gap_mean``, ``c2st_mean`` and ``fusion_gap`` (each at most the card's
    tolerance of that name; one the card does not name is shown but not gated).
    """

    checkpoint: str
    n_tasks: int
    sizes: list[DTSizeResult]
    sbc: dict[str, list[float]]
    fusion: FusionResult
    tolerances: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    sbc_samples: int = SBC_SAMPLES

    @property
    def mean_gap(self) -> float | None:
        return mean_or_none([s.gap for s in self.sizes])

    @property
    def c2st_mean(self) -> float | None:
        """Mean C2ST over the sizes that ran one; None when none did (a gated check fails)."""
        return mean_or_none([s.c2st for s in self.sizes if s.c2st is not None])

    def checks(self) -> list[Check]:
        tol = self.tolerances
        return [
            Check("nll_gap_mean", self.mean_gap, tol.get("nll_gap_mean")),
            Check("c2st_mean", self.c2st_mean, tol.get("c2st_mean")),
            Check("fusion_gap", self.fusion.gap, tol.get("fusion_gap")),
        ]

    def figures(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "n_tasks": self.n_tasks,
            "seed": self.seed,
            "sbc_samples": self.sbc_samples,
            "sizes": [{**dataclasses.asdict(s), "gap": s.gap} for s in self.sizes],
            "mean_gap": self.mean_gap,
            "c2st_mean": self.c2st_mean,
            "sbc": self.sbc,
            "fusion": {**dataclasses.asdict(self.fusion), "gap": self.fusion.gap},
        }


class ConjugateGMMPrior(Prior, Protocol):
    """A GMM prior over θ whose simulator is the Gaussian location model x ~ N(θ, obs_cov)."""

    @property
    def is_conjugate(self) -> bool:
        """True when the exact posterior is a GMM again (the Gaussian simulator)."""
        ...

    @property
    def obs_cov(self) -> Tensor:
        """(d, d) observation covariance of the simulator, float64."""
        ...


def _dt_posterior(model: DistributionTransformer, batch: Batch) -> MixtureSameFamily:
    with torch.no_grad():
        return model.from_batch(batch.to(torch.float64))


def _exact_posterior(batch: Batch, obs_cov: Tensor) -> MixtureSameFamily:
    m = batch.to(torch.float64).meta
    return conjugate_gmm_posterior(
        m["prior_logits"], m["prior_means"], m["prior_scale_tril"], batch.x_ctx.double(), obs_cov
    )


def sequential_posterior(
    model: DistributionTransformer, batch: Batch, n_batches: int, batch_size: int
) -> MixtureSameFamily:
    """Feed the observations in `n_batches` chunks, each posterior as the next prior."""
    b = batch.to(torch.float64)
    logits, means, tril = (b.meta[k] for k in ("prior_logits", "prior_means", "prior_scale_tril"))
    with torch.no_grad():
        for i in range(n_batches):
            chunk = b.x_ctx[:, i * batch_size : (i + 1) * batch_size]
            post = model(logits, means, tril, chunk)
            logits = post.mixture_distribution.logits
            means = post.component_distribution.loc
            tril = post.component_distribution.scale_tril
    return post


def _draw(prior: Prior, n_tasks: int, n_obs: int, gen: torch.Generator) -> list[Batch]:
    return [
        prior.sample(min(TASKS_PER_DRAW, n_tasks - start), n_obs, 0, generator=gen)
        for start in range(0, n_tasks, TASKS_PER_DRAW)
    ]


def _size_result(
    model: DistributionTransformer,
    batches: list[Batch],
    obs_cov: Tensor,
    n_c2st_tasks: int,
    n_c2st_samples: int,
    gen: torch.Generator,
) -> tuple[DTSizeResult, list[tuple[Tensor, Tensor, Tensor]]]:
    from sbi.utils.metrics import c2st

    dt_lp, ex_lp, c2st_scores, sbc = [], [], [], []
    dt_time = ex_time = 0.0
    for batch in batches:
        theta = batch.meta["theta"].double()
        start = time.perf_counter()
        dt = _dt_posterior(model, batch)
        dt_time += time.perf_counter() - start
        start = time.perf_counter()
        exact = _exact_posterior(batch, obs_cov)
        ex_time += time.perf_counter() - start
        dt_lp.append(dt.log_prob(theta))
        ex_lp.append(exact.log_prob(theta))
        draws_SBD = sample_mixture(dt, SBC_SAMPLES, generator=gen)
        sbc.append((theta, draws_SBD, sample_mixture(dt, 1, generator=gen)[0]))
        for i in range(min(batch.batch_size, n_c2st_tasks - len(c2st_scores))):
            x_dt = sample_mixture(dt, n_c2st_samples, generator=gen)[:, i].float()
            x_ex = sample_mixture(exact, n_c2st_samples, generator=gen)[:, i].float()
            c2st_scores.append(float(c2st(x_dt, x_ex, seed=len(c2st_scores))))
    n = sum(b.batch_size for b in batches)
    result = DTSizeResult(
        n_obs=batches[0].n_ctx,
        dt_nll=float(-torch.cat(dt_lp).mean()),
        exact_nll=float(-torch.cat(ex_lp).mean()),
        c2st=mean_or_none(c2st_scores),
        dt_seconds_per_task=dt_time / n,
        exact_seconds_per_task=ex_time / n,
    )
    return result, sbc


def _sbc_summary(
    pieces: list[tuple[Tensor, Tensor, Tensor]], gen: torch.Generator, seed: int
) -> dict[str, list[float]]:
    """sbi's SBC checks on ranks jittered by U(0, 1).

    The integer rank r of θ_true among L draws is uniform on {0, ..., L} when the
    posterior is calibrated, so r + U(0, 1) is uniform on [0, L + 1]. sbi compares the ranks
    with continuous uniform draws; without the jitter its classifier test would only
    detect that integers are not continuous.

    sbi draws those uniform draws from torch's global generator, whose state differs from
    process to process; they are drawn here under `torch.random.fork_rng` seeded with
    `seed`, so the same seed gives the same ``c2st_ranks`` and the caller's global state is
    left as it was.
    """
    from sbi.diagnostics import check_sbc

    theta = torch.cat([p[0] for p in pieces])
    draws = torch.cat([p[1] for p in pieces], dim=1)
    dap = torch.cat([p[2] for p in pieces])
    ranks = (draws < theta).sum(0).double()
    ranks = ranks + torch.rand(ranks.shape, generator=gen, dtype=ranks.dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stats = check_sbc(
            ranks.float(), theta.float(), dap.float(), num_posterior_samples=SBC_SAMPLES + 1
        )
    return {k: [float(v) for v in torch.as_tensor(t).flatten()] for k, t in stats.items()}


def _fusion(
    model: DistributionTransformer,
    prior: Prior,
    n_tasks: int,
    obs_cov: Tensor,
    gen: torch.Generator,
) -> FusionResult:
    n_obs = FUSION_BATCHES * FUSION_BATCH_SIZE
    seq, joint, exact = [], [], []
    for batch in _draw(prior, n_tasks, n_obs, gen):
        theta = batch.meta["theta"].double()
        post = sequential_posterior(model, batch, FUSION_BATCHES, FUSION_BATCH_SIZE)
        seq.append(post.log_prob(theta))
        joint.append(_dt_posterior(model, batch).log_prob(theta))
        exact.append(_exact_posterior(batch, obs_cov).log_prob(theta))
    return FusionResult(
        n_batches=FUSION_BATCHES,
        batch_size=FUSION_BATCH_SIZE,
        dt_sequential_nll=float(-torch.cat(seq).mean()),
        dt_joint_nll=float(-torch.cat(joint).mean()),
        exact_nll=float(-torch.cat(exact).mean()),
    )


def _check_applicable(prior: Prior, checkpoint: str, n_tasks: int, n_sizes: int) -> None:
    """Raise a ValueError unless the prior is conjugate and SBC gets enough tasks."""
    if not getattr(prior, "is_conjugate", False):
        raise ValueError(
            f"dt-exact needs a conjugate simulator (the Gaussian location model), but "
            f"{checkpoint!r}'s prior is not one; validate it against NUTS with the dt-nuts "
            "validator (--reference nuts)"
        )
    if n_tasks * n_sizes < MIN_SBC_TASKS:
        raise ValueError(
            f"SBC needs at least {MIN_SBC_TASKS} tasks in all (tasks x sizes), got {n_tasks} x "
            f"{n_sizes}; run more tasks"
        )


def validate_dt_conjugate(
    model: DistributionTransformer,
    prior: ConjugateGMMPrior,
    *,
    checkpoint: str = "model",
    n_obs_sizes: Sequence[int] = (0, 2, 5, 10, 20),
    n_tasks: int = 256,
    n_c2st_tasks: int = 20,
    n_c2st_samples: int = 1000,
    seed: int = 0,
    tolerances: dict[str, float] | None = None,
    progress: bool = False,
) -> DTValidationReport:
    """Validate a Gaussian-location Distribution Transformer against the exact posterior.

    Args:
        model: the Distribution Transformer (any dtype; evaluated in float64 in place).
        prior: the GMM prior it was trained on, with the Gaussian location simulator.
        checkpoint: name for the report.
        n_obs_sizes: numbers of observations to evaluate at.
        n_tasks: fresh tasks per size (and for the fusion check).
        n_c2st_tasks: tasks per size that also get a C2ST.
        n_c2st_samples: draws from each posterior per C2ST.
        seed: seed of the tasks and of every draw.
        tolerances: the card's ``nll_gap_mean``, ``c2st_mean`` and ``fusion_gap``.
        progress: show a rich progress bar.

    Raises:
        ValueError: the prior's simulator is not conjugate (use dt-nuts for it), or there
            are too few tasks for the SBC checks.
    """
    from rich.progress import track

    _check_applicable(prior, checkpoint, n_tasks, len(n_obs_sizes))
    model = model.double().eval()
    obs_cov = prior.obs_cov.to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    sizes, sbc_pieces = [], []
    steps = track(n_obs_sizes, description="DT vs exact") if progress else n_obs_sizes
    for n_obs in steps:
        batches = _draw(prior, n_tasks, n_obs, gen)
        result, sbc = _size_result(model, batches, obs_cov, n_c2st_tasks, n_c2st_samples, gen)
        sizes.append(result)
        sbc_pieces += sbc
    return DTValidationReport(
        checkpoint=checkpoint,
        n_tasks=n_tasks,
        sizes=sizes,
        sbc=_sbc_summary(sbc_pieces, gen, seed),
        fusion=_fusion(model, prior, n_tasks, obs_cov, gen),
        tolerances=dict(tolerances or {}),
        seed=seed,
    )


@dataclass(frozen=True)
class DTExactValidator:
    """A Distribution Transformer on a conjugate GMM prior against its closed-form posterior.

    Attributes:
        c2st_tasks: tasks per size that also get a C2ST (at most the run's tasks).
        c2st_samples: draws from each posterior per C2ST.
    """

    name: str = "dt-exact"
    defaults: ValidationOptions = ValidationOptions(tasks=256, sizes=(0, 2, 5, 10, 20))
    c2st_tasks: int = 20
    c2st_samples: int = 1000

    def run(
        self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions
    ) -> DTValidationReport:
        """NLL, C2ST, SBC and fusion on fresh tasks of `prior` (see the module docstring).

        Raises:
            ValueError: `prior` is not conjugate (use dt-nuts).
        """
        options = options.with_defaults(self.defaults)
        return validate_dt_conjugate(
            checkpoint.model, prior, checkpoint=checkpoint.name, n_obs_sizes=options.sizes,
            n_tasks=options.tasks, n_c2st_tasks=self.c2st_tasks,
            n_c2st_samples=self.c2st_samples, seed=options.seed,
            tolerances=checkpoint.card.get("tolerances", {}), progress=options.progress,
        )  # fmt: skip

    def tables(self, report: Report) -> list[Table]:
        return dt_exact_tables(report.to_dict())

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """Contours of prior, exact and DT posterior on fresh tasks (seed: the report's + 1)."""
        gen = torch.Generator().manual_seed(report.to_dict()["seed"] + 1)
        tasks = [prior.sample(1, n_obs, 0, generator=gen) for n_obs in PLOT_N_OBS]
        path = Path(out_dir) / "posterior_contours.png"
        return [plot_dt_posteriors(checkpoint.model, tasks, prior.obs_cov, path,
                                   title=checkpoint.name)]  # fmt: skip


register_validator(DTExactValidator())
