"""PNG figures of validation reports (headless matplotlib via `pfnkit.figures`).

Report plots take a report's plain data, ``report.to_dict()``, as the tables do, so this
module imports no validator module. Plots that draw the model itself (predictive bands)
take the model and the prior.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pfnkit.data import Batch, GPRegressionPrior
from pfnkit.figures import ContourPanel, plot_posterior_contours, pyplot, save_figure
from pfnkit.mixtures import mixture_task
from pfnkit.models.distribution_transformer import gmm
from pfnkit.reference.analytic import conjugate_gmm_posterior
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive

__all__ = [
    "plot_bnn_nuts",
    "plot_dt_posteriors",
    "plot_gp_bands",
    "plot_nll_by_context",
    "plot_nll_by_size",
]

_NLL_LINEAR = 3.0  # nats: gp-nuts y axes are linear within ± these, logarithmic beyond
_GAP_LINEAR = 1.0


def plot_gp_bands(
    model: nn.Module,
    prior: GPRegressionPrior,
    *,
    out_dir: str | Path,
    n_ctx_sizes: Sequence[int] = (3, 10, 30),
    x_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 777,
) -> list[Path]:
    """PNGs of PFN against exact-GP predictive means and 90% bands on three 1-D tasks."""
    plt = pyplot()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    grid = torch.linspace(*x_range, 400).reshape(1, -1, 1)
    paths = []
    for n_ctx in n_ctx_sizes:
        batch = prior.sample(1, n_ctx, 1, generator=generator)
        if batch.num_features != 1:
            raise ValueError("predictive-band plots need a 1-D prior")
        with torch.inference_mode():
            pfn = model(batch.x_ctx, batch.y_ctx, grid.to(batch.x_ctx.dtype))
        exact = exact_gp_predictive(
            batch.x_ctx[0].double(),
            batch.y_ctx[0].double(),
            grid[0].double(),
            GPHyperparameters(**prior.gp_hyperparameters(batch)),
        ).to_distribution()
        x = grid[0, :, 0].numpy()
        q = torch.tensor([0.05, 0.95])
        pfn_q = pfn.quantiles(q)[0].numpy()
        exact_q = exact.icdf(q.double().reshape(2, 1)).numpy()
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.fill_between(
            x, exact_q[0], exact_q[1], color="tab:blue", alpha=0.2, label="exact GP 90%"
        )
        ax.plot(x, exact.mean.numpy(), color="tab:blue", label="exact GP mean")
        ax.plot(x, pfn_q[:, 0], color="tab:orange", ls="--", label="PFN 90%")
        ax.plot(x, pfn_q[:, 1], color="tab:orange", ls="--")
        ax.plot(x, pfn.mean[0].numpy(), color="tab:orange", label="PFN mean")
        ax.scatter(
            batch.x_ctx[0, :, 0], batch.y_ctx[0], color="black", s=12, zorder=3, label="context"
        )
        ax.set(xlabel="x", ylabel="y", title=f"PFN vs exact GP, {n_ctx} context points")
        ax.legend(loc="best", fontsize=8)
        path = out_dir / f"bands_nctx{n_ctx}.png"
        save_figure(fig, path)
        paths.append(path)
    return paths


def plot_nll_by_size(
    report: Mapping[str, Any], path: str | Path, *, reference_label: str = "exact GP"
) -> Path:
    """PNG of PFN and exact NLL per query point against the context size (gp-, tp-exact)."""
    plt = pyplot()

    rows = report["sizes"]
    sizes = [s["n_ctx"] for s in rows]
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(sizes, [s["exact_nll"] for s in rows], "o-", label=reference_label)
    ax.plot(sizes, [s["pfn_nll"] for s in rows], "s--", label=f"PFN ({report['checkpoint']})")
    ax.set(xscale="log", xlabel="context points", ylabel="NLL per query point (nats)")
    ax.legend()
    ax_gap.plot(sizes, [s["gap"] for s in rows], "o-", color="tab:red")
    tolerance = report["tolerances"].get("nll_gap_max")
    if tolerance is not None:
        ax_gap.axhline(tolerance, color="gray", ls=":", label="card tolerance (max)")
        ax_gap.legend()
    ax_gap.axhline(0, color="black", lw=0.5)
    ax_gap.set(xscale="log", xlabel="context points", ylabel="PFN NLL - exact NLL (nats)")
    return save_figure(fig, path)


def plot_nll_by_context(report: Mapping[str, Any], path: str | Path) -> Path:
    """PNG, one column per d: NLL of PFN, NUTS and ML-II against the context size (top), and
    the paired differences PFN - NUTS and PFN - ML-II with standard errors (bottom); gp-nuts."""
    plt = pyplot()

    dims = list(dict.fromkeys(c["d"] for c in report["cells"]))
    fig, axes = plt.subplots(2, len(dims), figsize=(4.5 * len(dims), 7), squeeze=False,
                             sharex=True)  # fmt: skip
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    k, n = report["config"]["nuts_tasks"], report["config"]["n_tasks"]
    for top, bottom, d in zip(axes[0], axes[1], dims, strict=True):
        cells = [c for c in report["cells"] if c["d"] == d]
        sizes = [c["n_ctx"] for c in cells]
        top.plot(sizes, [nan(c["nuts_nll"]) for c in cells], "o-",
                 label=f"GP, NUTS over hyperparameters ({k} tasks)")  # fmt: skip
        top.plot(sizes, [nan(c["ml2_nll"]) for c in cells], "^:", label=f"GP, ML-II ({n} tasks)")
        top.plot(sizes, [c["pfn_nll"] for c in cells], "s--",
                 label=f"PFN ({report['checkpoint']}, {n} tasks)")  # fmt: skip
        # symlog: linear where the NLLs and gaps live, logarithmic for ML-II's blow-ups on
        # tiny contexts (hundreds of nats), which would flatten everything else
        top.set(xscale="log", title=f"d = {d}")
        top.set_yscale("symlog", linthresh=_NLL_LINEAR)
        for label, fmt, mean, err in (
            ("PFN - NUTS (trusted runs)", "o-", "gap", "gap_stderr"),
            ("PFN - ML-II", "^:", "ml2_gap", "ml2_gap_stderr"),
        ):
            bottom.errorbar(sizes, [nan(c[mean]) for c in cells],
                            yerr=[nan(c[err]) for c in cells], fmt=fmt, capsize=3,
                            label=label)  # fmt: skip
        bottom.axhline(0.0, color="grey", lw=0.8)
        bottom.set(xscale="log", xlabel="context points")
        bottom.set_yscale("symlog", linthresh=_GAP_LINEAR)
    axes[0][0].set_ylabel("NLL per query point (nats)")
    axes[1][0].set_ylabel("paired NLL difference (nats)")
    axes[0][0].legend(fontsize=8)
    axes[1][0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_bnn_nuts(report: Mapping[str, Any], path: str | Path) -> Path:
    """PNG: NLL against context size, and NUTS NLL against wall-clock time with the PFN."""
    plt = pyplot()

    curve = report["curve"]
    panels = 2 if curve else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    cells = report["cells"]
    sizes = [c["n_ctx"] for c in cells]
    ax.plot(sizes, [c["nuts_nll"] for c in cells], "o-", label="NUTS (exact posterior)")
    ax.plot(sizes, [c["pfn_nll"] for c in cells], "s--", label=f"PFN ({report['checkpoint']})")
    ax.set(xscale="log", xlabel="context points", ylabel="NLL per query point (nats)")
    ax.legend(fontsize=8)
    if curve:
        ax = axes[0][1]
        ax.plot([p["nuts_seconds"] for p in curve], [p["nuts_nll"] for p in curve],
                "o-", label="NUTS, 1 chain, growing budget")  # fmt: skip
        for p in curve:
            ax.annotate(str(p["budget"]), (p["nuts_seconds"], p["nuts_nll"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
        ax.plot([report["curve_pfn_seconds"]], [report["curve_pfn_nll"]], "*", markersize=14,
                label="PFN, one forward pass")  # fmt: skip
        ax.set(xscale="log", xlabel="wall-clock seconds per task",
               title=f"n_ctx = {report['config']['curve_n_ctx']}")  # fmt: skip
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_dt_posteriors(
    model: nn.Module, tasks: list[Batch], obs_cov: Tensor, path: str | Path, *, title: str = ""
) -> Path:
    """Prior, exact conjugate posterior and Distribution Transformer posterior, one task each.

    Args:
        model: a Distribution Transformer (evaluated in float64, in place).
        tasks: one-task batches of a GMM prior with the Gaussian location simulator.
        obs_cov: (d, d) observation covariance of that simulator.
        path: the PNG to write.
        title: the figure's title.
    """
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
