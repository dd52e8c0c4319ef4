"""Scaling benchmark: PFNRegressor time and peak memory up to 10k context points, 100k queries.

Run:  python benchmarks/scaling.py [--checkpoint gp-rbf] [--dtype float64] [--chunk 4096]
          [--repeats 3] [--gp-max-n 10000] [--gp-timeout 900] [--json out.json] [--smoke]

Three sweeps over (N context points, M queries), each point measured in a process of its
own with the harness of `benchmarks/inference.py` (forked after the imports, before any tensor
work; times are medians of --repeats calls after a warm-up; memory is the child's peak RSS and
its increase over the RSS after loading the model):
1. N from 100 to 10,000 at M = 1,000;
2. M from 100 to 100,000 at N = 1,000;
3. N = M from 100 to 10,000 (the last is the 10k x 10k point PFNRegressor must fit in 4 GiB).
For each sweep it fits growth exponents, the least-squares slope of log(time) and of
log(memory increase) against log(size). Memory should grow linearly: SDPA's fused kernels
never form an (N + M)² score matrix, and queries run in chunks of --chunk.
gpytorch's exact GP (float64 Cholesky) runs on the same data in the same run, with the
checkpoint prior's fixed hyperparameters read from its card.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from inference import (  # the harness of benchmarks/inference.py (this folder)
    Result,
    child_pfn,
    exponent,
    exponents,
    make_data,
    measured,
    median_seconds,
    peak_rss_mib,
    run_isolated,
    sweep_table,
)
from rich.console import Console
from rich.table import Table

from pfnkit.checkpoint import resolve_checkpoint
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive
from priors.gp import GPPriorConfig

__all__ = ["main"]

MEMORY_TARGET_MIB = 4096  # PFNRegressor at 10k context points x 10k queries


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """Points (N, M) along one axis: 0 varies N, 1 varies M (N = M sweeps use axis 0)."""

    title: str
    axis: int
    points: tuple[tuple[int, int], ...]


FULL = (
    Sweep(title="context size N (M=1,000 queries)", axis=0,
          points=((100, 1000), (300, 1000), (1000, 1000), (3000, 1000), (10000, 1000))),
    Sweep(title="queries M (N=1,000 context points)", axis=1,
          points=((1000, 100), (1000, 1000), (1000, 10000), (1000, 100000))),
    Sweep(title="N = M", axis=0,
          points=((100, 100), (1000, 1000), (10000, 10000))),
)  # fmt: skip
SMOKE = (
    Sweep(title="context size N (M=20 queries)", axis=0, points=((10, 20), (40, 20))),
    Sweep(title="queries M (N=20 context points)", axis=1, points=((20, 10), (20, 40))),
    Sweep(title="N = M", axis=0, points=((10, 10), (40, 40))),
)
FULL_GP_MAX_N, SMOKE_GP_MAX_N = 10000, 40


def card_hyperparameters(checkpoint: str) -> dict[str, Any]:
    """The fixed GP hyperparameters of a checkpoint's prior, as plain data from its card."""
    name, card_path, _ = resolve_checkpoint(checkpoint)
    card = json.loads(card_path.read_text())
    if card["prior_name"] != "gp":
        raise SystemExit(f"checkpoint {name!r} has prior {card['prior_name']!r}; need a GP prior")
    prior = GPPriorConfig.from_dict(card["prior_config"])
    scalars = {"outputscale": prior.outputscale, "noise": prior.noise}
    drawn = [k for k, h in [*scalars.items(), *(("lengthscale", h) for h in prior.lengthscale)]
             if h.family != "fixed"]  # fmt: skip
    if drawn:
        raise SystemExit(
            f"checkpoint {name!r} draws {sorted(set(drawn))} per task, but this benchmark runs "
            "the exact GP at fixed hyperparameters; use a checkpoint whose prior fixes them "
            "(e.g. gp-rbf)"
        )
    return {
        "kernel": prior.kernel,
        "lengthscale": [h.a for h in prior.lengthscale],
        "outputscale": prior.outputscale.a,
        "noise": prior.noise.a,
    }


