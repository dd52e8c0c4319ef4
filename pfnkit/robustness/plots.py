"""Plots of one attacked task: clean against attacked data and predictions, model beside exact.

- `plot_attacked_task`: a 1-D task; predictive mean and 90% band of the PFN and of an
  `ExactPredictive` (the exact GP, the exact Student-t process, ...), before and after each
  one's own worst-case context perturbation.
- `plot_attacked_posterior`: a 2-D posterior over θ; contours of the model's and of the
  exact posterior, before and after each one's own worst-case observation perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pfnkit.data import Batch
from pfnkit.figures import ContourPanel, plot_posterior_contours, pyplot, save_figure
from pfnkit.mixtures import mixture_task
from pfnkit.robustness.attacks import (
    ContextAttack,
    Predictor,
    attack_context,
    attack_observations,
)
from pfnkit.robustness.pgd import AttackConfig
from pfnkit.robustness.report import attack_seed

__all__ = ["Band", "BandFn", "ExactPredictive", "plot_attacked_posterior", "plot_attacked_task"]

GRID_POINTS = 300  # points of the x grid the predictive bands are drawn on

Band = tuple[Tensor, Tensor, Tensor]
"""Predictive mean (or location), 5% and 95% quantiles on a grid, each (G,)."""

BandFn = Callable[[Tensor, Tensor, Tensor], Band]
"""``(x_ctx_1ND, y_ctx_1N, grid_G) -> Band``: one task's predictive band on a 1-D grid."""


@dataclass(frozen=True)
class ExactPredictive:
    """An exact predictive that context attacks compare a PFN with, and how to draw it.

    Attributes:
        name: its panel's title, e.g. "exact GP".
        predict: the differentiable `Predictor` the attack perturbs the context of (float64).
        band: its mean and 90% band on a grid, for the plots.
    """

    name: str
    predict: Predictor
    band: BandFn


def _pfn_band(model: nn.Module, x_ctx_BND: Tensor, y_ctx_BN: Tensor, grid_G: Tensor) -> Band:
    with torch.no_grad():
        dist = model(x_ctx_BND, y_ctx_BN, grid_G.to(x_ctx_BND.dtype).reshape(1, -1, 1))
        q_G2 = dist.quantiles([0.05, 0.95])[0]
    return dist.mean[0], q_G2[:, 0], q_G2[:, 1]


def _draw_panel(
    ax: Any, clean: Batch, attack: ContextAttack, grid_G: Tensor, bands: dict[str, Band]
) -> None:
    """Clean and attacked context points, and predictive mean and 90% band before and after."""
    x = grid_G.numpy()
    for label, color in (("clean", "tab:blue"), ("attacked", "tab:red")):
        mean, low, high = (v.detach().double().numpy() for v in bands[label])
        ax.fill_between(x, low, high, color=color, alpha=0.15, label=f"{label}: 90% band")
        ax.plot(x, mean, color=color, label=f"{label}: mean")
    x0, y0 = clean.x_ctx[0, :, 0].double(), clean.y_ctx[0].double()
    x1, y1 = attack.x_ctx_BND[0, :, 0].double(), attack.y_ctx_BN[0].double()
    for xa, xb, ya, yb in zip(x0.tolist(), x1.tolist(), y0.tolist(), y1.tolist(), strict=True):
        ax.plot([xa, xb], [ya, yb], color="gray", lw=0.8)
    ax.scatter(x0.numpy(), y0.numpy(), color="black", s=14, zorder=3, label="clean context")
    ax.scatter(x1.numpy(), y1.numpy(), color="tab:red", marker="x", s=24, zorder=4,
               label="attacked context")  # fmt: skip
    ax.set(xlabel="x", ylabel="y")


def plot_attacked_task(
    model: nn.Module,
    task: Batch,
    exact: ExactPredictive,
    path: str | Path,
    *,
    eps: float,
    target: str = "y",
    config: AttackConfig | None = None,
    generator: torch.Generator,
    x_range: tuple[float, float] | None = None,
) -> Path:
    """PNG of one 1-D task attacked at radius ``eps``: the PFN (left), ``exact`` (right).

    Each panel shows the clean and the attacked context, and the predictive mean and 90%
    band before and after that predictor's own worst-case perturbation. The attacks run
    here (both from one seed drawn from ``generator``), so their KL can differ slightly
    from a report's value for the same task.

    Args:
        x_range: the x interval drawn; None spans the task's context inputs.
    """
    plt = pyplot()
    if task.batch_size != 1 or task.num_features != 1:
        raise ValueError("pass one task of a 1-D prior, e.g. batch.task(i)")
    low, high = x_range or (float(task.x_ctx.min()), float(task.x_ctx.max()))
    grid_G = torch.linspace(low, high, GRID_POINTS, dtype=torch.float64)
    seed = attack_seed(generator)
    model = model.eval()
    panels = (
        ("PFN", model, next(model.parameters()).dtype,
         lambda x, y: _pfn_band(model, x, y, grid_G)),
        (exact.name, exact.predict, torch.float64, lambda x, y: exact.band(x, y, grid_G)),
    )  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (name, predictor, dtype, band) in zip(axes, panels, strict=True):
        x_ctx, y_ctx, x_qry = (t.to(dtype) for t in (task.x_ctx, task.y_ctx, task.x_qry))
        (attack,) = attack_context(
            predictor, x_ctx, y_ctx, x_qry, [eps], target=target, config=config,
            generator=torch.Generator(x_ctx.device).manual_seed(seed),
        )  # fmt: skip
        bands = {"clean": band(x_ctx, y_ctx), "attacked": band(attack.x_ctx_BND, attack.y_ctx_BN)}
        _draw_panel(ax, task, attack, grid_G, bands)
        ax.set_title(f"{name}: KL {float(attack.kl_B[0]):.3g} at eps={eps:g} (target {target})")
    axes[1].legend(loc="best", fontsize=7)
    return save_figure(fig, path)


def plot_attacked_posterior(
    posterior_fns: tuple[Callable[[Tensor], Any], Callable[[Tensor], Any]],
    obs_1ND: Tensor,
    path: str | Path,
    *,
    eps: float,
    config: AttackConfig,
    generator: torch.Generator,
    title: str = "",
) -> Path:
    """PNG of one task's 2-D posterior attacked at ``eps``: model (left), exact (right).

    Each panel shows the clean and attacked observations and posterior contours.
    """
    panels = []
    for label, fn in zip(("model", "exact"), posterior_fns, strict=True):
        attack = attack_observations(fn, obs_1ND, [eps], config=config, generator=generator)[-1]
        with torch.no_grad():
            clean, attacked = mixture_task(fn(obs_1ND), 0), mixture_task(fn(attack.obs_BND), 0)
        panels.append(ContourPanel(
            [("clean posterior", clean), ("attacked posterior", attacked)],
            [("clean observations", obs_1ND[0]), ("attacked observations", attack.obs_BND[0])],
            title=f"{label}: KL {float(attack.kl_B[0]):.3g} at eps={eps:g}",
        ))  # fmt: skip
    return plot_posterior_contours(panels, path, title=title)
