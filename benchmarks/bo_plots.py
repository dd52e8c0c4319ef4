"""The figure of benchmarks/bo.py: simple regret against evaluations, one panel per function."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from bo_report import Results

from pfnkit.figures import pyplot, save_figure

__all__ = ["REGRET_FLOOR", "plot_regret"]

REGRET_FLOOR = 1e-8  # regrets below this (the float precision of the listed minima) are drawn at it
_COLOURS = {"pfnkit": "C3", "botorch": "C0", "optuna": "C2", "random": "0.5"}


def plot_regret(results: Results, path: str | Path) -> Path:
    """Median (line) and quartiles (band) of log10 simple regret across seeds, per function."""
    plt = pyplot()
    functions = results.functions
    columns = min(5, len(functions))
    rows = math.ceil(len(functions) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
    evaluations = np.arange(1, results.budget + 1)
    for ax, function in zip(axes.flat, functions, strict=False):
        for method in results.methods:
            log_regret = np.log10(np.maximum(results.regret[function, method], REGRET_FLOOR))
            q1, median, q3 = np.quantile(log_regret, [0.25, 0.5, 0.75], axis=0)
            colour = _COLOURS.get(method)
            ax.plot(evaluations, median, color=colour, label=method, lw=1.5)
            ax.fill_between(evaluations, q1, q3, color=colour, alpha=0.2, lw=0)
        ax.axvline(results.n_init[function] + 0.5, color="0.8", lw=0.8, ls=":")
        ax.set_title(function, fontsize=10)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("log10 simple regret")
    for ax in list(axes.flat)[len(functions) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    return save_figure(fig, path)
