"""Inference benchmark: PFNRegressor latency, cached against uncached passes, growth and memory.

Run:  python benchmarks/inference.py [--checkpoint gp-rbf] [--dtype float32] [--chunk 4096]
          [--repeats 3] [--gp-max-n 10000] [--gp-timeout 600] [--json out.json] [--smoke]
          [--methods-only] [--methods-repeats 7]

Times are medians of --repeats calls after one warm-up call (time.perf_counter, CPU, torch's
default thread count). It measures:
1. Latency at 100 context points x 1000 queries: `reg.fit` then `reg.predict` (the context is
   encoded once and cached), against one uncached pass `model(x_ctx, y_ctx, x_qry)` that
   re-encodes the context jointly with the queries; then 10 predictions of 100 queries each,
   cached (one `encode_context`, 10 `predict_from_cache`) against 10 uncached passes.
2. Growth with the context size N (1000 queries) and the number of queries M (N=100): fit,
   encode and predict times, peak memory, and the fitted exponents d log(time) / d log(size).
3. Peak memory: each measurement runs in its own process, forked from this one after the
   imports (torch, lightning and gpytorch take seconds to import, too long to repeat in a fresh
   interpreter per measurement) and before any tensor work. The child reports `ru_maxrss`, its
   own peak RSS (a forked child's maxrss starts from its RSS at the fork, not from the
   parent's peak), and the increase over its RSS after loading the model.
4. gpytorch's exact GP (float64 Cholesky, RBF, fixed hyperparameters) on the same data.
5. First, what a user call costs (`inference_methods.py`): each estimator method on the
   defaults (`PFNRegressor()`, `PFNClassifier()`, and `PFNRegressor` on --checkpoint), in
   float32 and float64, against the raw float32 forward pass of the same model on the same
   inputs, per member and in total, median of --methods-repeats; and what float64 buys over
   float32 (largest prediction differences). `--methods-only` stops there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
from inference_methods import (
    METHOD_SIZES,
    METHOD_SMOKE,
    measure_methods,
    measure_precision,
    methods_table,
    precision_table,
)
from rich.console import Console
from rich.table import Table

from pfnkit.estimators import PFNRegressor
from pfnkit.reference.exact_gp import GPHyperparameters, exact_gp_predictive

Result = dict[str, Any]
_EXTRAPOLATION_MARK = "trained on at most"  # the UserWarning PFNRegressor.fit emits


@dataclass(frozen=True, kw_only=True)
class Sizes:
    latency: tuple[int, int]  # (N, M) of the single fit + predict
    repeated: tuple[int, int]  # (number of predict calls, queries per call)
    n_sweep: tuple[tuple[int, ...], int]  # (N values, M)
    m_sweep: tuple[int, tuple[int, ...]]  # (N, M values)
    gp_max_n: int  # the exact GP runs up to this N


FULL = Sizes(
    latency=(100, 1000),
    repeated=(10, 100),
    n_sweep=((100, 1000, 10000), 1000),
    m_sweep=(100, (100, 1000, 10000, 100000)),
    gp_max_n=10000,
)
SMOKE = Sizes(latency=(100, 100), repeated=(10, 10), n_sweep=((10, 100), 100),
              m_sweep=(100, (10, 100)), gp_max_n=100)  # fmt: skip


# ----------------------------------------------------------------------- child side
def make_data(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x ~ U[0, 1], y = sin(2πx) + 0.1·noise for n context points, then m query inputs."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(n, 1))
    y = np.sin(2 * np.pi * x[:, 0]) + 0.1 * rng.standard_normal(n)
    return x, y, rng.uniform(0, 1, size=(m, 1))


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls of fn after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(baseline_mib: float, **seconds: float) -> Result:
    """The child's result: its times, fit + predict, and its peak RSS against the baseline."""
    if "fit_s" in seconds and "predict_s" in seconds:
        seconds["total_s"] = seconds["fit_s"] + seconds["predict_s"]
    peak = peak_rss_mib()
    return {**seconds, "peak_mib": peak, "increase_mib": peak - baseline_mib}


