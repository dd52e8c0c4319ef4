"""The three single-curve extrapolators of benchmarks/lc_extrapolation.py, each timed per curve.

Each scores the log predictive density of one curve's value at a target epoch, given its
first k epochs, and the wall time that took (fit + predict):

* `pfn_log_prob`: a single-curve PFN checkpoint (input t / T, as its prior was trained on);
* `mcmc_log_prob`: a Monte Carlo posterior over the parametric families (the checkpoint's
  own prior and log-joint): NUTS (`pfnkit.reference.lc_posterior.curve_posterior`, gated on
  R-hat and ESS) or tempered SMC (`pfnkit.reference.lc_smc.curve_posterior_smc`, gated on
  its runs' agreement);
* `power_law_log_prob`: a least-squares fit of y(t) = a + b t^(−c) (scipy's curve_fit) with
  a Gaussian residual whose variance is the residual sum of squares over k − 3, floored at
  `SIGMA_FLOOR`; it needs k ≥ `POWER_LAW_MIN_EPOCHS`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import norm

from pfnkit.data import Batch
from pfnkit.reference.lc_posterior import CurvePosteriorPrior

__all__ = [
    "POWER_LAW_MIN_EPOCHS",
    "SIGMA_FLOOR",
    "Score",
    "curve_task",
    "mcmc_log_prob",
    "pfn_log_prob",
    "power_law",
    "power_law_log_prob",
]

# The finest step of the tables' validation errors (1 / 540, digits' validation split): a
# fit that goes through every observed point must still leave the target a spread this wide.
SIGMA_FLOOR = 1.0 / 540
POWER_LAW_MIN_EPOCHS = 4  # three parameters, and one residual degree of freedom
_BOUNDS = ([-1.0, -10.0, 1e-3], [2.0, 10.0, 10.0])  # a, b, c: loose, keeps the fit finite


@dataclass(frozen=True)
class Score:
    """One method on one curve: log density of the target, seconds, and a note."""

    log_prob: float
    seconds: float
    trusted: bool = True  # False: an MCMC run that failed its gate, or a failed fit


def curve_task(errors_T: np.ndarray, k: int, target_epoch: int, max_epoch: int) -> Batch:
    """A one-task float32 batch: context epochs 1..k, one query at `target_epoch` (x = t / T)."""
    t_ctx = torch.arange(1, k + 1, dtype=torch.float32)
    return Batch(
        x_ctx=(t_ctx / max_epoch)[None, :, None],
        y_ctx=torch.as_tensor(errors_T[:k], dtype=torch.float32)[None],
        x_qry=torch.tensor([[[target_epoch / max_epoch]]], dtype=torch.float32),
        y_qry=torch.tensor([[errors_T[target_epoch - 1]]], dtype=torch.float32),
        meta={},
    )


def pfn_log_prob(model: torch.nn.Module, task: Batch) -> Score:
    """The PFN's log density of the query value, with its fit + predict time."""
    start = time.perf_counter()
    with torch.inference_mode():
        dist = model.predict_from_cache(model.encode_context(task.x_ctx, task.y_ctx), task.x_qry)
        log_prob = float(dist.log_prob(task.y_qry)[0, 0])
    return Score(log_prob, time.perf_counter() - start)


def mcmc_log_prob(
    posterior_fn: Callable[..., Any], prior: CurvePosteriorPrior, task: Batch, seed: int
) -> Score:
    """``posterior_fn(prior, task, seed=seed)``'s mixture log density of the query, timed.

    `posterior_fn` is `curve_posterior` or `curve_posterior_smc` with its budget bound; its
    result has ``predictive(x)`` and ``trusted`` (the method's gate).
    """
    start = time.perf_counter()
    posterior = posterior_fn(prior, task, seed=seed)
    log_prob = posterior.predictive(task.x_qry[0]).log_prob(task.y_qry[0].double())
    return Score(float(log_prob[0]), time.perf_counter() - start, posterior.trusted)


def power_law(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a + b t^(−c): falls (b > 0) or rises (b < 0) towards a."""
    return a + b * np.power(t, -c)


def power_law_log_prob(errors_T: np.ndarray, k: int, target_epoch: int) -> Score:
    """Least-squares power law on epochs 1..k, Gaussian residual; N(fit(target), σ²)."""
    if k < POWER_LAW_MIN_EPOCHS:
        raise ValueError(f"a power-law fit needs at least {POWER_LAW_MIN_EPOCHS} epochs, got {k}")
    start = time.perf_counter()
    t, y = np.arange(1, k + 1, dtype=float), np.asarray(errors_T[:k], dtype=float)
    p0 = (float(y[-1]), float(y[0] - y[-1]), 0.5)
    fitted = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(power_law, t, y, p0=p0, bounds=_BOUNDS, maxfev=5000)
    except (RuntimeError, ValueError):  # no convergence: the starting curve stands
        params, fitted = np.array(p0), False
    residual = y - power_law(t, *params)
    sigma = max(math.sqrt(float(residual @ residual) / (k - 3)), SIGMA_FLOOR)
    mean = float(power_law(np.array([float(target_epoch)]), *params)[0])
    log_prob = float(norm.logpdf(errors_T[target_epoch - 1], mean, sigma))
    return Score(log_prob, time.perf_counter() - start, fitted)
