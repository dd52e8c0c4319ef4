"""Summaries of benchmarks/bo.py: regret at budget fractions, mean ranks, step times, tables.

`Results` holds, per (function, method), the simple regret after every evaluation for
every seed, (seeds, budget), and the optimiser's own seconds per evaluation. Everything
printed is derived here: medians and quartiles of regret across seeds at 25%, 50% and
100% of the budget; the rank of each method among all methods per (function, seed) at
the final budget (ties share the average rank; lower regret ranks better), averaged over
functions and seeds; the mean step time after the initial design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.table import Table
from scipy.stats import rankdata

__all__ = ["FRACTIONS", "Results", "markdown_tables", "rank_table", "regret_table", "summarize"]

FRACTIONS = (0.25, 0.5, 1.0)


@dataclass
class Results:
    """Regret curves and step times of every run.

    Attributes:
        budget: evaluations per run.
        n_init: initial-design size of the model-based methods, per function.
        regret: (function, method) -> (seeds, budget) simple regret after each evaluation.
        step_seconds: (function, method) -> (seeds, budget) own seconds per evaluation.
    """

    budget: int
    n_init: dict[str, int] = field(default_factory=dict)
    regret: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    step_seconds: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def functions(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.regret))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for _, m in self.regret))


def fraction_index(budget: int, fraction: float) -> int:
    """Index of the evaluation at `fraction` of the budget (1-based count ceil(f * budget))."""
    return max(1, math.ceil(fraction * budget)) - 1


def mean_ranks(results: Results) -> dict[str, float]:
    """Mean rank of each method at the final budget over all (function, seed) pairs."""
    methods, ranks = results.methods, []
    for function in results.functions:
        final_SM = np.stack([results.regret[function, m][:, -1] for m in methods], axis=1)
        ranks.append(rankdata(final_SM, axis=1))  # average ranks for ties
    return dict(zip(methods, np.concatenate(ranks).mean(axis=0).tolist(), strict=True))


def mean_step_seconds(results: Results, function: str, method: str) -> float:
    """Mean own seconds per evaluation after the initial design (all seeds)."""
    seconds = results.step_seconds[function, method]
    return float(seconds[:, results.n_init[function] :].mean())


def summarize(results: Results) -> dict[str, Any]:
    """Plain-data summary: per function and method, regret quartiles at each fraction."""
    cells = {}
    for (function, method), regret_SB in results.regret.items():
        at = {}
        for fraction in FRACTIONS:
            column = regret_SB[:, fraction_index(results.budget, fraction)]
            q1, median, q3 = np.quantile(column, [0.25, 0.5, 0.75])
            at[f"{fraction:g}"] = {"median": median, "q1": q1, "q3": q3, "mean": column.mean()}
        cells.setdefault(function, {})[method] = {
            "regret": at,
            "step_seconds": mean_step_seconds(results, function, method),
            "final_regret_per_seed": regret_SB[:, -1].tolist(),
        }
    overall = {
        method: float(np.mean([mean_step_seconds(results, f, method) for f in results.functions]))
        for method in results.methods
    }
    return {
        "budget": results.budget,
        "n_init": results.n_init,
        "fractions": list(FRACTIONS),
        "functions": _floats(cells),
        "mean_rank": mean_ranks(results),
        "mean_step_seconds": overall,
    }


def _floats(value: Any) -> Any:
    """numpy scalars to float, recursively, for JSON."""
    if isinstance(value, dict):
        return {key: _floats(item) for key, item in value.items()}
    return float(value) if isinstance(value, np.floating) else value


def _cell(summary: dict[str, Any], function: str, method: str) -> list[str]:
    cell = summary["functions"][function][method]
    regrets = [f"{cell['regret'][f'{f:g}']['median']:.3g}" for f in FRACTIONS]
    return [*regrets, f"{cell['step_seconds'] * 1e3:.1f}"]


def _best_final(summary: dict[str, Any], function: str) -> float:
    return min(cell["regret"]["1"]["median"] for cell in summary["functions"][function].values())


def regret_table(summary: dict[str, Any]) -> Table:
    """Median simple regret at 25/50/100% of the budget and ms per step, per function."""
    budget = summary["budget"]
    table = Table(title=f"Simple regret (median over seeds), budget {budget} evaluations")
    for name in ("function", "method", *(f"@{int(f * 100)}%" for f in FRACTIONS), "ms/step"):
        table.add_column(name, justify="left" if name in ("function", "method") else "right")
    for function, methods in summary["functions"].items():
        best = _best_final(summary, function)
        for i, method in enumerate(methods):
            row = _cell(summary, function, method)
            if methods[method]["regret"]["1"]["median"] == best:
                row[2] = f"[bold]{row[2]}[/bold]"
            table.add_row(function if i == 0 else "", method, *row)
        table.add_section()
    return table


def rank_table(summary: dict[str, Any]) -> Table:
    """Mean rank at the final budget and mean ms per step, per method."""
    table = Table(title="Mean rank at the final budget (1 = best) over functions x seeds")
    for name in ("method", "mean rank", "mean ms/step"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for method, rank in sorted(summary["mean_rank"].items(), key=lambda item: item[1]):
        seconds = summary["mean_step_seconds"][method]
        table.add_row(method, f"{rank:.2f}", f"{seconds * 1e3:.1f}")
    return table


def markdown_tables(summary: dict[str, Any]) -> str:
    """The two tables as GitHub markdown (the README's form)."""
    fractions = [f"regret @{int(f * 100)}%" for f in FRACTIONS]
    lines = [
        "| function | method | " + " | ".join(fractions) + " | ms/step |",
        "|---|---|" + "---:|" * (len(FRACTIONS) + 1),
    ]
    for function, methods in summary["functions"].items():
        best = _best_final(summary, function)
        for method in methods:
            row = _cell(summary, function, method)
            if methods[method]["regret"]["1"]["median"] == best:
                row[2] = f"**{row[2]}**"
            lines.append(f"| {function} | {method} | " + " | ".join(row) + " |")
    lines += ["", "| method | mean rank | mean ms/step |", "|---|---:|---:|"]
    for method, rank in sorted(summary["mean_rank"].items(), key=lambda item: item[1]):
        seconds = summary["mean_step_seconds"][method]
        lines.append(f"| {method} | {rank:.2f} | {seconds * 1e3:.1f} |")
    return "\n".join(lines)
