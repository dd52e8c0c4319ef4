"""The per-table wins figure of benchmarks/tabular.py: PFN against each baseline, per table.

One row of panels per task, one panel per metric (ROC AUC and log loss for
classification; NLL and RMSE, in units of the training split's target sd, for
regression), one line per table and one marker per baseline at the difference of the
PFN's mean (over the table's sizes and splits) and the baseline's. Each panel is oriented
so that the PFN wins right of the zero line, and its legend counts the wins. NLL and log
loss, whose differences span orders of magnitude where an ML-II fit collapses, are on a
symmetric log axis (linear within ±0.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfnkit.figures import pyplot, save_figure

__all__ = ["PANELS", "plot_wins"]

# task -> (metric, label, +1 if higher is better else -1, symmetric log axis)
PANELS = {
    "classification": [("roc_auc", "ROC AUC", 1, False), ("log_loss", "log loss", -1, True)],
    "regression": [("nll", "NLL of y / sd", -1, True), ("rmse", "RMSE / sd", -1, False)],
}
MARKERS = "osD^v<>"
LINEAR_WITHIN = 0.1  # the symmetric log axes are linear in [-0.1, 0.1]


def _panel(ax: Any, per_table: dict, panel: tuple, baselines: list[str], labels: bool) -> None:
    metric, label, sign, symlog = panel
    tables = sorted({t for t, _ in per_table}, reverse=True)
    rows = np.arange(len(tables))
    for k, baseline in enumerate(baselines):
        gains = np.array([sign * (per_table[(t, "PFN")][metric] - per_table[(t, baseline)][metric])
                          for t in tables])  # fmt: skip
        offset = (k - (len(baselines) - 1) / 2) * 0.18
        wins = f"{baseline}: PFN wins {int(np.sum(gains >= 0))}/{len(tables)}"
        ax.scatter(gains, rows + offset, marker=MARKERS[k % len(MARKERS)], s=16, label=wins)
    if symlog:
        ax.set_xscale("symlog", linthresh=LINEAR_WITHIN)
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_yticks(rows, tables if labels else [], fontsize=7)
    ax.set_ylim(-0.6, len(tables) - 0.4)
    ax.grid(axis="x", lw=0.3)
    difference = "PFN − baseline" if sign > 0 else "baseline − PFN"
    ax.set_xlabel(f"{label}: {difference}   (right of 0: PFN better)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(baselines),
              frameon=False, handletextpad=0.1, columnspacing=0.8)  # fmt: skip


def plot_wins(results: dict[str, dict], path: str) -> str:
    """Draw the wins figure of the tasks in `results` (task -> {"per_table": {(table,
    method): metrics}, "methods": names}) and save it to `path`."""
    tasks = [task for task in PANELS if task in results]
    heights = [len({t for t, _ in results[task]["per_table"]}) + 3 for task in tasks]
    plt = pyplot()
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 0.8 + 0.2 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for row, task in enumerate(tasks):
        baselines = [m for m in results[task]["methods"] if m != "PFN"]
        for col, panel in enumerate(PANELS[task]):
            _panel(axes[row, col], results[task]["per_table"], panel, baselines, col == 0)
        axes[row, 0].set_ylabel(task, fontsize=9)
    fig.tight_layout()
    return str(save_figure(fig, path))
