"""Contour plots of 2-D posteriors: prior vs exact vs model, or clean vs attacked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily

from pfnkit.data import Batch
from pfnkit.figures import pyplot, save_figure
from pfnkit.mixtures import mixture_task

__all__ = ["ContourPanel", "plot_dt_posteriors", "plot_posterior_contours"]

GRID_POINTS = 160
_STYLES = [("0.6", "dotted"), ("black", "solid"), ("C3", "dashed"), ("C2", "dashdot")]
_MARKERS = [("C0", "o"), ("C1", "x")]


@dataclass
class ContourPanel:
    """One subplot: density contours of each named distribution, plus named point sets.

    The plotting window spans the first distribution ± 3 of its largest std.
    """

    curves: list[tuple[str, MixtureSameFamily]]
    points: list[tuple[str, Tensor]] = field(default_factory=list)
    theta: Tensor | None = None
    title: str = ""


def _density_grid(dist: MixtureSameFamily, xs: Tensor, ys: Tensor) -> Tensor:
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx, gy], dim=-1).to(dist.mean.dtype)
    return dist.log_prob(points).exp()


def _draw(ax: object, panel: ContourPanel) -> None:
    first = panel.curves[0][1]
    spread = 3 * first.variance.sqrt().max()
    lo, hi = first.mean - spread, first.mean + spread
    xs = torch.linspace(float(lo[0]), float(hi[0]), GRID_POINTS, dtype=torch.float64)
    ys = torch.linspace(float(lo[1]), float(hi[1]), GRID_POINTS, dtype=torch.float64)
    for (name, dist), (color, style) in zip(panel.curves, _STYLES, strict=False):
        density = _density_grid(dist, xs, ys)
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
        _draw(ax, panel)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def plot_dt_posteriors(
    model: torch.nn.Module, tasks: list[Batch], obs_cov: Tensor, path: str | Path, *,
    title: str = "",
) -> Path:  # fmt: skip
    """Prior, exact conjugate posterior and Distribution Transformer posterior, one task each.

    Args:
        model: a Distribution Transformer.
        tasks: one-task batches of a GMM prior with the Gaussian location simulator.
        obs_cov: (d, d) observation covariance of that simulator.
    """
    from pfnkit.models.distribution_transformer import gmm
    from pfnkit.reference.analytic import conjugate_gmm_posterior

    model = model.double().eval()
    panels = []
    for task in tasks:
        batch = task.to(torch.float64)
        m = batch.meta
        parts = (m["prior_logits"], m["prior_means"], m["prior_scale_tril"])
        with torch.no_grad():
            dt = model(*parts, batch.x_ctx)
        exact = conjugate_gmm_posterior(*parts, batch.x_ctx, obs_cov.double())
        curves = [("prior", gmm(*(t[0] for t in parts))), ("exact", mixture_task(exact, 0)),
                  ("model", mixture_task(dt, 0))]  # fmt: skip
        panels.append(ContourPanel(curves, [("observations", batch.x_ctx[0])], m["theta"][0]))
    return plot_posterior_contours(panels, path, title=title)
