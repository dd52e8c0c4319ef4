"""Fit one set of freeze-thaw GP hyperparameters to the real learning curves (the prior's defaults).

The defaults of `priors.learning_curves.FreezeThawPriorConfig` (and of the optimiser's exact
surrogate) come from this fit. Per table of benchmarks/data, four designs of 25 random
configurations each observe a prefix of their curve (0, 1, 2, 3, 5, 8, 12, 20 or 30
epochs, drawn per configuration); the score is the exact GP's predictive NLL of the
final-epoch errors (`pfnkit.reference.freeze_thaw`), averaged over designs and then over
tables, so no one dataset decides. Nelder-Mead minimises it over the log of the positive
hyperparameters, μ and the amplitude mean m_a. ``--leave-one-out`` refits on five tables,
from the same START and with the same evaluation budget as the full fit (so the held-out
table leaks in nowhere), and scores the sixth, a check that the fit does not just
memorise; ``--out JSON`` writes the fit and, per held-out table, the hyperparameters fitted
without it, which ``benchmarks/freeze_thaw.py --hyperparameters JSON`` runs on for an
out-of-sample comparison.

    OMP_NUM_THREADS=1 python benchmarks/lc_fit.py --leave-one-out --out lc_fit.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from lc_data import LookupBenchmark, load_learning_curves
from scipy.optimize import minimize

from pfnkit.reference.freeze_thaw import FreezeThawHyperparameters, freeze_thaw_predictive

PREFIXES = (0, 1, 2, 3, 5, 8, 12, 20, 30)  # epochs observed per configuration, drawn uniformly
START = [0.15, math.log(0.5), math.log(0.01), math.log(0.01), 0.0, math.log(0.1),
         math.log(1e-3), 0.4, math.log(0.04)]  # fmt: skip
PAPER_LIKE = FreezeThawHyperparameters(  # the prior's defaults before this fit
    mean=0.4, lengthscale=0.5, outputscale=0.01, curve_scale=0.02, alpha=1.0, beta=0.1, noise=1e-4
)

Design = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def design(bench: LookupBenchmark, rng: np.random.Generator, n_configs: int = 25) -> Design:
    """Context rows and values (observed prefixes), query rows and values (final epochs)."""
    idx = rng.choice(len(bench.configs), size=min(n_configs, len(bench.configs)), replace=False)
    t_max = bench.max_epoch
    x_ctx, y_ctx, x_qry, y_qry = [], [], [], []
    for i in idx:
        for t in range(1, int(rng.choice(PREFIXES)) + 1):
            x_ctx.append([*bench.configs[i], t / t_max])
            y_ctx.append(bench.errors[i, t - 1])
        x_qry.append([*bench.configs[i], 1.0])
        y_qry.append(bench.errors[i, -1])
    d = bench.configs.shape[1]
    return (torch.tensor(x_ctx, dtype=torch.float64).reshape(-1, d + 1),
            torch.tensor(y_ctx, dtype=torch.float64), torch.tensor(x_qry, dtype=torch.float64),
            torch.tensor(y_qry, dtype=torch.float64))  # fmt: skip


def unpack(p: np.ndarray) -> FreezeThawHyperparameters:
    """Hyperparameters from the optimiser's vector (logs of the positive ones)."""
    return FreezeThawHyperparameters(
        mean=p[0], lengthscale=math.exp(p[1]), outputscale=math.exp(p[2]),
        curve_scale=math.exp(p[3]), alpha=math.exp(p[4]), beta=math.exp(p[5]),
        noise=math.exp(p[6]), amplitude_mean=p[7], amplitude_var=math.exp(p[8]),
    )  # fmt: skip


def score(hyper: FreezeThawHyperparameters, designs: dict[str, list[Design]]) -> dict[str, float]:
    """Mean final-epoch predictive NLL per table."""
    out = {}
    for name, cases in designs.items():
        nlls = [-float(freeze_thaw_predictive(xc, yc, xq, hyper).to_distribution()
                       .log_prob(yq).mean()) for xc, yc, xq, yq in cases]  # fmt: skip
        out[name] = float(np.mean(nlls))
    return out


def fit(designs: dict[str, list[Design]], start: list[float], max_evals: int) -> np.ndarray:
    """Nelder-Mead on the mean over tables of the final-epoch NLL."""

    def objective(p: np.ndarray) -> float:
        try:
            return float(np.mean(list(score(unpack(p), designs).values())))
        except (ValueError, RuntimeError):  # a non-positive-definite corner of the search
            return 1e3

    options = {"maxfev": max_evals, "xatol": 1e-4, "fatol": 1e-5, "adaptive": True}
    return minimize(objective, start, method="Nelder-Mead", options=options).x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-evals", type=int, default=2500)
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the fitted values here")
    parser.add_argument("--smoke", action="store_true", help="two tables, 20 evaluations")
    args = parser.parse_args(argv)
    tables = load_learning_curves()
    if args.smoke:
        tables = {name: tables[name] for name in ("wine-sgd", "digits-mlp")}
        args.max_evals = 20
    rng = np.random.default_rng(args.seed)
    designs = {name: [design(b, rng) for _ in range(4)] for name, b in tables.items()}
    start = time.perf_counter()
    best = fit(designs, START, args.max_evals)
    hyper = unpack(best)
    print(f"fitted in {time.perf_counter() - start:.0f} s: {hyper.to_dict()}")
    fitted, paper = score(hyper, designs), score(PAPER_LIKE, designs)
    for name in designs:
        print(f"  {name}: final-epoch NLL {fitted[name]:.3f} (old defaults {paper[name]:.3f})")
    out = {"all_tables": hyper.to_dict(), "leave_one_out": {}}
    if args.leave_one_out:
        out["leave_one_out"] = leave_one_out(designs, fitted, args.max_evals)
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


def leave_one_out(
    designs: dict[str, list[Design]], fitted: dict[str, float], max_evals: int
) -> dict[str, dict]:
    """Per table, the hyperparameters fitted on the others (from START, full budget)."""
    out = {}
    for held in designs:
        rest = {name: cases for name, cases in designs.items() if name != held}
        refit = unpack(fit(rest, START, max_evals))
        held_nll = score(refit, {held: designs[held]})[held]
        print(f"  fitted without {held}: its NLL {held_nll:.3f} (with it {fitted[held]:.3f})")
        out[held] = refit.to_dict()
    return out


if __name__ == "__main__":
    raise SystemExit(main())
