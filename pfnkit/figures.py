"""Headless matplotlib for the report plots: pyplot, writing a PNG, shared plotting primitives.

Primitives shared by several reports live here: `ContourPanel` and
`plot_posterior_contours` draw density contours of 2-D posteriors (prior vs exact vs
model in validation, clean vs attacked in robustness).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily

__all__ = ["ContourPanel", "density_grid", "plot_posterior_contours", "pyplot", "save_figure"]

GRID_POINTS = 160  # contour grid points per axis
_STYLES = [("0.6", "dotted"), ("black", "solid"), ("C3", "dashed"), ("C2", "dashdot")]
_MARKERS = [("C0", "o"), ("C1", "x")]


def pyplot() -> Any:
    """`matplotlib.pyplot` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (parent folders created), close it, return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


@dataclass
class ContourPanel:
    """One subplot: density contours of each named distribution, plus named point sets.

    The plotting window spans the first distribution ± 3 of its largest std.
    """

    curves: list[tuple[str, MixtureSameFamily]]
    points: list[tuple[str, Tensor]] = field(default_factory=list)
    theta: Tensor | None = None
    title: str = ""


def density_grid(dist: MixtureSameFamily, xs: Tensor, ys: Tensor) -> Tensor:
    """Density of a 2-D distribution on the grid xs × ys, shape (len(ys), len(xs))."""
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx, gy], dim=-1).to(dist.mean.dtype)
    return dist.log_prob(points).exp()


def _draw_panel(ax: Any, panel: ContourPanel) -> None:
    first = panel.curves[0][1]
    spread = 3 * first.variance.sqrt().max()
    lo, hi = first.mean - spread, first.mean + spread
    xs = torch.linspace(float(lo[0]), float(hi[0]), GRID_POINTS, dtype=torch.float64)
    ys = torch.linspace(float(lo[1]), float(hi[1]), GRID_POINTS, dtype=torch.float64)
    for (name, dist), (color, style) in zip(panel.curves, _STYLES, strict=False):
        density = density_grid(dist, xs, ys)
        levels = density.max() * torch.tensor([0.05, 0.25, 0.6])
        ax.contour(xs, ys, density, levels=levels.tolist(), colors=color, linestyles=style)
        ax.plot([], [], color=color, linestyle=style, label=name)
    for (name, pts), (color, marker) in zip(panel.points, _MARKERS, strict=False):
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=14, color=color, marker=marker, alpha=0.7,
                       label=name)  # fmt: skip
    if panel.theta is not None:
        ax.scatter([float(panel.theta[0])], [float(panel.theta[1])], marker="*", s=120,
                   color="k", label="true θ")  # fmt: skip
    ax.set_xlabel("θ₁")
    ax.set_ylabel("θ₂")
    ax.set_title(panel.title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


def plot_posterior_contours(
    panels: list[ContourPanel], path: str | Path, *, title: str = ""
) -> Path:
    """Write a PNG with one contour subplot per panel; return its path."""
    plt = pyplot()

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw_panel(ax, panel)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)
