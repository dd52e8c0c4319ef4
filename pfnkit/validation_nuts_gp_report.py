"""Render a GP-vs-NUTS validation report: a rich table and NLL-by-context-size panels."""

from __future__ import annotations

import math
from pathlib import Path

from pfnkit.figures import pyplot, save_figure
from pfnkit.validation_nuts_gp import GPNutsReport

__all__ = ["plot_nll_by_context", "print_gp_nuts_table"]


def print_gp_nuts_table(report: GPNutsReport) -> None:
    """Print one row per cell, the NUTS budget and the verdict with rich."""
    from rich.console import Console
    from rich.table import Table

    pct = round(100 * report.config.level)
    table = Table(
        title=f"{report.checkpoint} vs NUTS-marginalised GP and ML-II ({report.config.n_tasks} "
        f"tasks per cell; NLL in nats per query point; {pct}% interval coverage)"
    )
    columns = ("d", "n_ctx", "trusted", "PFN NLL", "NUTS NLL", "ML-II NLL", "gap (trusted)",
               "cov PFN/NUTS/ML-II", "PFN ms", "NUTS s", "ML-II s", "speed-up")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right")
    show = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for c in report.cells:
        gap = "-" if c.gap is None else f"{c.gap:+.3f} ± {c.gap_stderr or 0:.3f}"
        cov = "/".join(show(v and 100 * v, ".0f")
                       for v in (c.pfn_coverage, c.nuts_coverage, c.ml2_coverage))  # fmt: skip
        table.add_row(
            str(c.d), str(c.n_ctx), f"{100 * c.trusted_fraction:.0f}%",
            f"{c.pfn_nll:.3f}", f"{c.nuts_nll:.3f}", show(c.ml2_nll, ".3f"), gap, cov,
            f"{1e3 * c.pfn_seconds:.1f}", f"{c.nuts_seconds:.1f}", f"{c.ml2_seconds:.2f}",
            f"{c.speed_ratio:.0f}x",
        )  # fmt: skip
    console = Console(width=max(Console().width, 140))
    console.print(table)
    console.print(f"NUTS budget: {report.config.nuts.to_dict()}")
    failures = sum(c.ml2_failures for c in report.cells)
    if failures:
        console.print(f"ML-II failed on {failures} task(s); their ML-II scores are left out")
    console.print(
        f"trusted NUTS runs {100 * report.trusted_fraction:.0f}%; mean gap "
        f"{show(report.mean_gap, '+.4f')}, max gap {show(report.max_gap, '+.4f')}, "
        f"tolerances {report.tolerances}: {'PASS' if report.passed else 'FAIL'}"
    )


def plot_nll_by_context(report: GPNutsReport, path: str | Path) -> Path:
    """PNG of PFN, NUTS and ML-II NLL against the context size, one panel per d."""
    plt = pyplot()

    dims = list(dict.fromkeys(c.d for c in report.cells))
    fig, axes = plt.subplots(1, len(dims), figsize=(4.5 * len(dims), 4), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        cells = [c for c in report.cells if c.d == d]
        sizes = [c.n_ctx for c in cells]
        ax.plot(sizes, [c.nuts_nll for c in cells], "o-", label="GP, NUTS over hyperparameters")
        ml2 = [math.nan if c.ml2_nll is None else c.ml2_nll for c in cells]
        ax.plot(sizes, ml2, "^:", label="GP, ML-II")
        ax.plot(sizes, [c.pfn_nll for c in cells], "s--", label=f"PFN ({report.checkpoint})")
        ax.set(xscale="log", xlabel="context points", title=f"d = {d}")
    axes[0][0].set_ylabel("NLL per query point (nats)")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)