def child_gp(args: argparse.Namespace, n: int, m: int) -> Result:
    """Exact GP predictive mean and variance at the card's hyperparameters (float64)."""
    x_ctx, y_ctx, x_qry = (torch.from_numpy(a) for a in make_data(n, m))
    card = args.hyper
    lengthscale = torch.tensor(card["lengthscale"], dtype=torch.float64)
    hyper = GPHyperparameters(lengthscale=lengthscale, outputscale=card["outputscale"],
                              noise=card["noise"], kernel=card["kernel"])  # fmt: skip
    base = peak_rss_mib()
    seconds = median_seconds(
        lambda: exact_gp_predictive(x_ctx, y_ctx, x_qry, hyper).variance, args.repeats
    )
    return measured(base, total_s=seconds)


def memory_exponent(sweep: Sweep, results: dict, key: str = "increase_mib") -> float | None:
    """Slope of log(memory increase) against log(size); points without an increase are left out."""
    values = [results[p][key] if results[p] and results[p][key] > 0 else None for p in sweep.points]
    return exponent([p[sweep.axis] for p in sweep.points], values)


def growth(sweep: Sweep, pfn: dict, gp: dict) -> Result:
    """Time exponents (fit, encode, predict, fit + predict, exact GP) and memory exponents."""
    out = exponents(list(sweep.points), sweep.axis, pfn, gp)
    return {**out, "pfn_mib": memory_exponent(sweep, pfn), "gp_mib": memory_exponent(sweep, gp)}


def exponent_table(fitted: dict[str, Result]) -> Table:
    table = Table(title="Growth exponents: least-squares slope on log-log axes")
    columns = {"fit_s": "fit", "encode_s": "encode", "predict_s": "predict",
               "total_s": "fit + predict", "pfn_mib": "PFN memory", "gp_s": "exact GP",
               "gp_mib": "GP memory"}  # fmt: skip
    table.add_column("sweep")
    for label in columns.values():
        table.add_column(label, justify="right")
    for title, slopes in fitted.items():
        cells = ("n/a" if slopes[k] is None else f"{slopes[k]:.2f}" for k in columns)
        table.add_row(title, *cells)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="gp-rbf", help="short name or path (GP prior)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                        help="PFNRegressor dtype (default: its own default, float64)")  # fmt: skip
    parser.add_argument("--chunk", type=int, default=4096, help="query_chunk_size")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median is kept")
    parser.add_argument("--gp-max-n", type=int, help="largest N for the exact GP (default 10000)")
    parser.add_argument("--gp-timeout", type=float, default=900.0, help="seconds per GP child")
    parser.add_argument("--json", help="write every number to this path")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 1 repeat")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sweeps = SMOKE if args.smoke else FULL
    gp_max_n = min(args.gp_max_n or FULL_GP_MAX_N, SMOKE_GP_MAX_N if args.smoke else FULL_GP_MAX_N)
    args.hyper = card_hyperparameters(args.checkpoint)  # the card only: no tensor work yet
    points = sorted({p for sweep in sweeps for p in sweep.points})
    gp_points = [p for p in points if p[0] <= gp_max_n]
    console = Console(width=max(Console().width, 120))
    # no spinner: a live-display thread in this process could hold a lock across a fork
    console.print(f"measuring {len(points) + len(gp_points)} points, one process each")
    pfn = {p: run_isolated(child_pfn, args, *p) for p in points}
    gp = {p: run_isolated(child_gp, args, *p, timeout=args.gp_timeout) for p in gp_points}
    gp = {p: gp.get(p) for p in points}
    console.print(
        f"checkpoint {args.checkpoint}, dtype {args.dtype}, query_chunk_size {args.chunk}; "
        f"median of {args.repeats} after a warm-up; exact GP in float64 at {args.hyper}"
    )
    fitted = {}
    for sweep in sweeps:
        console.print(sweep_table(f"Growth with {sweep.title}", sweep.axis, list(sweep.points),
                                  pfn, gp, gp_max_n))  # fmt: skip
        fitted[sweep.title] = growth(sweep, pfn, gp)
    console.print(exponent_table(fitted))
    n, m = sweeps[-1].points[-1]  # the largest N = M point
    console.print(
        f"PFNRegressor fit + predict at N={n:,}, M={m:,}: peak RSS {pfn[n, m]['peak_mib']:,.0f} "
        f"MiB (target at 10,000 x 10,000: <= {MEMORY_TARGET_MIB:,} MiB)"
    )
    if args.json:
        report = {
            "config": vars(args),
            "sweeps": [asdict(sweep) for sweep in sweeps],
            "points": [{"n": n, "m": m, "pfn": pfn[n, m], "gp": gp[n, m]} for n, m in points],
            "exponents": fitted,
            "memory_target_mib": MEMORY_TARGET_MIB,
        }
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
