"""BNN-classifier-vs-NUTS settings and results: config, per-task and per-size scores, report.

`bnn_nuts` runs the comparison and imports this module; this module imports nothing from
it, so the two never form a cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pfnkit.metrics import fraction_or_none, mean_or_none, stderr_or_none
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.report import Check, Report

__all__ = [
    "DEFAULT_BNN_NUTS",
    "BNNNutsReport",
    "BNNNutsValidationConfig",
    "ClassCellResult",
    "ClassTaskScores",
    "CurvePoint",
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


@dataclass(frozen=True, kw_only=True)
class ClassTaskScores:
    """One task's scores; NLL and accuracy are means over its query points."""

    n_ctx: int
    index: int
    nuts_seed: int
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
    max_point_r_hat: float  # worst R-hat of one query point's class probability
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
            trusted_fraction=fraction_or_none([t.trusted for t in tasks]),
            pfn_nll=mean("pfn_nll"), nuts_nll=mean("nuts_nll"),
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
class BNNNutsReport(Report):
    """Every cell and task, the NLL-vs-time curve, the configuration and the card's tolerances.

    Checks: ``nll_gap_mean`` (PFN - NUTS over trusted runs, gated by the card's tolerance
    of that name; not measured when a size has no trusted run) and, whenever the gap is
    gated, ``trusted_fraction_min`` (the worst size's share of trusted runs, at least
    ``config.min_trusted_fraction``).
    """

    checkpoint: str
    config: BNNNutsValidationConfig
    cells: list[ClassCellResult]
    tasks: list[ClassTaskScores]
    curve: list[CurvePoint]
    curve_pfn_nll: float | None
    curve_pfn_seconds: float | None
    tolerances: dict[str, float]

    @property
    def trusted_fraction(self) -> float | None:
        return fraction_or_none([t.trusted for t in self.tasks])

    @property
    def mean_gap(self) -> float | None:
        """Mean over context sizes of the PFN - NUTS NLL (trusted tasks)."""
        return mean_or_none([c.gap for c in self.cells if c.gap is not None])

    @property
    def speed_ratio(self) -> float | None:
        """Mean NUTS time per task over mean PFN time per task; None without tasks."""
        nuts_seconds = mean_or_none([t.nuts_seconds for t in self.tasks])
        pfn_seconds = mean_or_none([t.pfn_seconds for t in self.tasks])
        if nuts_seconds is None or not pfn_seconds:
            return None
        return nuts_seconds / pfn_seconds

    def checks(self) -> list[Check]:
        tolerance = self.tolerances.get("nll_gap_mean")
        every_size = all(c.gap is not None for c in self.cells)
        enough = None if tolerance is None else self.config.min_trusted_fraction
        worst = min(c.trusted_fraction for c in self.cells)
        return [
            Check("nll_gap_mean", self.mean_gap if every_size else None, tolerance),
            Check("trusted_fraction_min", worst, enough, bound="lower"),
        ]

    def figures(self) -> dict[str, Any]:
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
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
        }
