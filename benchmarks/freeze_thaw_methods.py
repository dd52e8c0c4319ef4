"""The optimisers of the freeze-thaw benchmark, each run on a lookup table of learning curves.

Every method spends a budget of epochs on a `LookupBenchmark` (benchmarks/lc_data.py): to
"train" configuration i to epoch t it reads row i's errors up to t, and it pays for every
epoch it reads (a configuration resumed from epoch e to t pays t − e; one started again
from scratch pays again). A run returns its trace: after each paid epoch, the lowest
error observed so far at any epoch (the incumbent, as `FreezeThaw.best()` defines it).

* ``freeze-thaw``: `pfnkit.bo.FreezeThaw` (log-EI at a random look-ahead, one epoch per
  decision) on the exact freeze-thaw GP (or on the surrogate passed);
* ``freeze-thaw-pfn``: the same optimiser on a PFN trained on the freeze-thaw prior
  (`pfnkit.bo.freeze_thaw_pfn.PFNFreezeThawSurrogate`, ifBO-style), which must be passed;
* ``hyperband``: Optuna's `HyperbandPruner` (min resource 1 epoch, max T, reduction
  factor 3) over a study that draws configurations uniformly (`RandomSampler`) and reports
  the error after every epoch; a pruned trial stops there (Li et al., arXiv 1603.06560);
* ``random``: configurations in a random order, each trained to T epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from lc_data import LookupBenchmark

from pfnkit.bo import FreezeThaw
from pfnkit.bo.freeze_thaw_pfn import PFNFreezeThawSurrogate
from pfnkit.bo.freeze_thaw_surrogate import ExactFreezeThawSurrogate, FreezeThawSurrogate

__all__ = ["METHODS", "SURROGATE_METHODS", "Trace", "run_method"]


@dataclass
class Trace:
    """Incumbent after each paid epoch, and the seconds each decision took (surrogates)."""

    incumbent: list[float] = field(default_factory=list)
    decision_seconds: list[float] = field(default_factory=list)

    def pay(self, value: float) -> None:
        """One more epoch, whose observed error is `value`."""
        best = min(value, self.incumbent[-1]) if self.incumbent else value
        self.incumbent.append(best)


def run_freeze_thaw(
    bench: LookupBenchmark, seed: int, budget: int, surrogate: FreezeThawSurrogate | None = None
) -> Trace:
    """FreezeThaw, one epoch per decision, until `budget` epochs are paid (or all are done)."""
    ft = FreezeThaw(bench.configs, bench.max_epoch, seed=seed,
                    surrogate=surrogate or ExactFreezeThawSurrogate())  # fmt: skip
    trace = Trace()
    total = bench.max_epoch * len(bench.configs)
    while len(trace.incumbent) < min(budget, total):
        start = time.perf_counter()
        i, epoch = ft.ask()
        trace.decision_seconds.append(time.perf_counter() - start)
        for t in range(ft.epochs_trained(i) + 1, epoch + 1):
            value = float(bench.errors[i, t - 1])
            ft.tell(i, t, value)
            trace.pay(value)
    del trace.incumbent[budget:]
    return trace


def run_random(bench: LookupBenchmark, seed: int, budget: int) -> Trace:
    """Configurations in a seeded random order, each trained to max_epoch."""
    trace = Trace()
    for i in np.random.default_rng(seed).permutation(len(bench.configs)):
        for value in bench.errors[i]:
            if len(trace.incumbent) == budget:
                return trace
            trace.pay(float(value))
    return trace


def run_hyperband(bench: LookupBenchmark, seed: int, budget: int) -> Trace:
    """Optuna's Hyperband over uniformly drawn configurations, reading errors epoch by epoch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=bench.max_epoch, reduction_factor=3
    )
    study = optuna.create_study(  # the name seeds Hyperband's bracket of each trial
        study_name=f"freeze-thaw-hyperband-{seed}", direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=seed), pruner=pruner,
    )  # fmt: skip
    trace = Trace()

    def objective(trial: optuna.Trial) -> float:
        i = trial.suggest_int("config", 0, len(bench.configs) - 1)
        value = float("nan")
        for t in range(1, bench.max_epoch + 1):
            if len(trace.incumbent) == budget:
                raise optuna.TrialPruned()  # the budget is spent; the loop below ends
            value = float(bench.errors[i, t - 1])
            trace.pay(value)
            trial.report(value, t)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    while len(trace.incumbent) < budget:
        study.optimize(objective, n_trials=1)
    return trace


Runner = Callable[[LookupBenchmark, int, int], Trace]
SURROGATE_METHODS = ("freeze-thaw", "freeze-thaw-pfn")  # FreezeThaw; they take a surrogate
METHODS: dict[str, Runner] = {
    "freeze-thaw": run_freeze_thaw,
    "freeze-thaw-pfn": run_freeze_thaw,
    "hyperband": run_hyperband,
    "random": run_random,
}


def run_method(
    name: str, bench: LookupBenchmark, seed: int, budget: int,
    surrogate: FreezeThawSurrogate | None = None,
) -> Trace:  # fmt: skip
    """Run method `name` (a key of METHODS); `surrogate` replaces freeze-thaw's exact GP."""
    if name == "freeze-thaw-pfn" and not isinstance(surrogate, PFNFreezeThawSurrogate):
        raise ValueError("freeze-thaw-pfn runs on a PFNFreezeThawSurrogate; pass one")
    if name in SURROGATE_METHODS:
        return run_freeze_thaw(bench, seed, budget, surrogate)
    return METHODS[name](bench, seed, budget)
