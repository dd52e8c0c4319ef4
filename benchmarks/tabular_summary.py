"""Means of benchmarks/tabular.py's records over splits, sizes and tables, and their tables.

Records are dicts with ``dataset``, ``n_train``, ``method`` and one float per metric (NaN
where a method failed on a split). A cell is a (dataset, n_train) pair: its figure is the
mean over its splits. Per table, cells are averaged over sizes; per size (and over all
sizes), over tables, each cell with equal weight.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

__all__ = ["cell_means", "markdown", "per_table_rows", "render", "summary", "summary_rows",
           "table_means"]  # fmt: skip

TEXT_COLUMNS = ("method", "table", "dropped")  # left-aligned; the other columns hold numbers
CellKey = tuple[str, int, str]  # (dataset, n_train, method)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def cell_means(records: list[dict], metrics: tuple[str, ...]) -> dict[CellKey, dict[str, float]]:
    """Mean of every metric over the splits of each (dataset, n_train, method); NaN (failed
    splits) left out, and counted in ``failed``."""
    groups: dict[CellKey, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["n_train"], r["method"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = {m: _nanmean([r[m] for r in rs]) for m in metrics}
        out[key]["failed"] = sum(bool(r.get("failed")) for r in rs)
    return out


def table_means(
    means: dict[CellKey, dict[str, float]], metrics: tuple[str, ...]
) -> dict[tuple[str, str], dict[str, float]]:
    """(dataset, method) -> metric means over that dataset's sizes."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for (dataset, _, method), values in means.items():
        groups.setdefault((dataset, method), []).append(values)
    return {key: {m: _nanmean([v[m] for v in vs]) for m in metrics} for key, vs in groups.items()}


def summary(
    means: dict[CellKey, dict[str, float]], methods: tuple[str, ...], metrics: tuple[str, ...]
) -> dict[str, dict]:
    """Per size ("50", ...) and over all sizes ("all"): method -> metric means over cells."""
    sizes = sorted({n for _, n, _ in means})
    out: dict[str, dict] = {}
    for label, keep in [(str(n), [n]) for n in sizes] + [("all", sizes)]:
        out[label] = {}
        for method in methods:
            rows = [v for (_, n, m), v in means.items() if m == method and n in keep]
            out[label][method] = {m: _nanmean([r[m] for r in rows]) for m in metrics}
            out[label][method]["cells"] = len(rows)
    return out


def summary_rows(summ: dict[str, dict], columns: dict[str, str]) -> list[list[str]]:
    """Rows per size and method, then over all sizes (when there are several).

    `columns` maps a metric to its format, e.g. ``{"roc_auc": "{:.4f}"}``; seconds are
    shown in milliseconds.
    """
    shown = {size: v for size, v in summ.items() if size != "all" or len(summ) > 2}
    rows = []
    for size, by_method in shown.items():
        for method, v in by_method.items():
            cells = [
                fmt.format(1e3 * v[m] if m == "seconds" else v[m]) for m, fmt in columns.items()
            ]
            rows.append([size, method, *cells, str(v["cells"])])
    return rows


def per_table_rows(
    per_table: dict[tuple[str, str], dict[str, float]],
    methods: tuple[str, ...],
    metrics: tuple[str, ...],
) -> tuple[list[str], list[list[str]]]:
    """Headers and one row per table: each metric for each method, means over sizes."""
    headers = ["table", *(f"{metric} {method}" for metric in metrics for method in methods)]
    tables = list(dict.fromkeys(dataset for dataset, _ in per_table))
    rows = [
        [table, *(f"{per_table[(table, method)][metric]:.4f}" for metric in metrics
                  for method in methods)]
        for table in tables
    ]  # fmt: skip
    return headers, rows


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; text columns (method, table) left-aligned, numbers right-aligned."""
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def render(
    console: Console, title: str, headers: list[str], rows: list[list[str]], as_markdown: bool
) -> None:
    """Print a table as Markdown (with its title as a heading line) or as a rich table."""
    if as_markdown:
        console.print(f"\n{title}\n", markup=False, highlight=False)
        print(markdown(headers, rows))  # plain stdout: no wrapping of long lines
        return
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
