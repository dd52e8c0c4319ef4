"""Distribution Transformer vs the exact conjugate GMM posterior: NLL, C2ST, SBC, fusion.

Fresh tasks come from a GMM prior whose simulator is the Gaussian location model, so the
exact posterior is a GMM again (`reference.analytic`). The report compares the DT's
log q(θ_true | x) with the exact log p(θ_true | x), runs a classifier two-sample test
(sbi's `c2st`) between samples of the two posteriors, checks calibration with
simulation-based calibration ranks (sbi's `check_sbc`), and checks sequential fusion:
five batches of four observations, each posterior fed back as the next prior, against
the exact posterior given all twenty.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily

from pfnkit.data import Batch
from pfnkit.mixtures import sample_mixture
from pfnkit.models import DistributionTransformer
from pfnkit.reference.analytic import conjugate_gmm_posterior

__all__ = [
    "DTSizeResult",
    "DTValidationReport",
    "FusionResult",
    "sequential_posterior",
    "validate_dt_conjugate",
]

TASKS_PER_DRAW = 32  # tasks per prior.sample call; K is shared within one call
SBC_SAMPLES = 200  # posterior draws per task for the SBC ranks
FUSION_BATCHES, FUSION_BATCH_SIZE = 5, 4

TaskSampler = Callable[[int, int, torch.Generator], Batch]  # (n_tasks, n_obs, generator)


@dataclass(frozen=True)
class DTSizeResult:
    """Figures for one number of observations."""

    n_obs: int
    dt_nll: float
    exact_nll: float
    c2st: float
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
class DTValidationReport:
    """Everything `validate --checkpoint dt-...` prints, stores and gates on."""

    checkpoint: str
    n_tasks: int
    sizes: list[DTSizeResult]
    sbc: dict[str, list[float]]
    fusion: FusionResult
    tolerances: dict[str, float] = field(default_factory=dict)

    @property
    def mean_gap(self) -> float:
        return sum(s.gap for s in self.sizes) / len(self.sizes)

    @property
    def c2st_mean(self) -> float:
        return sum(s.c2st for s in self.sizes) / len(self.sizes)

    @property
    def checks(self) -> dict[str, tuple[float, float | None]]:
        """name -> (measured, tolerance or None)."""
        tol = self.tolerances
        return {
            "nll_gap_mean": (self.mean_gap, tol.get("nll_gap_mean")),
            "c2st_mean": (self.c2st_mean, tol.get("c2st_mean")),
            "fusion_gap": (self.fusion.gap, tol.get("fusion_gap")),
        }

    @property
    def passed(self) -> bool:
        return all(t is None or v <= t for v, t in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "n_tasks": self.n_tasks,
            "sizes": [{**dataclasses.asdict(s), "gap": s.gap} for s in self.sizes],
            "mean_gap": self.mean_gap,
            "c2st_mean": self.c2st_mean,
            "sbc": self.sbc,
            "fusion": {**dataclasses.asdict(self.fusion), "gap": self.fusion.gap},
            "tolerances": self.tolerances,
            "passed": self.passed,
        }

    def print_table(self, console: Any = None) -> None:
        """Print the per-size table, the SBC and fusion lines and the verdict with rich."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(width=max(Console().width, 110))
        table = Table(
            title=f"{self.checkpoint} vs exact posterior ({self.n_tasks} tasks per size; "
            "NLL of the true θ in nats)"
        )
        columns = ("n_obs", "DT NLL", "exact NLL", "gap", "C2ST", "DT ms/task", "exact ms/task")
        for name in columns:
            table.add_column(name, justify="right")
        for s in self.sizes:
            table.add_row(
                str(s.n_obs),
                f"{s.dt_nll:.4f}",
                f"{s.exact_nll:.4f}",
                f"{s.gap:+.4f}",
                f"{s.c2st:.3f}",
                f"{1e3 * s.dt_seconds_per_task:.3f}",
                f"{1e3 * s.exact_seconds_per_task:.3f}",
            )
        console.print(table)
        ks = ", ".join(f"{v:.3f}" for v in self.sbc.get("ks_pvals", []))
        dap = ", ".join(f"{v:.3f}" for v in self.sbc.get("c2st_dap", []))
        ranks = ", ".join(f"{v:.3f}" for v in self.sbc.get("c2st_ranks", []))
        console.print(
            f"SBC ({SBC_SAMPLES} draws per task): KS p-values per dim {ks}; C2ST of ranks vs "
            f"uniform {ranks}; of data-averaged posterior vs prior {dap}"
        )
        f = self.fusion
        console.print(
            f"fusion ({f.n_batches} x {f.batch_size} obs, each posterior fed back): DT "
            f"{f.dt_sequential_nll:.4f}, DT all at once {f.dt_joint_nll:.4f}, exact "
            f"{f.exact_nll:.4f}, gap {f.gap:+.4f}"
        )
        verdict = "PASS" if self.passed else "FAIL"
        checks = ", ".join(
            f"{k} {v:+.4f} (tol {t})" if t is not None else f"{k} {v:+.4f}"
            for k, (v, t) in self.checks.items()
        )
        console.print(f"{checks}: {verdict}")

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


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