def loaded_regressor(args: argparse.Namespace) -> PFNRegressor:
    """A regressor fitted to two points, so imports and model load precede the baseline."""
    reg = PFNRegressor(checkpoint=args.checkpoint, dtype=args.dtype, query_chunk_size=args.chunk)
    X, y, _ = make_data(2, 0)
    return reg.fit(X, y)


def time_fit(reg: PFNRegressor, X: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, bool]:
    """Median fit time and whether fit warned that N exceeds the checkpoint's training sizes."""
    with warnings.catch_warnings(record=True) as caught:  # recorded, so never shown
        warnings.simplefilter("always")
        seconds = median_seconds(lambda: reg.fit(X, y), repeats)
    return seconds, any(_EXTRAPOLATION_MARK in str(w.message) for w in caught)


def model_inputs(reg: PFNRegressor, *arrays: np.ndarray) -> list[torch.Tensor]:
    """x arrays then the context y, mapped (and padded, clipped) as `reg` does, as (1, ...)."""
    model = reg.checkpoint_.model
    *xs, y = arrays
    d = model.config.num_features
    out = [np.pad(reg.mapping_.map_x(x), ((0, 0), (0, d - x.shape[1]))) for x in xs]
    borders = model.borders.cpu().numpy()
    out.append(np.clip(reg.mapping_.map_y(y), borders[0], borders[-1]))
    return [torch.as_tensor(a, dtype=model.borders.dtype)[None] for a in out]


def child_pfn(args: argparse.Namespace, n: int, m: int) -> Result:
    X, y, Xq = make_data(n, m)
    reg = loaded_regressor(args)
    base = peak_rss_mib()
    fit_s, extrapolated = time_fit(reg, X, y, args.repeats)
    model = reg.checkpoint_.model
    x_ctx, y_ctx = model_inputs(reg, X, y)
    with torch.no_grad():
        encode_s = median_seconds(lambda: model.encode_context(x_ctx, y_ctx), args.repeats)
    predict_s = median_seconds(lambda: reg.predict(Xq), args.repeats)
    result = measured(base, fit_s=fit_s, encode_s=encode_s, predict_s=predict_s)
    return {**result, "extrapolated": extrapolated}


def child_latency(args: argparse.Namespace, sizes: Sizes) -> Result:
    (n, m), (calls, m_call) = sizes.latency, sizes.repeated
    X, y, Xq = make_data(n, m)
    reg = loaded_regressor(args)
    base = peak_rss_mib()
    fit_s, _ = time_fit(reg, X, y, args.repeats)
    predict_s = median_seconds(lambda: reg.predict(Xq), args.repeats)
    model = reg.checkpoint_.model
    x_ctx, x_qry, y_ctx = model_inputs(reg, X, Xq, y)
    x_calls = model_inputs(reg, *np.array_split(make_data(n, calls * m_call)[2], calls), y)[:-1]

    def cached() -> None:
        cache = model.encode_context(x_ctx, y_ctx)
        for x_call in x_calls:
            model.predict_from_cache(cache, x_call, chunk_size=args.chunk).mean  # noqa: B018

    def uncached() -> None:
        for x_call in x_calls:
            model(x_ctx, y_ctx, x_call).mean  # noqa: B018

    with torch.no_grad():
        uncached_s = median_seconds(lambda: model(x_ctx, y_ctx, x_qry).mean, args.repeats)
        cached_calls_s = median_seconds(cached, args.repeats)
        uncached_calls_s = median_seconds(uncached, args.repeats)
    return measured(base, fit_s=fit_s, predict_s=predict_s, uncached_s=uncached_s,
                    cached_calls_s=cached_calls_s, uncached_calls_s=uncached_calls_s)  # fmt: skip


def child_gp(args: argparse.Namespace, n: int, m: int) -> Result:
    x_ctx, y_ctx, x_qry = (torch.from_numpy(a) for a in make_data(n, m))
    lengthscale = torch.tensor([0.2], dtype=torch.float64)
    hyper = GPHyperparameters(lengthscale=lengthscale, outputscale=1.0, noise=0.01, kernel="rbf")
    base = peak_rss_mib()
    seconds = median_seconds(
        lambda: exact_gp_predictive(x_ctx, y_ctx, x_qry, hyper).variance, args.repeats
    )
    return measured(base, total_s=seconds)


