"""Step time of pfnkit and BoTorch at the same number of observations, on the same data.

The observations are a real Bayesian-optimisation history: the first `n_obs` evaluations
of a `pfnkit.bo.minimize` run on the problem. On that same history each method then
proposes its next point `repeats` times, alternating (pfnkit, BoTorch, pfnkit, ...) so
that both see the same load on the machine, after one untimed warm-up step each. A
pfnkit step is `AskTellOptimizer.ask` after `observe(history)`: encoding the context and
maximising the acquisition. A BoTorch step is `bo_methods.botorch_step`: building and
fitting the GP, then `optimize_acqf` on log-EI. The objective is not part of either.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from bo_methods import botorch_step
from bo_problems import Problem

from pfnkit.bo import AskTellOptimizer, default_n_init, minimize

__all__ = ["STEP_TIME_RATIO_TARGET", "step_time_ratio"]

STEP_TIME_RATIO_TARGET = 10.0  # the target: BoTorch's step time / pfnkit's, at least


def _pfnkit_step(
    problem: Problem, xs: np.ndarray, ys: np.ndarray, seed: int, checkpoint: object
) -> float:
    optimizer = AskTellOptimizer(
        problem.bounds, n_init=default_n_init(problem.dim), checkpoint=checkpoint, seed=seed
    )
    optimizer.observe(xs, ys)
    start = time.perf_counter()
    optimizer.ask()
    return time.perf_counter() - start


def _botorch_step(u: np.ndarray, ys: np.ndarray, seed: int) -> float:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        start = time.perf_counter()
        botorch_step(u, ys)
        return time.perf_counter() - start


def step_time_ratio(
    problem: Problem, n_obs: int, repeats: int, seed: int, checkpoint: object
) -> dict[str, Any]:
    """Median seconds of a pfnkit and a BoTorch step with `n_obs` observations, and their ratio."""
    history = minimize(problem, problem.bounds, n_obs, checkpoint=checkpoint, seed=seed)
    low, high = problem.bounds.T
    u = (history.xs - low) / (high - low)
    _pfnkit_step(problem, history.xs, history.ys, seed, checkpoint)  # warm-up, untimed
    _botorch_step(u, history.ys, seed)
    pfnkit_s, botorch_s = [], []
    for r in range(repeats):
        pfnkit_s.append(_pfnkit_step(problem, history.xs, history.ys, seed + 1 + r, checkpoint))
        botorch_s.append(_botorch_step(u, history.ys, seed + 1 + r))
    pfnkit_median, botorch_median = float(np.median(pfnkit_s)), float(np.median(botorch_s))
    return {
        "function": problem.name,
        "n_observations": n_obs,
        "repeats": repeats,
        "pfnkit_seconds": pfnkit_s,
        "botorch_seconds": botorch_s,
        "pfnkit_median_s": pfnkit_median,
        "botorch_median_s": botorch_median,
        "ratio": botorch_median / pfnkit_median,
        "target": STEP_TIME_RATIO_TARGET,
    }
