"""Tables, verdicts and the figure of the heavy-tails study (benchmarks/heavy_tails.py).

Tables are built as (headers, rows) of strings, then rendered either as rich tables or as
Markdown. A verdict compares the heavy-tailed predictor with its Gaussian counterpart on
the same tasks (paired differences of per-task NLL): "helps" when the Student-t one is
lower by more than VERDICT_Z standard errors, "costs" when higher by more, else "tie".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pfnkit.figures import pyplot, save_figure

__all__ = [
    "LABELS",
    "VERDICT_Z",
    "attack_rows",
    "build_table",
    "markdown",
    "plot_study",
    "render",
    "results_rows",
    "verdict",
    "verdict_rows",
]

VERDICT_Z = 2.0  # a verdict other than "tie" needs |paired NLL difference| > VERDICT_Z · se
LABELS = {"tp-pfn": "Student-t PFN", "gp-pfn": "Gaussian PFN", "exact-tp": "exact TP",
          "exact-gp": "exact GP"}  # fmt: skip
_TEXT_COLUMNS = ("scenario", "view", "tasks")


def _pm(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['se']:.{digits}f}"


def results_rows(cells: list[dict], predictors: tuple[str, ...]) -> tuple[list, list]:
    """One row per (scenario, n): NLL ± se and 90% coverage of each predictor."""
    headers = ["scenario", "n"]
    for name in predictors:
        headers += [f"{LABELS[name]} NLL", f"{LABELS[name]} cov90"]
    rows = []
    for cell in cells:
        row = [cell["label"], str(cell["n_ctx"])]
        for name in predictors:
            scores = cell["predictors"][name]
            row += [_pm(scores["nll"]), f"{scores['coverage90']['mean']:.3f}"]
        rows.append(row)
    return headers, rows


def verdict(diff: dict[str, float]) -> str:
    """The verdict on a paired NLL difference (Student-t minus Gaussian): helps, costs, tie."""
    if diff["mean"] < -VERDICT_Z * diff["se"]:
        return "helps"
    if diff["mean"] > VERDICT_Z * diff["se"]:
        return "costs"
    return "tie"


def verdict_rows(cells: list[dict]) -> tuple[list, list]:
    """Paired NLL differences, Student-t minus Gaussian, for the PFNs and the exact pair."""
    headers = ["scenario", "n", "PFN: t − Gauss", "verdict", "exact: TP − GP", "verdict",
               "t PFN − exact TP", "Gauss PFN − exact GP"]  # fmt: skip
    rows = []
    for cell in cells:
        d = cell["paired"]
        rows.append([
            cell["label"], str(cell["n_ctx"]),
            _pm(d["pfn_t_minus_gauss"]), verdict(d["pfn_t_minus_gauss"]),
            _pm(d["exact_tp_minus_gp"]), verdict(d["exact_tp_minus_gp"]),
            _pm(d["tp_pfn_minus_exact_tp"]), _pm(d["gp_pfn_minus_exact_gp"]),
        ])  # fmt: skip
    return headers, rows


def attack_rows(attacks: dict[str, Any]) -> tuple[list, list]:
    """One row per (view, ε): mean worst-case KL of the attacked pair and their ratio."""
    headers = ["view", "tasks", "eps", "first mean KL", "second mean KL", "ratio",
               "median task ratio"]  # fmt: skip
    show = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rows = []
    for view in attacks["views"]:
        for r in view["results"]:
            rows.append([view["label"], view["tasks"], f"{r['eps']:g}", show(r["first_mean"]),
                         show(r["second_mean"]), show(r["ratio"]),
                         show(r["median_task_ratio"])])  # fmt: skip
    return headers, rows


def build_table(title: str, headers: list[str], rows: list[list[str]], caption: str = "") -> Table:
    """A rich table of string rows; text columns left, numbers right."""
    table = Table(title=title, caption=caption or None)
    for header in headers:
        table.add_column(header, justify="left" if header in _TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; text columns left-aligned, numbers right-aligned."""
    align = ["---" if h in _TEXT_COLUMNS else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def render(console: Console, title: str, table: tuple[list, list], caption: str,
           as_markdown: bool) -> None:  # fmt: skip
    """Print one table as Markdown (title and caption as plain lines) or as a rich table."""
    headers, rows = table
    if as_markdown:
        console.print(f"\n{title}\n", markup=False, highlight=False)
        print(markdown(headers, rows))  # plain stdout: no wrapping of long lines
        if caption:
            console.print(f"\n{caption}", markup=False, highlight=False)
        return
    console.print(build_table(title, headers, rows, caption))


def plot_study(cells: list[dict], predictors: tuple[str, ...], path: str | Path) -> Path:
    """NLL (top, ± one standard error) and 90% coverage (bottom) by context size, one column
    per scenario, one line per predictor."""
    plt = pyplot()
    scenarios = list(dict.fromkeys(cell["scenario"] for cell in cells))
    fig, axes = plt.subplots(2, len(scenarios), figsize=(3.4 * len(scenarios), 6.4),
                             squeeze=False)  # fmt: skip
    for j, name in enumerate(scenarios):
        mine = [cell for cell in cells if cell["scenario"] == name]
        sizes = [cell["n_ctx"] for cell in mine]
        for k, predictor in enumerate(predictors):
            nll = [cell["predictors"][predictor]["nll"] for cell in mine]
            cov = [cell["predictors"][predictor]["coverage90"]["mean"] for cell in mine]
            shifted = [n * (1 + 0.04 * (k - 1.5)) for n in sizes]  # keep error bars apart
            axes[0, j].errorbar(shifted, [s["mean"] for s in nll], yerr=[s["se"] for s in nll],
                                marker="o", ms=3, capsize=2, label=LABELS[predictor])  # fmt: skip
            axes[1, j].plot(shifted, cov, marker="o", ms=3)
        axes[0, j].set_title(mine[0]["label"], fontsize=9)
        axes[1, j].axhline(0.9, color="gray", lw=0.8, ls="--")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
        axes[1, j].set_xlabel("context size n")
    axes[0, 0].set_ylabel("NLL per query point")
    axes[1, 0].set_ylabel("90% interval coverage")
    axes[0, 0].legend(fontsize=7)
    return save_figure(fig, path)