def child_methods(args: argparse.Namespace) -> Result:
    sizes = METHOD_SMOKE if args.smoke else METHOD_SIZES
    return {
        "times": measure_methods(
            args.checkpoint, sizes, args.methods_repeats, ("float32", "float64")
        ),
        "precision": measure_precision(args.checkpoint, sizes),
    }


def _child_main(sender: Connection, fn: Callable[..., Result], fn_args: tuple) -> None:
    try:
        sender.send(("ok", fn(*fn_args)))
    except BaseException:
        sender.send(("error", traceback.format_exc()))


# ---------------------------------------------------------------------- parent side
def run_isolated(fn: Callable[..., Result], *fn_args: Any, timeout: float | None = None) -> Any:
    """fn(*fn_args) in a forked process of its own; None if it ran past `timeout` seconds."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, fn, fn_args))
    process.start()
    sender.close()
    if not receiver.poll(timeout):
        process.terminate()
        process.join()
        return None
    status, payload = receiver.recv()
    process.join()
    if status == "error":
        raise RuntimeError(f"{fn.__name__}{fn_args[1:]} failed in its child process:\n{payload}")
    return payload


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:,.1f}"


def memory(result: Result) -> str:
    return f"{result['peak_mib']:,.0f} (+{result['increase_mib']:,.0f})"


def latency_table(r: Result, sizes: Sizes) -> Table:
    (n, m), (calls, m_call) = sizes.latency, sizes.repeated
    table = Table(title=f"Latency: N={n:,} context points, M={m:,} queries")
    table.add_column("measurement")
    table.add_column("ms", justify="right")
    rows = [
        ("cached: reg.fit (validates, maps and encodes the context)", "fit_s"),
        ("cached: reg.predict", "predict_s"),
        ("cached: reg.fit + reg.predict", "total_s"),
        ("uncached: model(x_ctx, y_ctx, x_qry)", "uncached_s"),
        (f"cached: encode_context + {calls} x predict_from_cache, {m_call} queries each",
         "cached_calls_s"),
        (f"uncached: {calls} x model(x_ctx, y_ctx, x_qry), {m_call} queries each",
         "uncached_calls_s"),
    ]  # fmt: skip
    for label, key in rows:
        table.add_row(label, ms(r[key]))
    table.caption = (
        f"uncached / cached: {r['uncached_s'] / r['total_s']:.2f}x for one fit + predict, "
        f"{r['uncached_calls_s'] / r['cached_calls_s']:.2f}x for {calls} predictions; "
        f"peak RSS {memory(r)} MiB"
    )
    return table


def sweep_table(
    title: str, axis: int, points: list[tuple[int, int]], pfn: dict, gp: dict, gp_max_n: int
) -> Table:
    caption = (
        "MiB: peak RSS (+ increase over the RSS after model load); * N is above the "
        "checkpoint's training context sizes (its UserWarning is suppressed)"
    )
    table = Table(title=title, caption=caption)
    columns = ("N" if axis == 0 else "M", "fit ms", "encode ms", "predict ms", "PFN MiB")
    for column in (*columns, "exact GP ms", "GP MiB", "GP/PFN"):
        table.add_column(column, justify="right")
    for point in points:
        p, g = pfn[point], gp[point]
        size = f"{point[axis]:,}{'*' if p['extrapolated'] else ''}"
        if g is not None:
            gp_cells = [ms(g["total_s"]), memory(g), f"{g['total_s'] / p['total_s']:.2f}"]
        elif point[0] > gp_max_n:
            gp_cells = [f"skipped (N > {gp_max_n:,})", "", ""]
        else:
            gp_cells = ["timeout", "", ""]
        cells = (ms(p["fit_s"]), ms(p["encode_s"]), ms(p["predict_s"]), memory(p))
        table.add_row(size, *cells, *gp_cells)
    return table


def exponent(sizes: list[int], seconds: list[float | None]) -> float | None:
    """Slope of log(time) against log(size) over the sizes that have a time."""
    pairs = [(s, t) for s, t in zip(sizes, seconds, strict=True) if t is not None]
    if len(pairs) < 2:
        return None
    log_size, log_time = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return float(np.polyfit(log_size, log_time, 1)[0])


def exponents(points: list[tuple[int, int]], axis: int, pfn: dict, gp: dict) -> Result:
    sizes = [point[axis] for point in points]
    keys = ("fit_s", "encode_s", "predict_s", "total_s")
    out = {key: exponent(sizes, [pfn[p][key] for p in points]) for key in keys}
    out["gp_s"] = exponent(sizes, [gp[p]["total_s"] if gp[p] else None for p in points])
    return out


def exponent_table(growth: dict[str, Result]) -> Table:
    table = Table(title="Growth exponents: slope of log(time) against log(size)")
    for column in ("sweep", "fit", "encode", "predict", "fit + predict", "exact GP"):
        table.add_column(column, justify="left" if column == "sweep" else "right")
    for sweep, slopes in growth.items():
        table.add_row(sweep, *("n/a" if v is None else f"{v:.2f}" for v in slopes.values()))
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="gp-rbf", help="short name or path")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--chunk", type=int, default=4096, help="query_chunk_size")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median is kept")
    parser.add_argument("--gp-max-n", type=int, help="largest N for the exact GP (default 10000)")
    parser.add_argument("--gp-timeout", type=float, default=600.0, help="seconds per GP child")
    parser.add_argument("--json", help="write every number to this path")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 1 repeat")
    parser.add_argument(
        "--methods-repeats",
        type=int,
        default=7,
        help="timed calls of each estimator method; the median is kept",
    )
    parser.add_argument(
        "--methods-only",
        action="store_true",
        help="only the estimator methods against the raw float32 pass",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats = args.methods_repeats = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    gp_max_n = min(args.gp_max_n or sizes.gp_max_n, sizes.gp_max_n)
    n_points = [(n, sizes.n_sweep[1]) for n in sizes.n_sweep[0]]
    m_points = [(sizes.m_sweep[0], m) for m in sizes.m_sweep[1]]
    points = sorted(set(n_points) | set(m_points))
    console = Console(width=120)  # the tables' full width, also when piped to a file
    console.print("measuring the estimator methods against the raw float32 forward pass")
    methods = run_isolated(child_methods, args)
    method_sizes = METHOD_SMOKE if args.smoke else METHOD_SIZES
    console.print(methods_table(methods["times"], method_sizes, args.methods_repeats))
    console.print(precision_table(methods["precision"]))
    if args.methods_only:
        if args.json:
            with open(args.json, "w") as handle:
                json.dump({"config": vars(args), "methods": methods}, handle, indent=2)
        return 0
    gp_points = [p for p in points if p[0] <= gp_max_n]
    # no spinner: a live-display thread in this process could hold a lock across a fork
    console.print(f"measuring {1 + len(points) + len(gp_points)} points, one process each")
    latency = run_isolated(child_latency, args, sizes)
    pfn = {p: run_isolated(child_pfn, args, *p) for p in points}
    gp = {p: run_isolated(child_gp, args, *p, timeout=args.gp_timeout) for p in gp_points}
    gp = {p: gp.get(p) for p in points}
    console.print(
        f"checkpoint {args.checkpoint}, dtype {args.dtype}, query_chunk_size {args.chunk}; "
        f"median of {args.repeats} after a warm-up; exact GP in float64"
    )
    console.print(latency_table(latency, sizes))
    n_title = f"Growth with context size N (M={sizes.n_sweep[1]:,} queries)"
    m_title = f"Growth with the number of queries M (N={sizes.m_sweep[0]:,})"
    console.print(sweep_table(n_title, 0, n_points, pfn, gp, gp_max_n))
    console.print(sweep_table(m_title, 1, m_points, pfn, gp, gp_max_n))
    growth = {"N": exponents(n_points, 0, pfn, gp), "M": exponents(m_points, 1, pfn, gp)}
    console.print(exponent_table(growth))
    if args.json:
        report = {
            "config": vars(args),
            "sizes": asdict(sizes),
            "methods": methods,
            "latency": latency,
            "points": [{"n": n, "m": m, "pfn": pfn[n, m], "gp": gp[n, m]} for n, m in points],
            "exponents": growth,
        }
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
