"""Validate a GP-prior PFN against the exact GP posterior predictive on fresh prior tasks."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pfnkit.data import Batch, Prior
from pfnkit.figures import pyplot, save_figure
from pfnkit.metrics import interval_coverage, nll
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive

__all__ = [
    "GPValidationReport",
    "SizeResult",
    "plot_gp_bands",
    "plot_nll_by_size",
    "validate_against_exact_gp",
]

LEVELS = (0.5, 0.9, 0.95)


@dataclass(frozen=True)
class SizeResult:
    """PFN and exact-GP scores at one context size (per query point, averaged over tasks)."""

    n_ctx: int
    n_tasks: int
    pfn_nll: float
    exact_nll: float
    pfn_coverage: dict[float, float]
    exact_coverage: dict[float, float]
    pfn_seconds_per_task: float
    exact_seconds_per_task: float

    @property
    def gap(self) -> float:
        return self.pfn_nll - self.exact_nll


@dataclass(frozen=True)
class GPValidationReport:
    """All context sizes, plus the tolerances the checkpoint card declares."""

    checkpoint: str
    sizes: list[SizeResult]
    tolerances: dict[str, float]

    def print_table(self, n_tasks: int) -> None:
        """Print the per-size table and the verdict with rich."""
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{self.checkpoint} vs exact GP ({n_tasks} tasks per size; "
            "NLL in nats per query point)"
        )
        for name in (
            "n_ctx",
            "PFN NLL",
            "exact NLL",
            "gap",
            "PFN cov 50/90/95",
            "exact cov 50/90/95",
            "PFN ms/task",
            "exact ms/task",
        ):
            table.add_column(name, justify="right")
        for s in self.sizes:
            cov = lambda c: "/".join(f"{100 * c[level]:.1f}" for level in sorted(c))  # noqa: E731
            table.add_row(
                str(s.n_ctx),
                f"{s.pfn_nll:.4f}",
                f"{s.exact_nll:.4f}",
                f"{s.gap:+.4f}",
                cov(s.pfn_coverage),
                cov(s.exact_coverage),
                f"{1e3 * s.pfn_seconds_per_task:.2f}",
                f"{1e3 * s.exact_seconds_per_task:.2f}",
            )
        console = Console(width=max(Console().width, 110))  # keep the table whole in logs
        console.print(table)
        verdict = "PASS" if self.passed else "FAIL"
        console.print(
            f"mean gap {self.mean_gap:+.4f}, max gap {self.max_gap:+.4f}, "
            f"tolerances {self.tolerances}: {verdict}"
        )

    @property
    def mean_gap(self) -> float:
        return sum(s.gap for s in self.sizes) / len(self.sizes)

    @property
    def max_gap(self) -> float:
        return max(s.gap for s in self.sizes)

    @property
    def passed(self) -> bool:
        mean_tol = self.tolerances.get("nll_gap_mean", float("inf"))
        max_tol = self.tolerances.get("nll_gap_max", float("inf"))
        return self.mean_gap <= mean_tol and self.max_gap <= max_tol

    def to_dict(self) -> dict[str, Any]:
        sizes = []
        for s in self.sizes:
            entry = dataclasses.asdict(s)
            entry["gap"] = s.gap
            sizes.append(entry)
        return {
            "checkpoint": self.checkpoint,
            "sizes": sizes,
            "mean_gap": self.mean_gap,
            "max_gap": self.max_gap,
            "tolerances": self.tolerances,
            "passed": self.passed,
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def task_hyperparameters(batch: Batch, index: int, kernel: str) -> GPHyperparameters:
    """The GP hyperparameters the prior drew for task `index` (from `batch.meta`)."""
    meta = batch.meta
    return GPHyperparameters(
        lengthscale=meta["lengthscale"][index].double(),
        outputscale=float(meta["outputscale"][index]),
        noise=float(meta["noise"][index]),
        kernel=kernel,
    )


def _score_size(
    model: nn.Module, batch: Batch, kernel: str
) -> tuple[float, float, dict, dict, float, float]:
    pfn_nlls, exact_nlls, pfn_cov, exact_cov = [], [], [], []
    pfn_time = exact_time = 0.0
    for i in range(batch.batch_size):
        task = batch.task(i)
        start = time.perf_counter()
        with torch.inference_mode():
            dist = model.predict_from_cache(
                model.encode_context(task.x_ctx, task.y_ctx), task.x_qry
            )
        pfn_time += time.perf_counter() - start
        y = task.y_qry
        pfn_nlls.append(float(nll(dist, y)))
        pfn_cov.append(interval_coverage(dist, y, LEVELS))

        start = time.perf_counter()
        exact = exact_gp_predictive(
            task.x_ctx[0].double(),
            task.y_ctx[0].double(),
            task.x_qry[0].double(),
            task_hyperparameters(batch, i, kernel),
        ).to_distribution()
        exact_time += time.perf_counter() - start
        y64 = y[0].double()
        exact_nlls.append(float(nll(exact, y64)))
        exact_cov.append(interval_coverage(exact, y64, LEVELS))
    n = batch.batch_size

    def average(covs: list[dict]) -> dict[float, float]:
        return {level: sum(c[level] for c in covs) / n for level in LEVELS}

    return (
        sum(pfn_nlls) / n,
        sum(exact_nlls) / n,
        average(pfn_cov),
        average(exact_cov),
        pfn_time / n,
        exact_time / n,
    )


def validate_against_exact_gp(
    model: nn.Module,
    prior: Prior,
    *,
    kernel: str,
    checkpoint: str = "",
    n_ctx_sizes: Sequence[int] = (1, 3, 10, 30, 100),
    n_tasks: int = 256,
    n_qry: int = 100,
    seed: int = 12345,
    tolerances: dict[str, float] | None = None,
    progress: bool = False,
) -> GPValidationReport:
    """Score `model` and the exact GP on the same fresh tasks at each context size.

    Tasks come from `prior` with a generator seeded by `seed` (distinct from training's
    streams). Each task is run on its own, so times are per task (fit + predict).
    """
    generator = torch.Generator().manual_seed(seed)
    model = model.eval()
    sizes = []
    iterator: Any = n_ctx_sizes
    if progress:
        from rich.progress import track

        iterator = track(n_ctx_sizes, description="validating context sizes")
    for n_ctx in iterator:
        batch = prior.sample(n_tasks, n_ctx, n_qry, generator=generator)
        scores = _score_size(model, batch, kernel)
        sizes.append(SizeResult(n_ctx, n_tasks, *scores))
    return GPValidationReport(checkpoint=checkpoint, sizes=sizes, tolerances=tolerances or {})


def plot_gp_bands(
    model: nn.Module,
    prior: Prior,
    *,
    kernel: str,
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
            task_hyperparameters(batch, 0, kernel),
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


def plot_nll_by_size(report: GPValidationReport, path: str | Path) -> Path:
    """PNG of PFN and exact-GP NLL per query point against the context size."""
    plt = pyplot()

    sizes = [s.n_ctx for s in report.sizes]
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(sizes, [s.exact_nll for s in report.sizes], "o-", label="exact GP")
    ax.plot(sizes, [s.pfn_nll for s in report.sizes], "s--", label=f"PFN ({report.checkpoint})")
    ax.set(xscale="log", xlabel="context points", ylabel="NLL per query point (nats)")
    ax.legend()
    ax_gap.plot(sizes, [s.gap for s in report.sizes], "o-", color="tab:red")
    tolerance = report.tolerances.get("nll_gap_max")
    if tolerance is not None:
        ax_gap.axhline(tolerance, color="gray", ls=":", label="card tolerance (max)")
        ax_gap.legend()
    ax_gap.axhline(0, color="black", lw=0.5)
    ax_gap.set(xscale="log", xlabel="context points", ylabel="PFN NLL - exact NLL (nats)")
    return save_figure(fig, path)
