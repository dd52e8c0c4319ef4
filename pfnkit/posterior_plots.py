"""Contour plots of 2-D GMM priors and posteriors: prior, exact posterior, model posterior."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily

__all__ = ["plot_posterior_contours"]

GRID_POINTS = 160


def _density_grid(dist: MixtureSameFamily, xs: Tensor, ys: Tensor) -> Tensor:
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([gx, gy], dim=-1).to(dist.mean.dtype)
    return dist.log_prob(points).exp()


def plot_posterior_contours(
    panels: list[dict[str, object]], path: str | Path, *, title: str = ""
) -> Path:
    """One panel per task with contours of its prior, exact and model posteriors.

    Args:
        panels: per task a dict with "prior", "exact", "model" (2-D `MixtureSameFamily`
            with batch shape ()), "observations" ((N, 2) tensor, drawn if given) and
            "theta" (the true θ, drawn if given).
        path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    styles = {"prior": ("0.6", "dotted"), "exact": ("black", "solid"), "model": ("C3", "dashed")}
    for ax, panel in zip(axes[0], panels, strict=True):
        prior = panel["prior"]
        spread = 3 * prior.variance.sqrt().max()
        lo, hi = prior.mean - spread, prior.mean + spread
        xs = torch.linspace(float(lo[0]), float(hi[0]), GRID_POINTS, dtype=torch.float64)
        ys = torch.linspace(float(lo[1]), float(hi[1]), GRID_POINTS, dtype=torch.float64)
        for name, (color, style) in styles.items():
            density = _density_grid(panel[name], xs, ys)
            levels = density.max() * torch.tensor([0.05, 0.25, 0.6])
            ax.contour(xs, ys, density, levels=levels.tolist(), colors=color, linestyles=style)
            ax.plot([], [], color=color, linestyle=style, label=name)
        obs = panel.get("observations")
        if obs is not None and len(obs):
            ax.scatter(obs[:, 0], obs[:, 1], s=10, color="C0", alpha=0.6, label="observations")
        theta = panel.get("theta")
        if theta is not None:
            ax.scatter([float(theta[0])], [float(theta[1])], marker="*", s=120, color="k",
                       label="true θ")  # fmt: skip
        ax.set_xlabel("θ₁")
        ax.set_ylabel("θ₂")
        ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
