"""Render a BNN-classifier-vs-NUTS report: a rich table, NLL by context size, NLL vs time."""

from __future__ import annotations

from pathlib import Path

from pfnkit.validation_nuts_bnn import GATED_ON, BNNNutsReport

__all__ = ["plot_bnn_nuts", "print_bnn_nuts_table"]


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
        gap = "-" if c.gap is None else f"{c.gap:+.4f} ± {c.gap_stderr or 0:.4f}"
        table.add_row(
            str(c.n_ctx), f"{100 * c.trusted_fraction:.0f}%", f"{c.pfn_nll:.4f}",
            f"{c.nuts_nll:.4f}", f"{c.chain_nll_spread:.4f}", gap,
            f"{100 * c.pfn_accuracy:.1f}/{100 * c.nuts_accuracy:.1f}",
            f"{1e3 * c.pfn_seconds:.1f}", f"{c.nuts_seconds:.1f}", f"{c.speed_ratio:.0f}x",
        )  # fmt: skip
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(
        f"NUTS budget: {report.config.nuts.to_dict()}; gated on "
        f"{GATED_ON}. 'chain spread': mean over tasks of max - min of the "
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
