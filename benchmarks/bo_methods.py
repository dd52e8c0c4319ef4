"""The optimisers of benchmarks/bo.py, each run on one problem with one seed and one budget.

Every runner returns a `Trace`: the values in the order evaluated and the optimiser's own
seconds before each evaluation (proposing it and digesting the previous value; the
objective's time is excluded). The model-based methods, pfnkit and BoTorch, start from an
initial design of the same size (scrambled Sobol, seeded by the run's seed); Optuna runs
its default sampler as it comes (TPE, whose first 10 trials are random), random search
draws uniformly.

* pfnkit: `pfnkit.bo.minimize` with its defaults (expected improvement climbed through
  its log, the rank warp of the values) and the given checkpoint, loaded once.
* BoTorch: the loop of its tutorials: `SingleTaskGP` with its default priors and
  outcome standardization on the unit cube, `fit_gpytorch_mll`, `LogExpectedImprovement`
  (Ament et al., arXiv 2310.20708) and `optimize_acqf` with 10 restarts and 512 raw
  samples.
* Optuna: `TPESampler(seed=seed)`, the default sampler, through ask and tell.
* random: uniform points of the box.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from bo_problems import Problem

__all__ = ["METHODS", "Trace", "botorch_step", "run_method"]

BOTORCH_RESTARTS = 10  # optimize_acqf's num_restarts, as in BoTorch's tutorials
BOTORCH_RAW_SAMPLES = 512  # optimize_acqf's raw_samples


@dataclass(frozen=True)
class Trace:
    """One run.

    Attributes:
        ys: (budget,) values in the order evaluated.
        step_seconds: (budget,) the optimiser's own seconds per evaluation (f excluded).
    """

    ys: np.ndarray
    step_seconds: np.ndarray


def sobol_design(dim: int, n: int, seed: int) -> np.ndarray:
    """(n, dim) scrambled Sobol points of the unit cube, seeded."""
    engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
    return engine.draw(n, dtype=torch.float64).numpy()


# ------------------------------------------------------------------------------ pfnkit
def run_pfnkit(problem: Problem, budget: int, n_init: int, seed: int, checkpoint: object) -> Trace:
    from pfnkit.bo import minimize

    result = minimize(
        problem, problem.bounds, budget, n_init=n_init, checkpoint=checkpoint, seed=seed
    )
    return Trace(ys=result.ys, step_seconds=result.ask_seconds)


# ----------------------------------------------------------------------------- BoTorch
def botorch_step(u_nd: np.ndarray, y_n: np.ndarray) -> np.ndarray:
    """BoTorch's next unit-cube point after observations (u, y), for minimisation."""
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    train_x = torch.as_tensor(u_nd, dtype=torch.float64)
    train_y = torch.as_tensor(y_n, dtype=torch.float64).unsqueeze(-1)
    with warnings.catch_warnings():  # BoTorch warns about fits that needed retries
        warnings.simplefilter("ignore")
        model = SingleTaskGP(train_x, train_y)  # Standardize(m=1) on y by default
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acqf = LogExpectedImprovement(model, best_f=train_y.min(), maximize=False)
        unit = torch.stack([torch.zeros(u_nd.shape[1]), torch.ones(u_nd.shape[1])]).double()
        candidate, _ = optimize_acqf(
            acqf, bounds=unit, q=1, num_restarts=BOTORCH_RESTARTS, raw_samples=BOTORCH_RAW_SAMPLES
        )
    return candidate.detach()[0].numpy()


def run_botorch(problem: Problem, budget: int, n_init: int, seed: int, checkpoint: object) -> Trace:
    u = sobol_design(problem.dim, n_init, seed)
    ys = list(problem.evaluate_unit(u))
    seconds = [0.0] * n_init
    us = list(u)
    with torch.random.fork_rng():  # optimize_acqf draws from torch's global generator
        torch.manual_seed(seed)
        while len(ys) < budget:
            start = time.perf_counter()
            u_next = botorch_step(np.array(us), np.array(ys))
            seconds.append(time.perf_counter() - start)
            us.append(u_next)
            ys.append(float(problem.evaluate_unit(u_next[None])[0]))
    return Trace(ys=np.array(ys), step_seconds=np.array(seconds))


# ------------------------------------------------------------------------------ Optuna
def run_optuna(problem: Problem, budget: int, n_init: int, seed: int, checkpoint: object) -> Trace:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    low, high = problem.bounds.T
    ys, seconds = [], []
    for _ in range(budget):
        start = time.perf_counter()
        trial = study.ask()
        x = np.array([trial.suggest_float(f"x{i}", low[i], high[i]) for i in range(problem.dim)])
        asked = time.perf_counter() - start
        y = problem(x)
        start = time.perf_counter()
        study.tell(trial, y)
        seconds.append(asked + time.perf_counter() - start)
        ys.append(y)
    return Trace(ys=np.array(ys), step_seconds=np.array(seconds))


# ------------------------------------------------------------------------------ random
def run_random(problem: Problem, budget: int, n_init: int, seed: int, checkpoint: object) -> Trace:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    u = rng.random((budget, problem.dim))
    per_step = (time.perf_counter() - start) / budget
    return Trace(ys=problem.evaluate_unit(u), step_seconds=np.full(budget, per_step))


Runner = Callable[[Problem, int, int, int, object], Trace]
METHODS: dict[str, Runner] = {
    "pfnkit": run_pfnkit,
    "botorch": run_botorch,
    "optuna": run_optuna,
    "random": run_random,
}


def run_method(
    method: str, problem: Problem, budget: int, n_init: int, seed: int, checkpoint: object
) -> Trace:
    """Run one method; logging of the libraries stays at WARNING."""
    logging.getLogger("botorch").setLevel(logging.WARNING)
    trace = METHODS[method](problem, budget, n_init, seed, checkpoint)
    where = f"{method} on {problem.name}"
    if trace.ys.shape != (budget,):
        raise RuntimeError(f"{where}: values of shape {trace.ys.shape}, expected ({budget},)")
    if not np.isfinite(trace.ys).all():
        bad = np.flatnonzero(~np.isfinite(trace.ys))
        raise RuntimeError(f"{where}: non-finite values at evaluations {(bad + 1).tolist()}")
    return trace
