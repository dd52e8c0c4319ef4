"""Adversarial robustness of a GP-prior PFN relative to exact inference on the same tasks.

The same attack (`pfnkit.robustness.attack_context`) runs on the PFN and on the exact GP
predictive at the prior's fixed hyperparameters. Exact Bayesian inference is not immune:
its predictive moves when the data move. The robustness ratio, model worst-case KL over
exact worst-case KL at the same ε, says how much more (> 1) or less (< 1) the amortized
model can be moved than the Bayes-optimal predictor (Glöckler, Deistler & Macke,
arXiv 2305.14984).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pfnkit.data import Batch
from pfnkit.figures import pyplot, save_figure
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive
from pfnkit.robustness.attacks import (
    ContextAttack,
    attack_context,
    attack_observations,
    exact_gp_predictor,
)
from pfnkit.robustness.pgd import AttackConfig

__all__ = [
    "EpsRobustness",
    "RobustnessReport",
    "plot_attacked_posterior",
    "plot_attacked_task",
    "posterior_robustness_report",
    "robustness_report",
]

QUANTILE = 0.9  # the upper quantile of per-task KL that the report gives beside the mean


def _quantile(values: Sequence[float], level: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), level))


@dataclass(frozen=True)
class EpsRobustness:
    """Per-task worst-case KL (mean over query points) of the model and the exact GP.

    Attributes:
        eps: attack radius, in units of each task's data standard deviation.
        model_kl: one value per task.
        exact_kl: one value per task, same tasks and order.
    """

    eps: float
    model_kl: tuple[float, ...]
    exact_kl: tuple[float, ...]

    @property
    def model_mean(self) -> float:
        return statistics.fmean(self.model_kl)

    @property
    def exact_mean(self) -> float:
        return statistics.fmean(self.exact_kl)

    @property
    def model_p90(self) -> float:
        return _quantile(self.model_kl, QUANTILE)

    @property
    def exact_p90(self) -> float:
        return _quantile(self.exact_kl, QUANTILE)

    @property
    def ratio(self) -> float | None:
        """Model mean KL / exact mean KL; None where the exact KL is 0 (ε = 0)."""
        return self.model_mean / self.exact_mean if self.exact_mean > 0 else None

    @property
    def median_task_ratio(self) -> float | None:
        """Median over tasks of model KL / exact KL; None if no task has exact KL > 0."""
        ratios = [m / e for m, e in zip(self.model_kl, self.exact_kl, strict=True) if e > 0]
        return statistics.median(ratios) if ratios else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "model_mean": self.model_mean,
            "model_p90": self.model_p90,
            "exact_mean": self.exact_mean,
            "exact_p90": self.exact_p90,
            "ratio": self.ratio,
            "median_task_ratio": self.median_task_ratio,
            "model_kl": list(self.model_kl),
            "exact_kl": list(self.exact_kl),
        }


@dataclass(frozen=True)
class RobustnessReport:
    """Model and exact worst-case KL at each radius, on one batch of tasks."""

    checkpoint: str
    target: str
    attack: dict[str, Any]
    n_ctx: int
    n_qry: int
    results: tuple[EpsRobustness, ...]

    @property
    def n_tasks(self) -> int:
        return len(self.results[0].model_kl)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "target": self.target,
            "attack": self.attack,
            "n_tasks": self.n_tasks,
            "n_ctx": self.n_ctx,
            "n_qry": self.n_qry,
            "quantile": QUANTILE,
            "results": [r.to_dict() for r in self.results],
        }

    def print_table(self) -> None:
        """Print mean and 90th-percentile KL of model and exact, and their ratio, with rich."""
        from rich.console import Console
        from rich.table import Table

        attack = self.attack
        posterior = self.target == "observations"
        exact, over = ("exact GP", "mean over queries")
        if posterior:
            exact, over = "exact posterior", "over θ"
        table = Table(
            title=f"{self.checkpoint} vs {exact}: worst-case KL(q(.|D) || q(.|D+delta)), {over}",
            caption=f"{self.n_tasks} tasks, {self.n_ctx} data points; target "
            f"{self.target}; {attack['norm']} ball of radius eps in units of the data's std; "
            f"{attack['steps']} steps x {attack['restarts']} restart(s)",
        )
        columns = ("eps", "model mean", "model p90", "exact mean", "exact p90", "ratio")
        for name in (*columns, "median task ratio"):
            table.add_column(name, justify="right")
        show = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        for r in self.results:
            table.add_row(
                f"{r.eps:g}",
                *(show(v) for v in (r.model_mean, r.model_p90, r.exact_mean, r.exact_p90)),
                show(r.ratio),
                show(r.median_task_ratio),
            )
        console = Console(width=max(Console().width, 110))  # keep the table whole in logs
        console.print(table)
        console.print(
            "ratio = model mean KL / exact mean KL (> 1: the model moves more than exact)"
        )

    def write_json(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


@contextlib.contextmanager
def _progress_ticks(enabled: bool, total: int) -> Iterator[Callable[[], None] | None]:
    """A callback that advances a rich progress bar by one attack evaluation, if enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task("attacking model and exact GP", total=total)
        yield lambda: progress.advance(task)


