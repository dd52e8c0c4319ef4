"""Robustness reports: model and exact worst-case KL per radius, and the runners that build them.

The same attack runs on the amortized model and on exact inference over the same tasks.
Exact Bayesian inference is not immune: its predictive moves when the data move. The
robustness ratio, model worst-case KL over exact worst-case KL at the same ε, says how much
more (> 1) or less (< 1) the amortized model can be moved than the Bayes-optimal predictor
(Glöckler, Deistler & Macke, arXiv 2305.14984).

- `robustness_report`: a PFN and an exact predictive (`exact_gp_predictor` for the GP at
  fixed hyperparameters, the exact Student-t process, ...), attacking the context
  (`pfnkit.robustness.attacks.attack_context`).
- `posterior_robustness_report`: a posterior estimator over θ and the exact posterior,
  attacking the observations (`pfnkit.robustness.attacks.attack_observations`).

Both run the same comparison: one attack path per predictor, from the same random starts.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pfnkit.data import Batch
from pfnkit.metrics import mean_or_none
from pfnkit.report import Check, Report
from pfnkit.robustness.attacks import Predictor, attack_context, attack_observations
from pfnkit.robustness.pgd import AttackConfig

__all__ = [
    "QUANTILE",
    "EpsRobustness",
    "RobustnessReport",
    "attack_seed",
    "posterior_robustness_report",
    "replay_tasks",
    "robustness_report",
    "seeded_tasks",
]

QUANTILE = 0.9  # the upper quantile of per-task KL that the report gives beside the mean


def _quantile(values: Sequence[float], level: float) -> float | None:
    if not len(values):
        return None
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), level))


@dataclass(frozen=True)
class EpsRobustness:
    """Per-task worst-case KL of the model and of exact inference at one radius.

    Attributes:
        eps: attack radius, in units of each task's data standard deviation.
        model_kl: one value per task.
        exact_kl: one value per task, same tasks and order.
    """

    eps: float
    model_kl: tuple[float, ...]
    exact_kl: tuple[float, ...]

    @property
    def model_mean(self) -> float | None:
        return mean_or_none(self.model_kl)

    @property
    def exact_mean(self) -> float | None:
        return mean_or_none(self.exact_kl)

    @property
    def model_p90(self) -> float | None:
        return _quantile(self.model_kl, QUANTILE)

    @property
    def exact_p90(self) -> float | None:
        return _quantile(self.exact_kl, QUANTILE)

    @property
    def ratio(self) -> float | None:
        """Model mean KL / exact mean KL; None where the exact KL is 0 (ε = 0) or there are
        no tasks."""
        model, exact = self.model_mean, self.exact_mean
        return model / exact if model is not None and exact is not None and exact > 0 else None

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
class RobustnessReport(Report):
    """Model and exact worst-case KL at each radius, on one batch of tasks.

    Attributes:
        checkpoint: the attacked checkpoint's name.
        target: what was perturbed: "y", "x" or "xy" of the context, or "observations".
        attack: the `AttackConfig` as a dict.
        n_ctx: context points (or observations) per task.
        n_qry: query points per task (0 for posteriors over θ).
        results: one `EpsRobustness` per radius, in increasing order.
        reference: the registered attack that made the report ("" when built directly).
        seed: seed of the tasks and attacks (None when built directly from a generator).
    """

    checkpoint: str
    target: str
    attack: dict[str, Any]
    n_ctx: int
    n_qry: int
    results: tuple[EpsRobustness, ...]
    reference: str = ""
    seed: int | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.results[0].model_kl)

    @property
    def eps(self) -> tuple[float, ...]:
        return tuple(r.eps for r in self.results)

    def worst_task(self) -> int:
        """The task the model moves most on at the largest radius."""
        worst = self.results[-1].model_kl
        return max(range(len(worst)), key=worst.__getitem__)

    def checks(self) -> list[Check]:
        """The robustness ratio at each radius, shown but not gated."""
        return [Check(f"kl_ratio_eps{r.eps:g}", r.ratio) for r in self.results]

    def figures(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "reference": self.reference,
            "target": self.target,
            "attack": self.attack,
            "seed": self.seed,
            "n_tasks": self.n_tasks,
            "n_ctx": self.n_ctx,
            "n_qry": self.n_qry,
            "quantile": QUANTILE,
            "results": [r.to_dict() for r in self.results],
        }


def attack_seed(generator: torch.Generator) -> int:
    """One seed drawn from ``generator``; model and exact attacks both start from it."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def seeded_tasks(
    prior: Any, n_tasks: int, n_ctx: int, n_qry: int, seed: int
) -> tuple[Batch, torch.Generator]:
    """Fresh tasks of ``prior`` drawn from ``seed``, and the generator, advanced past them,
    that the attacks continue."""
    generator = torch.Generator().manual_seed(seed)
    return prior.sample(n_tasks, n_ctx, n_qry, generator=generator), generator


