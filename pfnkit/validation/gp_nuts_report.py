"""Render a GP-vs-NUTS validation report: a rich table and NLL-by-context-size panels."""

from __future__ import annotations

import math
from pathlib import Path

from pfnkit.figures import pyplot, save_figure
from pfnkit.validation.gp_nuts import GPNutsReport

__all__ = ["plot_nll_by_context", "print_gp_nuts_table"]

_NLL_LINEAR = 3.0  # nats: the plot's y axes are linear within ± these, logarithmic beyond
_GAP_LINEAR = 1.0


def print_gp_nuts_table(report: GPNutsReport) -> None:
    """Print one row per cell, the NUTS budget and the verdict with rich."""
    from rich.console import Console
    from rich.table import Table

    pct = round(100 * report.config.level)
    table = Table(
        title=f"{report.checkpoint} vs NUTS-marginalised GP and ML-II ({report.config.n_tasks} "
        f"tasks per cell, NUTS on the first {report.config.nuts_tasks}; NLL in nats per query "
        f"point; {pct}% interval coverage)"
    )
    columns = ("d", "n_ctx", "NUTS trusted", "PFN NLL", "NUTS NLL", "ML-II NLL",
               "PFN - NUTS", "PFN - ML-II", "cov PFN/NUTS/ML-II", "PFN ms", "NUTS s",
               "ML-II s", "speed-up")  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right")
    show = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    pm = lambda v, e: "-" if v is None else f"{v:+.3f} ± {e or 0:.3f}"  # noqa: E731
    for c in report.cells:
        cov = "/".join(show(v and 100 * v, ".0f")
                       for v in (c.pfn_coverage, c.nuts_coverage, c.ml2_coverage))  # fmt: skip
        table.add_row(
            str(c.d), str(c.n_ctx), f"{round(c.trusted_fraction * c.nuts_tasks)}/{c.nuts_tasks}",
            f"{c.pfn_nll:.3f}", f"{c.nuts_nll:.3f}", show(c.ml2_nll, ".3f"),
            pm(c.gap, c.gap_stderr), pm(c.ml2_gap, c.ml2_gap_stderr), cov,
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
    console.print(
        f"PFN - ML-II NLL averaged over the cells with n_ctx <= 20: "
        f"{show(report.ml2_gap(20), '+.4f')} (negative: the PFN is better)"
    )


def plot_nll_by_context(report: GPNutsReport, path: str | Path) -> Path:
    """PNG, one column per d: NLL of PFN, NUTS and ML-II against the context size (top), and
    the paired differences PFN - NUTS and PFN - ML-II with standard errors (bottom)."""
    plt = pyplot()

    dims = list(dict.fromkeys(c.d for c in report.cells))
    fig, axes = plt.subplots(2, len(dims), figsize=(4.5 * len(dims), 7), squeeze=False,
                             sharex=True)  # fmt: skip
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    k, n = report.config.nuts_tasks, report.config.n_tasks
    for top, bottom, d in zip(axes[0], axes[1], dims, strict=True):
        cells = [c for c in report.cells if c.d == d]
        sizes = [c.n_ctx for c in cells]
        top.plot(sizes, [c.nuts_nll for c in cells], "o-",
                 label=f"GP, NUTS over hyperparameters ({k} tasks)")  # fmt: skip
        top.plot(sizes, [nan(c.ml2_nll) for c in cells], "^:", label=f"GP, ML-II ({n} tasks)")
        top.plot(sizes, [c.pfn_nll for c in cells], "s--",
                 label=f"PFN ({report.checkpoint}, {n} tasks)")  # fmt: skip
        # symlog: linear where the NLLs and gaps live, logarithmic for ML-II's blow-ups on
        # tiny contexts (hundreds of nats), which would flatten everything else
        top.set(xscale="log", title=f"d = {d}")
        top.set_yscale("symlog", linthresh=_NLL_LINEAR)
        for label, fmt, mean, err in (
            ("PFN - NUTS (trusted runs)", "o-", "gap", "gap_stderr"),
            ("PFN - ML-II", "^:", "ml2_gap", "ml2_gap_stderr"),
        ):
            bottom.errorbar(sizes, [nan(getattr(c, mean)) for c in cells],
                            yerr=[nan(getattr(c, err)) for c in cells], fmt=fmt, capsize=3,
                            label=label)  # fmt: skip
        bottom.axhline(0.0, color="grey", lw=0.8)
        bottom.set(xscale="log", xlabel="context points")
        bottom.set_yscale("symlog", linthresh=_GAP_LINEAR)
    axes[0][0].set_ylabel("NLL per query point (nats)")
    axes[1][0].set_ylabel("paired NLL difference (nats)")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    return save_figure(fig, path)
