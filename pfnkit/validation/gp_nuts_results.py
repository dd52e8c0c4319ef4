"""What the gp-nuts validator runs and reports: its configuration, per-task and per-cell scores.

`GPNutsValidationConfig` (the grid and the NUTS budget), `TaskScores` (one task),
`CellResult` (one (n_ctx, d) cell) and `GPNutsReport` (the whole run, with its checks).
`pfnkit.validation.gp_nuts` computes them; the split keeps that module readable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pfnkit.metrics import fraction_or_none, mean_or_none, stderr_or_none
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.report import Check, Report

__all__ = [
    "DEFAULT_GP_NUTS",
    "CellResult",
    "GPNutsReport",
    "GPNutsValidationConfig",
    "TaskScores",
]

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
    trusted_fraction: float | None  # of the NUTS runs
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
            trusted_fraction=fraction_or_none([t.trusted for t in ran]),
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
class GPNutsReport(Report):
    """Every cell, every task, the configuration, and the card's tolerances."""

    checkpoint: str
    config: GPNutsValidationConfig
    cells: list[CellResult]
    tasks: list[TaskScores]
    tolerances: dict[str, float]

    @property
    def trusted_fraction(self) -> float | None:
        """Of the NUTS runs; None when there are none."""
        return fraction_or_none([t.trusted for t in self.tasks if t.nuts_run])

    @property
    def mean_gap(self) -> float | None:
        """Mean PFN - NUTS NLL over the cells that have trusted tasks."""
        return mean_or_none([c.gap for c in self.cells if c.gap is not None])

    def ml2_gap(self, max_n_ctx: int) -> float | None:
        """Mean PFN - ML-II NLL over the cells with n_ctx <= max_n_ctx (negative: PFN better)."""
        return mean_or_none(
            [c.ml2_gap for c in self.cells if c.n_ctx <= max_n_ctx and c.ml2_gap is not None]
        )

    @property
    def max_gap(self) -> float | None:
        gaps = [c.gap for c in self.cells if c.gap is not None]
        return max(gaps) if gaps else None

    def checks(self) -> list[Check]:
        """The card's nll_gap_mean / nll_gap_max (PFN - NUTS over the cells); either is
        unmeasured (None, so a gated check fails) while some cell has no trusted NUTS run."""
        every_cell = all(c.gap is not None for c in self.cells)
        return [
            Check("nll_gap_mean", self.mean_gap if every_cell else None,
                  self.tolerances.get("nll_gap_mean")),
            Check("nll_gap_max", self.max_gap if every_cell else None,
                  self.tolerances.get("nll_gap_max")),
        ]  # fmt: skip

    def figures(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "reference": "nuts",
            "config": self.config.to_dict(),
            "cells": [c.to_dict() for c in self.cells],
            "trusted_fraction": self.trusted_fraction,
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
            "ml2_gap_n_ctx_le_20": self.ml2_gap(20),
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
        }
