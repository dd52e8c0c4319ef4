"""The heavy-tails study's scenarios and the tasks each one draws (benchmarks/heavy_tails.py).

Two task families share one base kernel (tp-rbf's and gp-rbf's: RBF, lengthscale 0.2,
outputscale 1, noise variance 0.01): "gp" tasks are that GP's draws, "tp" tasks scale its
covariance and noise by one σ² ~ InvGamma(2, 2) per task (a Student-t process). A
`Scenario` picks a family and what is done to it:

- in-range tasks come from the prior objects themselves (`prior.sample`, x ~ U[0, 1]);
- outlier scenarios replace context targets, independently with probability `outlier_rate`,
  by y + s·a·sd, with a random sign s, a ~ U[OUTLIER_MIN, OUTLIER_MAX] and sd the GP's
  prior standard deviation of y, sqrt(outputscale + noise); queries stay clean;
- extrapolation scenarios draw the context inputs from `ctx_range` and the query inputs
  from `qry_range` (one joint draw of y at all inputs, from the family's kernel).

Every cell (scenario, context size) has its own seed, derived from the study's seed, so a
cell's tasks do not depend on which other cells run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pfnkit.data import Batch
from priors.gp_kernels import kernel_matrix

__all__ = [
    "OUTLIER_MAX",
    "OUTLIER_MIN",
    "SCENARIOS",
    "Scenario",
    "TaskFamily",
    "cell_seed",
    "draw_cell",
    "gp_family",
    "tp_family",
]

OUTLIER_MIN = 3.0  # outlier shift, in prior standard deviations of y: U[OUTLIER_MIN, OUTLIER_MAX]
OUTLIER_MAX = 6.0


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One row group of the study: a task family and what is done to its tasks.

    Attributes:
        name: short key (JSON, plot).
        label: what the table shows.
        family: "gp" or "tp".
        outlier_rate: probability that a context target is replaced by an outlier.
        ctx_range: interval of the context inputs; None draws them from the prior.
        qry_range: interval of the query inputs (with ctx_range).
    """

    name: str
    label: str
    family: str
    outlier_rate: float = 0.0
    ctx_range: tuple[float, float] | None = None
    qry_range: tuple[float, float] | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(name="tp", label="(a) TP tasks", family="tp"),
    Scenario(name="gp", label="GP tasks (control)", family="gp"),
    Scenario(name="gp-out5", label="(b) GP, 5% outliers", family="gp", outlier_rate=0.05),
    Scenario(name="gp-out10", label="(b) GP, 10% outliers", family="gp", outlier_rate=0.10),
    Scenario(name="gp-extrap", label="(c) GP, x_q > 0.5", family="gp", ctx_range=(0.0, 0.5),
             qry_range=(0.5, 1.0)),
    Scenario(name="tp-extrap", label="(c) TP, x_q > 0.5", family="tp", ctx_range=(0.0, 0.5),
             qry_range=(0.5, 1.0)),
)  # fmt: skip


@dataclass(frozen=True)
class TaskFamily:
    """A prior, and what drawing its tasks at chosen inputs needs.

    Attributes:
        prior: the prior object (its `sample` draws the in-range tasks).
        kernel: base kernel K(x1, x2) of shape (B, N, M), float64.
        noise: noise variance before scaling.
        scale: σ² per task, (B,) float64, from a generator.
        prior_sd: the standard deviation of one target y under the family's base GP.
    """

    prior: Any
    kernel: Callable[[Tensor, Tensor], Tensor]
    noise: float
    scale: Callable[[int, torch.Generator], Tensor]
    prior_sd: float


def gp_family(prior: Any) -> TaskFamily:
    """The fixed GP of `prior` (a GP prior with ``fixed_gp_hyperparameters()``), σ² = 1."""
    hyper = prior.fixed_gp_hyperparameters()
    lengthscale_D = torch.tensor(hyper["lengthscale"], dtype=torch.float64)

    def kernel(x1_BND: Tensor, x2_BMD: Tensor) -> Tensor:
        b = x1_BND.shape[0]
        outputscale_B = torch.full((b,), float(hyper["outputscale"]), dtype=torch.float64)
        return kernel_matrix(hyper["kernel"], x1_BND.double(), x2_BMD.double(),
                             lengthscale_D.expand(b, -1), outputscale_B)  # fmt: skip

    def unit(batch_size: int, generator: torch.Generator) -> Tensor:
        return torch.ones(batch_size, dtype=torch.float64)

    sd = (float(hyper["outputscale"]) + float(hyper["noise"])) ** 0.5
    return TaskFamily(prior, kernel, float(hyper["noise"]), unit, sd)


