"""BNN-classifier-vs-NUTS results: per-task and per-size scores, the report, its table and plot."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pfnkit.figures import pyplot, save_figure
from pfnkit.metrics import mean_or_none, stderr_or_none
from pfnkit.reference.nuts_classifier import GATED_ON

if TYPE_CHECKING:
    from pfnkit.validation.bnn_nuts import BNNNutsValidationConfig

__all__ = [
    "BNNNutsReport",
    "ClassCellResult",
    "ClassTaskScores",
    "CurvePoint",
    "plot_bnn_nuts",
    "print_bnn_nuts_table",
]


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
        """Within the card's ``nll_gap_mean``, with enough trusted runs at every size."""
        tolerance = self.tolerances.get("nll_gap_mean", math.inf)
        if math.isinf(tolerance):
            return True
        enough = self.config.min_trusted_fraction
        if any(c.gap is None or c.trusted_fraction < enough for c in self.cells):
            return False
        return self.mean_gap <= tolerance

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


def print_bnn_nuts_table(report: BNNNutsReport) -> None:
    """Print one row per context size, the NUTS budget, the curve and the verdict."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{report.checkpoint} vs NUTS on the weight posterior ({report.config.n_tasks} "
        "tasks per size; NLL in nats per query point)"
    )
    columns = ("n_ctx", "trusted", "PFN NLL", "NUTS NLL", "chain spread", "gap (trusted)",
               "acc PFN/NUTS", "PFN ms", "NUTS s", "speed-up")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right")
    for c in report.cells:
        gap = "-" if c.gap is None else f"{c.gap:+.4f}"
        gap += "" if c.gap_stderr is None else f" ± {c.gap_stderr:.4f}"
        table.add_row(
            str(c.n_ctx), f"{100 * c.trusted_fraction:.0f}%", f"{c.pfn_nll:.4f}",
            f"{c.nuts_nll:.4f}", f"{c.chain_nll_spread:.4f}", gap,
            f"{100 * c.pfn_accuracy:.1f}/{100 * c.nuts_accuracy:.1f}",
            f"{1e3 * c.pfn_seconds:.1f}", f"{c.nuts_seconds:.1f}", f"{c.speed_ratio:.0f}x",
        )  # fmt: skip
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(
        f"NUTS budget: {report.config.nuts.to_dict()}; R-hat and ESS gated on "
        f"{GATED_ON}, and every query point's R-hat below {report.config.point_r_hat_max}. "
        "'chain spread': mean over tasks of max - min of the "
        "NLL from each chain alone (the reference's Monte Carlo error)"
    )
    if report.curve:
        points = ", ".join(f"{p.budget}: {p.nuts_nll:.4f} in {p.nuts_seconds:.2f} s"
                           for p in report.curve)  # fmt: skip
        console.print(
            f"NLL vs time, {report.config.curve_tasks} tasks at n_ctx "
            f"{report.config.curve_n_ctx}, one chain (warmup = draws): {points}; PFN "
            f"{report.curve_pfn_nll:.4f} in {1e3 * report.curve_pfn_seconds:.1f} ms"
        )
    mean_gap = "-" if report.mean_gap is None else f"{report.mean_gap:+.4f}"
    console.print(
        f"trusted NUTS runs {100 * report.trusted_fraction:.0f}%; mean gap {mean_gap}; PFN "
        f"{report.speed_ratio:.0f}x faster per task; tolerances {report.tolerances}: "
        f"{'PASS' if report.passed else 'FAIL'}"
    )


def plot_bnn_nuts(report: BNNNutsReport, path: str | Path) -> Path:
    """PNG: NLL against context size, and NUTS NLL against wall-clock time with the PFN."""
    plt = pyplot()

    panels = 2 if report.curve else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    sizes = [c.n_ctx for c in report.cells]
    ax.plot(sizes, [c.nuts_nll for c in report.cells], "o-", label="NUTS (exact posterior)")
    ax.plot(sizes, [c.pfn_nll for c in report.cells], "s--", label=f"PFN ({report.checkpoint})")
    ax.set(xscale="log", xlabel="context points", ylabel="NLL per query point (nats)")
    ax.legend(fontsize=8)
    if report.curve:
        ax = axes[0][1]
        ax.plot([p.nuts_seconds for p in report.curve], [p.nuts_nll for p in report.curve],
                "o-", label="NUTS, 1 chain, growing budget")  # fmt: skip
        for p in report.curve:
            ax.annotate(str(p.budget), (p.nuts_seconds, p.nuts_nll), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
        ax.plot([report.curve_pfn_seconds], [report.curve_pfn_nll], "*", markersize=14,
                label="PFN, one forward pass")  # fmt: skip
        ax.set(xscale="log", xlabel="wall-clock seconds per task",
               title=f"n_ctx = {report.config.curve_n_ctx}")  # fmt: skip
        ax.legend(fontsize=8)
    return save_figure(fig, path)
