"""Bayesian-optimisation benchmark: pfnkit against BoTorch, Optuna and random search.

Run:  OMP_NUM_THREADS=1 python benchmarks/bo.py [--seeds 10] [--budget 50]
          [--functions a,b] [--methods pfnkit,botorch,optuna,random] [--n-init K]
          [--checkpoint NAME] [--timing-evals 100] [--timing-repeats 3]
          [--timing-function hartmann6] [--no-timing] [--json out.json] [--markdown]
          [--plot out.png] [--no-progress] [--smoke]

Side by side in one run, on 10 of BoTorch's synthetic test functions of 2 to 6
dimensions with known minima (`bo_problems.py`), each with seeds 0..S-1 and the same
budget of evaluations for every method (`bo_methods.py`): pfnkit (`pfnkit.bo.minimize`
and the checkpoint given, by default `pfnkit.bo.DEFAULT_CHECKPOINT`), BoTorch
(SingleTaskGP with its default priors, fit_gpytorch_mll, LogExpectedImprovement,
optimize_acqf), Optuna's default sampler (TPE) and random search. pfnkit and BoTorch
start from a scrambled Sobol design of the same size (--n-init, by default
`pfnkit.bo.default_n_init(d)` = d + 1).

Printed (`bo_report.py`): the median simple regret (best value so far minus the known
minimum) at 25%, 50% and 100% of the budget per function and method, with each
optimiser's own milliseconds per step after the initial design (the objective's time
excluded); the mean rank of each method at the final budget over functions x seeds.
Apart from the runs (`bo_timing.py`), pfnkit's and BoTorch's step times are measured on
the same history of --timing-evals observations of --timing-function. The issue's two
targets are printed with whether each is met (never asserted): pfnkit's mean rank at
most BoTorch's, and BoTorch's step time at least 10 times pfnkit's at 100 observations.
--plot draws log10 regret against evaluations (`bo_plots.py`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bo_methods import METHODS, run_method
from bo_problems import SMOKE_PROBLEMS, Problem, problems_by_name
from bo_report import Results, markdown_tables, rank_table, regret_table, summarize
from bo_timing import STEP_TIME_RATIO_TARGET, step_time_ratio
from rich.console import Console
from rich.progress import track

from pfnkit.bo import DEFAULT_CHECKPOINT, default_n_init
from pfnkit.checkpoint import load_checkpoint

SMOKE = {
    "seeds": 2,
    "budget": 6,
    "timing_evals": 8,
    "timing_repeats": 1,
    "timing_function": "hartmann3",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..S-1 per function")
    p.add_argument("--budget", type=int, default=50, help="evaluations per run, design included")
    p.add_argument("--functions", help="comma-separated subset of bo_problems.PROBLEMS")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--n-init", type=int, help="initial design of pfnkit and BoTorch (default d+1)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="pfnkit's surrogate")
    p.add_argument("--timing-evals", type=int, default=100, help="observations of the timing")
    p.add_argument("--timing-repeats", type=int, default=3, help="timed steps per method")
    p.add_argument("--timing-function", default="hartmann6", help="function of the timing")
    p.add_argument("--no-timing", action="store_true", help="skip the step-time measurement")
    p.add_argument("--json", help="write the summary, curves and timing to this file")
    p.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    p.add_argument("--plot", help="write regret against evaluations to this PNG")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--smoke",
        action="store_true",
        help=f"{', '.join(SMOKE_PROBLEMS)}; seeds, budget and timing {SMOKE}",
    )
    args = p.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.functions = args.functions or ",".join(SMOKE_PROBLEMS)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or not args.methods:
        p.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    return args


def n_init_for(problem: Problem, args: argparse.Namespace) -> int:
    n_init = default_n_init(problem.dim) if args.n_init is None else args.n_init
    if not 1 <= n_init <= args.budget:
        raise SystemExit(f"--n-init {n_init} must lie in [1, --budget {args.budget}]")
    return n_init


def run_all(args: argparse.Namespace, problems: list[Problem], checkpoint: object) -> Results:
    """Every method on every problem and seed; regret curves and step times."""
    results = Results(budget=args.budget)
    jobs = [(p, seed, m) for p in problems for seed in range(args.seeds) for m in args.methods]
    curves: dict[tuple[str, str], list] = {}
    seconds: dict[tuple[str, str], list] = {}
    for problem, seed, method in track(jobs, description="runs", disable=args.no_progress):
        results.n_init[problem.name] = n_init_for(problem, args)
        trace = run_method(
            method, problem, args.budget, results.n_init[problem.name], seed, checkpoint
        )
        curves.setdefault((problem.name, method), []).append(problem.regret(trace.ys))
        seconds.setdefault((problem.name, method), []).append(trace.step_seconds)
    results.regret = {key: np.stack(value) for key, value in curves.items()}
    results.step_seconds = {key: np.stack(value) for key, value in seconds.items()}
    return results


def targets(summary: dict[str, Any], timing: dict[str, Any] | None) -> dict[str, dict]:
    """The issue's targets, each with its figures and whether it is met."""
    out: dict[str, dict] = {}
    ranks = summary["mean_rank"]
    if {"pfnkit", "botorch"} <= set(ranks):
        out["mean_rank"] = {
            "pfnkit": ranks["pfnkit"],
            "botorch": ranks["botorch"],
            "met": ranks["pfnkit"] <= ranks["botorch"],
        }
    if timing is not None:
        out["step_time_ratio"] = {
            "ratio": timing["ratio"],
            "target": STEP_TIME_RATIO_TARGET,
            "met": timing["ratio"] >= STEP_TIME_RATIO_TARGET,
        }
    return out