def _model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def robustness_report(
    model: nn.Module,
    batch: Batch,
    hyper: GPHyperparameters,
    *,
    eps: Sequence[float],
    target: str = "y",
    config: AttackConfig | None = None,
    generator: torch.Generator,
    checkpoint: str = "",
    progress: bool = False,
) -> RobustnessReport:
    """Attack the PFN and the exact GP on the same tasks at every radius; compare.

    Both attacks start from the same random points (one seed drawn from ``generator``),
    so they differ only in the predictor.

    Args:
        model: a PFN (any module with ``forward(x_ctx, y_ctx, x_qry) -> BarDistribution``).
        batch: the tasks; the caller draws them, e.g. from the checkpoint's prior.
        hyper: the fixed GP hyperparameters the tasks were drawn with.
        eps: non-decreasing radii, in units of each task's data std.
        target: "y", "x" or "xy".
        config: attack settings.
        generator: source of the random starts.
        checkpoint: name recorded in the report.
        progress: show a rich progress bar.
    """
    config = config or AttackConfig()
    model = model.eval()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    total = 2 * sum(config.n_evaluations(float(e)) for e in eps)
    dtype = _model_dtype(model)
    with _progress_ticks(progress, total) as tick:
        model_attacks = attack_context(
            model,
            *(t.to(dtype) for t in (batch.x_ctx, batch.y_ctx, batch.x_qry)),
            eps,
            target=target,
            config=config,
            generator=torch.Generator(batch.x_ctx.device).manual_seed(seed),
            on_eval=tick,
        )
        exact_attacks = attack_context(
            exact_gp_predictor(hyper),
            *(t.double() for t in (batch.x_ctx, batch.y_ctx, batch.x_qry)),
            eps,
            target=target,
            config=config,
            generator=torch.Generator(batch.x_ctx.device).manual_seed(seed),
            on_eval=tick,
        )
    results = tuple(
        EpsRobustness(m.eps, tuple(m.kl_B.tolist()), tuple(e.kl_B.tolist()))
        for m, e in zip(model_attacks, exact_attacks, strict=True)
    )
    return RobustnessReport(
        checkpoint=checkpoint,
        target=target,
        attack=config.to_dict(),
        n_ctx=batch.n_ctx,
        n_qry=batch.n_qry,
        results=results,
    )