def replay_tasks(prior: Any, report: RobustnessReport) -> tuple[Batch, torch.Generator]:
    """The tasks ``report`` attacked, and the generator past its `attack_seed` (for plots).

    Raises:
        ValueError: the report records no seed.
    """
    if report.seed is None:
        raise ValueError("the report records no seed; make it with run_attack to plot it")
    batch, generator = seeded_tasks(prior, report.n_tasks, report.n_ctx, report.n_qry, report.seed)
    attack_seed(generator)  # the report's attacks drew this seed; continue after it
    return batch, generator


@contextlib.contextmanager
def _progress_ticks(enabled: bool, total: int) -> Iterator[Callable[[], None] | None]:
    """A callback that advances a rich progress bar by one attack evaluation, if enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress() as progress:
        task = progress.add_task("attacking the model and exact inference", total=total)
        yield lambda: progress.advance(task)


_AttackPath = Callable[[Any, torch.Generator, Callable[[], None] | None], Sequence[Any]]
"""``(member, generator, on_eval) -> attacks``: the attack path of one member of a
comparison (model or exact), one result per radius, each with ``eps`` and ``kl_B``."""


def _compare(
    attack_path: _AttackPath,
    model: Any,
    exact: Any,
    *,
    eps: Sequence[float],
    config: AttackConfig,
    generator: torch.Generator,
    device: torch.device,
    progress: bool,
) -> tuple[EpsRobustness, ...]:
    """Per-radius KL of ``model`` and ``exact`` (whatever ``attack_path`` attacks), each
    attacked from the same starts: one `attack_seed` drawn from ``generator`` seeds both."""
    seed = attack_seed(generator)
    total = 2 * sum(config.n_evaluations(float(e)) for e in eps)
    with _progress_ticks(progress, total) as tick:
        model_path, exact_path = (
            attack_path(member, torch.Generator(device).manual_seed(seed), tick)
            for member in (model, exact)
        )
    return tuple(
        EpsRobustness(m.eps, tuple(m.kl_B.tolist()), tuple(x.kl_B.tolist()))
        for m, x in zip(model_path, exact_path, strict=True)
    )


def robustness_report(
    model: nn.Module,
    batch: Batch,
    exact: Predictor,
    *,
    eps: Sequence[float],
    target: str = "y",
    config: AttackConfig | None = None,
    generator: torch.Generator,
    checkpoint: str = "",
    progress: bool = False,
) -> RobustnessReport:
    """Attack the PFN and an exact predictive on the same tasks at every radius; compare.

    Both attacks start from the same random points (one `attack_seed` drawn from
    ``generator``), so they differ only in the predictor.

    Args:
        model: a PFN (any module with ``forward(x_ctx, y_ctx, x_qry) -> BarDistribution``).
        batch: the tasks; the caller draws them, e.g. from the checkpoint's prior.
        exact: the exact predictive the tasks call for, run in float64, e.g.
            ``exact_gp_predictor(hyper)`` at the GP hyperparameters the tasks were drawn
            with, or ``pfnkit.robustness.tp_exact.exact_student_t_predictor(prior)``.
        eps: non-decreasing radii, in units of each task's data std.
        target: "y", "x" or "xy".
        config: attack settings.
        generator: source of the random starts.
        checkpoint: name recorded in the report.
        progress: show a rich progress bar.

    Raises:
        TypeError: ``exact`` is not a predictor (e.g. bare GP hyperparameters).
    """
    if not callable(exact):
        raise TypeError(
            f"exact must be a predictor (x_ctx, y_ctx, x_qry) -> Distribution, got a "
            f"{type(exact).__name__}; for a GP pass exact_gp_predictor(hyper)"
        )
    config = config or AttackConfig()
    model = model.eval()
    dtype = next(model.parameters()).dtype

    def attack_path(
        member: tuple[Predictor, torch.dtype], gen: torch.Generator, tick: Callable[[], None] | None
    ) -> Any:
        predictor, cast = member  # the model in its own dtype, exact inference in float64
        return attack_context(
            predictor, *(t.to(cast) for t in (batch.x_ctx, batch.y_ctx, batch.x_qry)), eps,
            target=target, config=config, generator=gen, on_eval=tick,
        )  # fmt: skip

    results = _compare(attack_path, (model, dtype), (exact, torch.float64), eps=eps,
                       config=config, generator=generator, device=batch.x_ctx.device,
                       progress=progress)  # fmt: skip
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
        config: attack settings.
        n_samples: Monte Carlo draws from each clean posterior for the KL.
        generator: source of the Monte Carlo draws and the random starts.
        checkpoint: name recorded in the report.
        progress: show a rich progress bar.
    """
    config = config or AttackConfig()

    def attack_path(fn: Any, gen: torch.Generator, tick: Callable[[], None] | None) -> Any:
        return attack_observations(fn, obs_BND, eps, config=config, n_samples=n_samples,
                                   generator=gen, on_eval=tick)  # fmt: skip

    results = _compare(attack_path, posterior_fn, exact_fn, eps=eps, config=config,
                       generator=generator, device=obs_BND.device, progress=progress)  # fmt: skip
    return RobustnessReport(
        checkpoint=checkpoint,
        target="observations",
        attack=config.to_dict(),
        n_ctx=obs_BND.shape[1],
        n_qry=0,
        results=results,
    )
