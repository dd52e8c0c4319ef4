"""The heavy-tails study's four predictors and their per-task scores (benchmarks/heavy_tails.py).

Each predictor maps a batch of tasks to per-task scores on the query points: the mean
negative log predictive density per query point, and the fraction of query targets inside
the central 90% predictive interval. Standard errors are over tasks (queries of one task
are not independent).

- "tp-pfn", "gp-pfn": a PFN's bar distribution (one batched float32 forward pass);
- "exact-gp": the GP at gp-rbf's fixed hyperparameters (`pfnkit.reference.exact_gp`);
- "exact-tp": the Student-t process of tp-rbf's prior (`pfnkit.reference.student_t`
  through `pfnkit.robustness.tp_exact.exact_student_t_predictor`), with its intervals
  from scipy's t quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats
from torch import Tensor, nn

from pfnkit.data import Batch
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive_batch
from pfnkit.robustness.tp_exact import exact_student_t_predictor

__all__ = [
    "COVERAGE_LEVEL",
    "PREDICTORS",
    "Scores",
    "exact_gp_scores",
    "exact_tp_scores",
    "paired",
    "pfn_scores",
    "summary",
]

COVERAGE_LEVEL = 0.9
PREDICTORS: tuple[str, ...] = ("tp-pfn", "gp-pfn", "exact-tp", "exact-gp")


@dataclass(frozen=True)
class Scores:
    """Per-task scores, float64.

    Attributes:
        nll_B: mean NLL per query point of each task.
        coverage_B: fraction of each task's query targets inside the central 90% interval.
    """

    nll_B: Tensor
    coverage_B: Tensor


def _inside(y_BM: Tensor, low_BM: Tensor, high_BM: Tensor) -> Tensor:
    return ((y_BM >= low_BM) & (y_BM <= high_BM)).double().mean(-1)


def pfn_scores(model: nn.Module, batch: Batch) -> Scores:
    """A PFN's scores: -log_prob of its bar distribution, and its bar quantiles."""
    tail = (1 - COVERAGE_LEVEL) / 2
    with torch.no_grad():
        dist = model.eval()(batch.x_ctx, batch.y_ctx, batch.x_qry)
        nll_B = -dist.log_prob(batch.y_qry).double().mean(-1)
        q_BM2 = dist.quantiles([tail, 1 - tail])
    return Scores(nll_B, _inside(batch.y_qry, q_BM2[..., 0], q_BM2[..., 1]))


def exact_gp_scores(hyper: GPHyperparameters, batch: Batch) -> Scores:
    """The exact GP's scores at fixed hyperparameters (Gaussian intervals)."""
    y_BM = batch.y_qry.double()
    with torch.no_grad():
        dist = exact_gp_predictive_batch(batch.x_ctx, batch.y_ctx, batch.x_qry,
                                         hyper).to_distribution()  # fmt: skip
    tail = torch.full_like(y_BM, (1 - COVERAGE_LEVEL) / 2)
    return Scores(-dist.log_prob(y_BM).mean(-1),
                  _inside(y_BM, dist.icdf(tail), dist.icdf(1 - tail)))  # fmt: skip


def exact_tp_scores(prior: Any, batch: Batch) -> Scores:
    """The exact Student-t process's scores; the interval test uses scipy's t cdf."""
    y_BM = batch.y_qry.double()
    with torch.no_grad():
        dist = exact_student_t_predictor(prior)(batch.x_ctx, batch.y_ctx, batch.x_qry)
    u_BM = stats.t.cdf(y_BM.numpy(), dist.df.numpy(), loc=dist.loc.numpy(),
                       scale=dist.scale.numpy())  # fmt: skip
    inside_BM = torch.from_numpy(abs(u_BM - 0.5) <= COVERAGE_LEVEL / 2).double()
    return Scores(-dist.log_prob(y_BM).mean(-1), inside_BM.mean(-1))


def _mean_se(values_B: Tensor) -> dict[str, float]:
    n = values_B.numel()
    se = float(values_B.std(correction=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": float(values_B.mean()), "se": se}


def summary(scores: Scores) -> dict[str, dict[str, float]]:
    """Mean and standard error over tasks of the NLL and of the coverage."""
    return {"nll": _mean_se(scores.nll_B), "coverage90": _mean_se(scores.coverage_B)}


def paired(first: Scores, second: Scores) -> dict[str, float]:
    """Mean and standard error over tasks of first's NLL minus second's (same tasks)."""
    return _mean_se(first.nll_B - second.nll_B)