def print_report(console: Console, report: dict[str, Any], markdown: bool) -> None:
    summary, timing = report["summary"], report["timing"]
    console.print(regret_table(summary))
    console.print(rank_table(summary))
    if markdown:
        console.print(markdown_tables(summary), markup=False, highlight=False, soft_wrap=True)
    if timing is not None:
        console.print(
            f"step time at {timing['n_observations']} observations of {timing['function']} "
            f"(median of {timing['repeats']}): BoTorch {timing['botorch_median_s']:.3f} s, "
            f"pfnkit {timing['pfnkit_median_s']:.3f} s, ratio {timing['ratio']:.1f}x",
            highlight=False,
        )
    verdict = {True: "met", False: "MISSED"}
    if "mean_rank" in report["targets"]:
        rank = report["targets"]["mean_rank"]
        console.print(
            f"target mean rank: pfnkit {rank['pfnkit']:.2f} <= BoTorch "
            f"{rank['botorch']:.2f}: {verdict[rank['met']]}",
            highlight=False,
        )
    if "step_time_ratio" in report["targets"]:
        ratio = report["targets"]["step_time_ratio"]
        console.print(
            f"target step time: BoTorch / pfnkit = {ratio['ratio']:.1f} >= "
            f"{ratio['target']:g}: {verdict[ratio['met']]}",
            highlight=False,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problems = problems_by_name(args.functions)
    checkpoint = load_checkpoint(args.checkpoint) if "pfnkit" in args.methods else None
    start = time.perf_counter()
    results = run_all(args, problems, checkpoint)
    timing = None
    if not args.no_timing and checkpoint is not None and "botorch" in args.methods:
        (timed,) = problems_by_name(args.timing_function)
        timing = step_time_ratio(timed, args.timing_evals, args.timing_repeats, 0, checkpoint)
    summary = summarize(results)
    report = {
        "command": shlex.join(["python", "benchmarks/bo.py", *(argv or sys.argv[1:])]),
        "checkpoint": args.checkpoint,
        "seeds": args.seeds,
        "summary": summary,
        "timing": timing,
        "targets": targets(summary, timing),
        "regret_curves": {f"{f}/{m}": r.tolist() for (f, m), r in results.regret.items()},
        "wall_seconds": time.perf_counter() - start,
    }
    console = Console(width=max(Console().width, 100))
    print_report(console, report, args.markdown)
    console.print(f"wall time {report['wall_seconds']:.0f} s", highlight=False)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        console.print(f"wrote {args.json}")
    if args.plot:
        from bo_plots import plot_regret

        console.print(f"wrote {plot_regret(results, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