def posterior_robustness_report(
    posterior_fn: Callable[[Tensor], Any],
    exact_fn: Callable[[Tensor], Any],
    obs_BND: Tensor,
    *,
    eps: Sequence[float],
    config: AttackConfig | None = None,
    n_samples: int = 256,
    generator: torch.Generator,
    checkpoint: str = "",
    progress: bool = False,
) -> RobustnessReport:
    """Attack a posterior estimator's observations and the exact posterior's; compare.

    Args:
        posterior_fn: observations (B, N, D) -> the model's MixtureSameFamily over θ
            (the prior already bound, e.g. a Distribution Transformer's).
        exact_fn: the same for the exact posterior (e.g. the conjugate GMM posterior).
        obs_BND: clean observations, float64.
        eps: non-decreasing radii, in units of each task's std per observation dimension.
        n_samples: Monte Carlo draws from each clean posterior for the KL.
    """
    config = config or AttackConfig()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    total = 2 * sum(config.n_evaluations(float(e)) for e in eps)
    attacks = []
    with _progress_ticks(progress, total) as tick:
        for fn in (posterior_fn, exact_fn):
            attacks.append(
                attack_observations(
                    fn,
                    obs_BND,
                    eps,
                    config=config,
                    n_samples=n_samples,
                    generator=torch.Generator(obs_BND.device).manual_seed(seed),
                    on_eval=tick,
                )  # fmt: skip
            )
    results = tuple(
        EpsRobustness(m.eps, tuple(m.kl_B.tolist()), tuple(e.kl_B.tolist()))
        for m, e in zip(*attacks, strict=True)
    )
    return RobustnessReport(
        checkpoint=checkpoint, target="observations", attack=config.to_dict(),
        n_ctx=obs_BND.shape[1], n_qry=0, results=results,
    )  # fmt: skip


Band = tuple[Tensor, Tensor, Tensor]  # predictive mean, 5% and 95% quantiles on a grid


def _pfn_band(model: nn.Module, x_ctx_BND: Tensor, y_ctx_BN: Tensor, grid_G: Tensor) -> Band:
    with torch.no_grad():
        dist = model(x_ctx_BND, y_ctx_BN, grid_G.to(x_ctx_BND.dtype).reshape(1, -1, 1))
        q_G2 = dist.quantiles([0.05, 0.95])[0]
    return dist.mean[0], q_G2[:, 0], q_G2[:, 1]


def _exact_band(
    hyper: GPHyperparameters, x_ctx_BND: Tensor, y_ctx_BN: Tensor, grid_G: Tensor
) -> Band:
    with torch.no_grad():
        pred = exact_gp_predictive(x_ctx_BND[0], y_ctx_BN[0], grid_G.reshape(-1, 1), hyper)
        low, high = pred.interval(0.9)
    return pred.mean, low, high


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
    ax.scatter(
        x1.numpy(),
        y1.numpy(),
        color="tab:red",
        marker="x",
        s=24,
        zorder=4,
        label="attacked context",
    )
    ax.set(xlabel="x", ylabel="y")


def plot_attacked_task(
    model: nn.Module,
    task: Batch,
    hyper: GPHyperparameters,
    path: str | Path,
    *,
    eps: float,
    target: str = "y",
    config: AttackConfig | None = None,
    generator: torch.Generator,
    x_range: tuple[float, float] | None = None,
) -> Path:
    """PNG of one 1-D task attacked at radius ``eps``: the PFN (left), the exact GP (right).

    Each panel shows the clean and the attacked context, and the predictive mean and 90%
    band before and after that predictor's own worst-case perturbation. The attacks run
    here (both from one seed drawn from ``generator``), so their KL can differ slightly
    from a report's value for the same task.
    """
    plt = pyplot()

    if task.batch_size != 1 or task.num_features != 1:
        raise ValueError("pass one task of a 1-D prior, e.g. batch.task(i)")
    low, high = x_range or (float(task.x_ctx.min()), float(task.x_ctx.max()))
    grid_G = torch.linspace(low, high, 300, dtype=torch.float64)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    panels = (
        ("PFN", model.eval(), _model_dtype(model), lambda x, y: _pfn_band(model, x, y, grid_G)),
        (
            "exact GP",
            exact_gp_predictor(hyper),
            torch.float64,
            lambda x, y: _exact_band(hyper, x, y, grid_G),
        ),
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (name, predictor, dtype, band) in zip(axes, panels, strict=True):
        x_ctx, y_ctx, x_qry = (t.to(dtype) for t in (task.x_ctx, task.y_ctx, task.x_qry))
        (attack,) = attack_context(
            predictor,
            x_ctx,
            y_ctx,
            x_qry,
            [eps],
            target=target,
            config=config,
            generator=torch.Generator(x_ctx.device).manual_seed(seed),
        )
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
    """PNG of one task's observations attacked at ``eps``: model (left), exact (right).

    Each panel shows the clean and attacked observations and posterior contours.
    """
    from pfnkit.mixtures import mixture_task
    from pfnkit.validation.dt_plots import ContourPanel, plot_posterior_contours

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
