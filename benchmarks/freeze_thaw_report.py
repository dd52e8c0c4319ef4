"""Regret curves, their areas, and the tables and figure of the freeze-thaw benchmark.

Regret of a run after e paid epochs: the incumbent (lowest error observed so far, at any
epoch) minus the lowest final-epoch error in the table, min_i errors[i, T]. It can dip
below 0 when some curve's minimum lies before its last epoch. The area of a run is its
mean regret over e = 1..budget (the anytime curve's area divided by the budget, so it reads
in error units); a method's figure is the mean over seeds with its standard error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lc_data import LookupBenchmark

__all__ = ["markdown_table", "plot_regret", "regret_curve", "summarise"]


def regret_curve(incumbent: Sequence[float], bench: LookupBenchmark, budget: int) -> np.ndarray:
    """Regret after each of `budget` epochs; a run that ended early keeps its last value."""
    values = np.asarray(incumbent, dtype=float)
    if len(values) == 0:
        raise ValueError("a run paid no epoch")
    padded = np.concatenate([values, np.full(max(0, budget - len(values)), values[-1])])
    return padded[:budget] - float(bench.errors[:, -1].min())


def summarise(curves: Mapping[str, list[np.ndarray]], seconds: Mapping[str, list[float]]) -> dict:
    """Per method: area mean and stderr over seeds, final regret, seconds per decision."""
    out = {}
    for method, runs in curves.items():
        areas = np.array([curve.mean() for curve in runs])
        finals = np.array([curve[-1] for curve in runs])
        times = seconds.get(method, [])
        out[method] = {
            "area": float(areas.mean()),
            "area_stderr": float(areas.std(ddof=1) / np.sqrt(len(areas)))
            if len(areas) > 1
            else 0.0,
            "final_regret": float(finals.mean()),
            "seconds_per_decision": float(np.mean(times)) if times else None,
            "seeds": len(runs),
        }
    return out


def markdown_table(results: Mapping[str, Any]) -> str:
    """One row per benchmark, one column per method: area ± stderr (final regret).

    The caption under the table says which hyperparameters freeze-thaw ran on (in-sample,
    fitted on these tables, or leave-one-table-out), and freeze-thaw-pfn's checkpoint.
    """
    benches = results["benchmarks"]
    methods = list(next(iter(benches.values()))["summary"])
    lines = [
        "| benchmark | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 1) + "|",
    ]
    for name, data in benches.items():
        cells = [f"{s['area']:.4f} ± {s['area_stderr']:.4f} ({s['final_regret']:.4f})"
                 for s in data["summary"].values()]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = {m: np.mean([b["summary"][m]["area"] for b in benches.values()]) for m in methods}
    lines.append("| mean area | " + " | ".join(f"{means[m]:.4f}" for m in methods) + " |")
    timed = {m: [b["summary"][m]["seconds_per_decision"] for b in benches.values()]
             for m in methods}  # fmt: skip
    cells = ["-" if None in v else f"{1e3 * np.mean(v):.1f}" for v in timed.values()]
    lines.append("| ms per decision | " + " | ".join(cells) + " |")
    if "hyperparameters" in results:
        lines.append(f"\nfreeze-thaw on {results['hyperparameters']}.")
    if "checkpoint" in results:
        lines.append(f"freeze-thaw-pfn on checkpoint {results['checkpoint']['name']!r}.")
    return "\n".join(lines)


def plot_regret(results: Mapping[str, Any], curves: Mapping, path: Path) -> Path:
    """Mean regret against epochs spent, one panel per benchmark, one line per method."""
    from pfnkit.figures import pyplot, save_figure

    plt = pyplot()
    names = list(curves)
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.5 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for method, runs in curves[name].items():
            mean = np.mean(runs, axis=0)
            ax.plot(np.arange(1, len(mean) + 1), mean, label=method)
        ax.set(title=name, xlabel="epochs spent", ylabel="regret", yscale="symlog")
        ax.set_yscale("symlog", linthresh=1e-2)
    axes.flat[0].legend()
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"freeze-thaw benchmark: {results['config']['seeds']} seeds")
    return save_figure(fig, path)