def tp_family(prior: Any) -> TaskFamily:
    """The Student-t process of `prior` (the "tp" prior: kernel_matrix, sample_scale)."""
    hyper = prior.student_t_hyperparameters()
    base_variance = float(prior.kernel_matrix(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1)))
    sd = (base_variance + hyper["noise"]) ** 0.5
    return TaskFamily(prior, prior.kernel_matrix, hyper["noise"], prior.sample_scale, sd)


def cell_seed(seed: int, scenario_index: int, n_ctx: int) -> int:
    """The seed of one (scenario, context size) cell."""
    return 1_000_003 * seed + 10_007 * scenario_index + n_ctx


def _split_range_tasks(
    family: TaskFamily, scenario: Scenario, n_tasks: int, n_ctx: int, n_qry: int,
    generator: torch.Generator,
) -> Batch:  # fmt: skip
    """Tasks whose context and query inputs come from the scenario's two intervals."""
    scale_B = family.scale(n_tasks, generator)
    (c0, c1), (q0, q1) = scenario.ctx_range, scenario.qry_range
    x_ctx = c0 + (c1 - c0) * torch.rand(n_tasks, n_ctx, 1, generator=generator, dtype=torch.float64)
    x_qry = q0 + (q1 - q0) * torch.rand(n_tasks, n_qry, 1, generator=generator, dtype=torch.float64)
    x_BTD = torch.cat([x_ctx, x_qry], dim=1)
    t = n_ctx + n_qry
    cov_BTT = family.kernel(x_BTD, x_BTD) + family.noise * torch.eye(t, dtype=torch.float64)
    z_BT1 = torch.randn(n_tasks, t, 1, generator=generator, dtype=torch.float64)
    y_BT = scale_B.sqrt()[:, None] * (torch.linalg.cholesky(cov_BTT) @ z_BT1)[..., 0]
    x_BTD, y_BT = x_BTD.float(), y_BT.float()
    return Batch(x_ctx=x_BTD[:, :n_ctx], y_ctx=y_BT[:, :n_ctx], x_qry=x_BTD[:, n_ctx:],
                 y_qry=y_BT[:, n_ctx:], meta={"scale": scale_B.float()})  # fmt: skip


def _with_outliers(
    batch: Batch, family: TaskFamily, rate: float, generator: torch.Generator
) -> Batch:
    """Replace context targets by outliers (the recipe in the module docstring)."""
    shape = batch.y_ctx.shape
    hit_BN = torch.rand(shape, generator=generator, dtype=torch.float64) < rate
    sign_BN = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
    size_BN = OUTLIER_MIN + (OUTLIER_MAX - OUTLIER_MIN) * torch.rand(shape, generator=generator)
    shift_BN = (hit_BN * sign_BN * size_BN * family.prior_sd).float()
    return Batch(x_ctx=batch.x_ctx, y_ctx=batch.y_ctx + shift_BN, x_qry=batch.x_qry,
                 y_qry=batch.y_qry, meta={**batch.meta, "outlier": hit_BN.float()})  # fmt: skip


def draw_cell(
    scenario: Scenario, family: TaskFamily, n_tasks: int, n_ctx: int, n_qry: int, seed: int
) -> Batch:
    """The tasks of one cell: every predictor is scored on exactly these."""
    generator = torch.Generator().manual_seed(seed)
    if scenario.ctx_range is not None:
        return _split_range_tasks(family, scenario, n_tasks, n_ctx, n_qry, generator)
    batch = family.prior.sample(n_tasks, n_ctx, n_qry, generator=generator)
    if scenario.outlier_rate > 0:
        batch = _with_outliers(batch, family, scenario.outlier_rate, generator)
    return batch
