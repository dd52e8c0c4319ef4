"""Bayesian optimisation quickstart: `minimize` with a PFN surrogate, then an ask/tell loop.

Run:  python examples/bo_quickstart.py [--n-evals 30] [--checkpoint NAME] [--smoke]

Part 1 minimises the Branin function (minimum 0.397887, reached at three points) with one
call. Part 2 drives the same optimiser by hand, as when evaluations run elsewhere (a lab,
a cluster): `ask` for points (several asks before any `tell` give a batch of distinct
points), evaluate them, `tell` the values, and `discard` a point whose evaluation failed.
Both use the default surrogate, `pfnkit.bo.DEFAULT_CHECKPOINT`, unless --checkpoint names
another.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from pfnkit.bo import DEFAULT_CHECKPOINT, AskTellOptimizer, minimize

BRANIN_BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]
BRANIN_MINIMUM = 0.397887


def branin(x: np.ndarray) -> float:
    """Branin-Hoo on [-5, 10] x [0, 15]."""
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10)


def flaky_lab(x: np.ndarray) -> float:
    """An experiment that fails (returns NaN) in one corner of the box."""
    return float("nan") if x[0] > 9.0 and x[1] > 13.0 else branin(x)


def one_call(n_evals: int, checkpoint: str) -> None:
    result = minimize(branin, BRANIN_BOUNDS, n_evals, checkpoint=checkpoint, seed=0)
    print(f"minimize: best f = {result.y_best:.4f} at x = {np.round(result.x_best, 3)} after "
          f"{result.n_evals} evaluations (regret {result.y_best - BRANIN_MINIMUM:.2g}); "
          f"{result.ask_seconds.sum():.1f} s spent proposing")  # fmt: skip


def ask_tell(n_rounds: int, batch: int, checkpoint: str) -> None:
    optimizer = AskTellOptimizer(BRANIN_BOUNDS, checkpoint=checkpoint, seed=1)
    failed = 0
    for _ in range(n_rounds):
        points = [optimizer.ask() for _ in range(batch)]  # a batch, all pending at once
        for x in points:  # evaluated "elsewhere", then told back in any order
            y = flaky_lab(x)
            if math.isfinite(y):
                optimizer.tell(x, y)
            else:  # never tell a NaN: forget the point instead
                optimizer.discard(x)
                failed += 1
    result = optimizer.result()
    print(f"ask/tell: {n_rounds} rounds of {batch}, {result.n_evals} values told, {failed} "
          f"failed; best f = {result.y_best:.4f} at x = {np.round(result.x_best, 3)}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-evals", type=int, default=30, help="budget of part 1")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="the PFN surrogate")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets for the test suite")
    args = parser.parse_args(argv)
    one_call(6 if args.smoke else args.n_evals, args.checkpoint)
    ask_tell(2 if args.smoke else 6, 3, args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