def _draw(sampler: TaskSampler, n_tasks: int, n_obs: int, gen: torch.Generator) -> list[Batch]:
    return [
        sampler(min(TASKS_PER_DRAW, n_tasks - start), n_obs, gen)
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
        c2st=sum(c2st_scores) / max(1, len(c2st_scores)),
        dt_seconds_per_task=dt_time / n,
        exact_seconds_per_task=ex_time / n,
    )
    return result, sbc


def _sbc_summary(
    pieces: list[tuple[Tensor, Tensor, Tensor]], gen: torch.Generator
) -> dict[str, list[float]]:
    """sbi's SBC checks on ranks jittered by U(0, 1).

    The integer rank r of θ_true among L draws is uniform on {0, ..., L} when the
    posterior is calibrated, so r + U(0, 1) is uniform on [0, L + 1]. sbi compares the ranks
    with continuous uniform draws; without the jitter its classifier test would only
    detect that integers are not continuous.
    """
    from sbi.diagnostics import check_sbc

    theta = torch.cat([p[0] for p in pieces])
    draws = torch.cat([p[1] for p in pieces], dim=1)
    dap = torch.cat([p[2] for p in pieces])
    ranks = (draws < theta).sum(0).double()
    ranks = ranks + torch.rand(ranks.shape, generator=gen, dtype=ranks.dtype)
    stats = check_sbc(
        ranks.float(), theta.float(), dap.float(), num_posterior_samples=SBC_SAMPLES + 1
    )
    return {k: [float(v) for v in torch.as_tensor(t).flatten()] for k, t in stats.items()}


def _fusion(
    model: DistributionTransformer, sampler: TaskSampler, n_tasks: int, obs_cov: Tensor, gen
) -> FusionResult:
    n_obs = FUSION_BATCHES * FUSION_BATCH_SIZE
    seq, joint, exact = [], [], []
    for batch in _draw(sampler, n_tasks, n_obs, gen):
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


def validate_dt_conjugate(
    model: DistributionTransformer,
    sampler: TaskSampler,
    *,
    obs_cov: Tensor,
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
        model: the Distribution Transformer (any dtype; evaluated in float64).
        sampler: draws `(n_tasks, n_obs, generator) -> Batch` from the GMM prior.
        obs_cov: (d, d) observation covariance of the simulator.
        n_obs_sizes: numbers of observations to evaluate at.
        n_tasks: fresh tasks per size (and for the fusion check).
        n_c2st_tasks: tasks per size that also get a C2ST.
        n_c2st_samples: draws from each posterior per C2ST.
    """
    from rich.progress import track

    model = model.double().eval()
    obs_cov = torch.as_tensor(obs_cov, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    sizes, sbc_pieces = [], []
    steps = track(n_obs_sizes, description="DT vs exact") if progress else n_obs_sizes
    for n_obs in steps:
        batches = _draw(sampler, n_tasks, n_obs, gen)
        result, sbc = _size_result(model, batches, obs_cov, n_c2st_tasks, n_c2st_samples, gen)
        sizes.append(result)
        sbc_pieces += sbc
    return DTValidationReport(
        checkpoint=checkpoint,
        n_tasks=n_tasks,
        sizes=sizes,
        sbc=_sbc_summary(sbc_pieces, gen),
        fusion=_fusion(model, sampler, n_tasks, obs_cov, gen),
        tolerances=dict(tolerances or {}),
    )
