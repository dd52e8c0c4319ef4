"""One-call Bayesian optimisation: `minimize(f, bounds, n_evals)` with a PFN surrogate."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from pfnkit.bo.acqf_optim import AcquisitionOptimizerConfig
from pfnkit.bo.ask_tell import AskTellOptimizer, OptimizeResult, default_n_init
from pfnkit.bo.box import Box
from pfnkit.bo.surrogate import DEFAULT_CHECKPOINT
from pfnkit.bo.trust_region import TrustRegionConfig
from pfnkit.checkpoint import Checkpoint

__all__ = ["EvaluationError", "minimize"]


class EvaluationError(ValueError):
    """The objective returned something other than one finite number.

    Attributes:
        x: the point at which it did.
        value: what it returned.
        result: the history before that point (None if it was the first evaluation);
            the failed point is not in it.
    """

    def __init__(self, message: str, x: np.ndarray, value: object, result: OptimizeResult | None):
        super().__init__(message)
        self.x = x
        self.value = value
        self.result = result


def minimize(
    f: Callable[[np.ndarray], float],
    bounds: Sequence[Sequence[float]] | np.ndarray,
    n_evals: int,
    *,
    n_init: int | None = None,
    acquisition: str = "ei",
    checkpoint: str | Path | Checkpoint = DEFAULT_CHECKPOINT,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    y_transform: str = "power",
    config: AcquisitionOptimizerConfig | None = None,
    trust_region: bool | TrustRegionConfig = True,
    progress: bool = False,
) -> OptimizeResult:
    """Minimise `f` over a box with Bayesian optimisation and a PFN surrogate.

    `n_init` points of a scrambled Sobol design come first; every later point maximises
    the acquisition under the PFN's posterior predictive given the points so far
    (Müller et al., arXiv 2305.17535), by default those inside a TuRBO trust region
    around the best point (`pfnkit.bo.trust_region`), found from many random starts refined by
    gradients (`pfnkit.bo.maximize_acquisition`). The box maps onto the surrogate's
    inputs as `PFNSurrogate` says; the values map, afresh at every step, to the
    standardized values warped by a Yeo-Johnson power transform fitted to them
    (`y_transform="power"`, `pfnkit.bo.outputs`), which keeps the differences between the
    lowest values visible to the surrogate.

    Args:
        f: the objective; called with a (d,) float64 array inside the bounds, returns
            one finite number.
        bounds: one (low, high) pair per dimension, low < high.
        n_evals: the budget: number of calls of `f`, the initial design included.
        n_init: initial-design size; when None, `default_n_init(d)` (d + 1, at least 2)
            capped at `n_evals`.
        acquisition: "ei" (default), "log_ei", "pi" or "lcb" (`AskTellOptimizer`).
        checkpoint: regression PFN checkpoint (name, path or loaded); by default
            `pfnkit.bo.DEFAULT_CHECKPOINT`.
        seed: the same seed gives the same trajectory.
        device, dtype, y_transform, config: the surrogate's device and dtype, the map of
            the values ("rank", "power" or "standardize") and the acquisition search
            (`AcquisitionOptimizerConfig`), as in `AskTellOptimizer`.
        trust_region: True (default) reads and searches a TuRBO trust region around the
            best point (`pfnkit.bo.trust_region`), a `TrustRegionConfig` sets its
            schedule, False makes every step global; as in `AskTellOptimizer`.
        progress: show a rich progress bar: evaluations done and the best value so far.

    Returns:
        The history (`xs`, `ys`) and the best point (`x_best`, `y_best`).

    Raises:
        ValueError: inverted or malformed bounds, an n_evals below n_init, or an unknown
            acquisition.
        EvaluationError: `f` returned NaN, inf or a non-number; it names the point,
            and its `result` holds the history up to it (the point is not in it).
    """
    n_init = _design_size(n_evals, n_init, Box.from_bounds(bounds).dim)
    optimizer = AskTellOptimizer(bounds, n_init=n_init, acquisition=acquisition,
                                 checkpoint=checkpoint, seed=seed, device=device, dtype=dtype,
                                 y_transform=y_transform, config=config,
                                 trust_region=trust_region)  # fmt: skip
    return _run(optimizer, f, int(n_evals), progress=progress)


def _design_size(n_evals: int, n_init: int | None, dim: int) -> int:
    """The initial-design size, checked against the budget."""
    if isinstance(n_evals, bool) or not isinstance(n_evals, numbers.Integral) or n_evals < 1:
        raise ValueError(f"n_evals must be a positive int, got {n_evals!r}")
    if n_init is None:
        return min(default_n_init(dim), int(n_evals))
    if n_evals < n_init:
        raise ValueError(
            f"n_evals={n_evals} is below n_init={n_init}: the budget must cover the initial "
            "design; raise n_evals or lower n_init"
        )
    return n_init


def _run(
    optimizer: AskTellOptimizer,
    f: Callable[[np.ndarray], float],
    n_evals: int,
    *,
    progress: bool = False,
) -> OptimizeResult:
    """Ask, evaluate and tell `n_evals` times; an `EvaluationError` at the first bad value."""
    best = np.inf
    with _progress_bar(progress, n_evals) as advance:
        for i in range(n_evals):
            x = optimizer.ask()
            value = f(x.copy())
            try:
                optimizer.tell(x, value)
            except ValueError as error:
                history = optimizer.result() if i else None
                raise EvaluationError(
                    f"evaluation {i + 1} of {n_evals}: {error}. The error's `result` holds the "
                    f"{i} evaluations before it",
                    x=x,
                    value=value,
                    result=history,
                ) from None
            best = min(best, float(value))  # tell accepted it: one finite number
            if advance is not None:
                advance(best)
    return optimizer.result()


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[float], None] | None]:
    """A callback that advances a rich progress bar by one evaluation and shows the best
    value so far, if enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import Progress, TextColumn

    with Progress(*Progress.get_default_columns(), TextColumn("best {task.fields[best]}")) as bar:
        task = bar.add_task("evaluations", total=total, best="-")
        yield lambda best: bar.update(task, advance=1, best=f"{best:.6g}")
