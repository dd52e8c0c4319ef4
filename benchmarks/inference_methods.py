"""What a user call costs: each estimator method against the raw float32 forward pass.

Part of benchmarks/inference.py (`python benchmarks/inference.py --methods-only`). For each
case, the estimator is fitted with its default arguments (the dtype as given, else its
default), and its methods are timed on the queries; the reference is the raw model in
float32, one uncached pass ``model(x_ctx, y_ctx, x_qry)`` per ensemble member on exactly the
inputs that member reads (its view of the table, its targets or relabelled labels). The
ratio ``method time / raw float32 time`` is the cost of the method per unit of network
work: time per member over raw time per member, which equals total over total. The
estimator's predictions reuse the context encoded in `fit`, so a ratio below 1 is possible.
Each repeat times the raw passes and then every method, one after the other, so that all
of them share the machine's load of that moment; times are medians of `repeats` such
rounds after one warm-up round.

It also measures what float64 buys over the float32 default (`measure_precision`): the
largest differences between float32 and float64 predictions, and between float32
predictions made on all rows at once and in pieces, on the cases below and on sklearn's
diabetes table (real units).

Cases:
* `gp-rbf` (or `--checkpoint`): `PFNRegressor`, one member, N=100 context points, M=1000
  queries of the 1-feature sine task of benchmarks/inference.py;
* `PFNRegressor()` (`gp`, 4 members) and `PFNClassifier()` (`scm-clf`, 8 members) on a
  synthetic 300-row, 8-feature table, 1000 queries.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.table import Table
from sklearn.datasets import load_diabetes

from pfnkit.estimators import PFNClassifier, PFNRegressor

__all__ = [
    "METHOD_SIZES",
    "METHOD_SMOKE",
    "MethodSizes",
    "measure_methods",
    "measure_precision",
    "methods_table",
    "precision_table",
]

QUANTILE_LEVELS = (0.05, 0.5, 0.95)


@dataclass(frozen=True, kw_only=True)
class MethodSizes:
    single: tuple[int, int]  # (N, M) of the one-member regressor
    table: tuple[int, int, int]  # (N, M, features) of the ensemble defaults


METHOD_SIZES = MethodSizes(single=(100, 1000), table=(300, 1000, 8))
METHOD_SMOKE = MethodSizes(single=(20, 50), table=(30, 50, 3))


def sine_data(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x ~ U[0, 1], y = sin(2πx) + 0.1·noise (as benchmarks/inference.py), then m queries."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(n, 1))
    y = np.sin(2 * np.pi * x[:, 0]) + 0.1 * rng.standard_normal(n)
    return x, y, rng.uniform(0, 1, size=(m, 1))


def table_data(n: int, m: int, d: int, *, classes: int = 0) -> tuple[np.ndarray, ...]:
    """A synthetic table in raw units: skewed and offset columns, a nonlinear target."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n + m, d))
    x[:, ::2] = np.exp(x[:, ::2])  # skewed columns, as incomes or counts
    x = x * rng.uniform(1, 1000, size=d) + rng.uniform(-1e4, 1e4, size=d)
    z = np.tanh((x - x.mean(0)) / x.std(0)) @ rng.standard_normal(d)
    y = z + 0.3 * rng.standard_normal(n + m)
    if classes:
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    else:
        y = 5e4 + 1e3 * y  # real-scale targets, e.g. a price
    return x[:n], y[:n], x[n:]


def member_inputs(est: Any, x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> list[torch.Tensor]:
    """(E, N, D) context, (E, N) targets and (E, M, D) queries that each member reads, float32."""
    members = est._member_views()
    x_ctx = est.views_.transform(est.preprocessor_.transform(x))[members]
    x_qry = est.views_.transform(est._validate_queries(xq))[members]
    if isinstance(est, PFNClassifier):
        y_ctx = est.permutations_[est.members_[:, 1]][:, np.searchsorted(est.classes_, y)]
    else:
        y_ctx = np.broadcast_to(est._clip_context_targets(est.mapping_.map_y(y)), x_ctx.shape[:2])
    return [torch.tensor(np.array(a), dtype=torch.float32) for a in (x_ctx, y_ctx, x_qry)]


def raw_float32_passes(est: Any, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """One uncached float32 pass per member, on a float32 copy of the model."""
    model = copy.deepcopy(est.checkpoint_.model).float()
    x_ctx, y_ctx, x_qry = inputs

    def passes() -> None:
        with torch.no_grad():
            for e in range(x_ctx.shape[0]):
                model(x_ctx[e : e + 1], y_ctx[e : e + 1], x_qry[e : e + 1]).logits  # noqa: B018

    return passes


def interleaved_medians(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call over `repeats` rounds that time every call once, in turn."""
    for fn in calls.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _case(name: str, est: Any, data: tuple, methods: dict, repeats: int) -> dict[str, Any]:
    x, y, xq = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a context larger than trained
        est.fit(x, y)
    calls = {"raw float32 forward": raw_float32_passes(est, member_inputs(est, x, y, xq))}
    calls |= {method: (lambda f=fn: f(est, xq)) for method, fn in methods.items()}
    times = interleaved_medians(calls, repeats)
    raw_s = times.pop("raw float32 forward")
    return {"case": name, "dtype": est.dtype, "members": len(est._member_views()),
            "raw_float32_s": raw_s, "methods_s": times}  # fmt: skip


REGRESSOR_METHODS = {
    "predict": lambda est, xq: est.predict(xq),
    "predict_quantiles": lambda est, xq: est.predict_quantiles(xq, QUANTILE_LEVELS),
    "predict_distribution": lambda est, xq: est.predict_distribution(xq),
}
CLASSIFIER_METHODS = {
    "predict_proba": lambda est, xq: est.predict_proba(xq),
    "predict": lambda est, xq: est.predict(xq),
}


def measure_methods(
    checkpoint: str, sizes: MethodSizes, repeats: int, dtypes: tuple[str | None, ...] = (None,)
) -> list[dict[str, Any]]:
    """Every case in every dtype of `dtypes` (None: the estimator's default)."""
    n, m, d = sizes.table
    single = sine_data(*sizes.single)
    table = table_data(n, m, d)
    labelled = table_data(n, m, d, classes=3)
    results = []
    for dtype in dtypes:
        kwargs = {} if dtype is None else {"dtype": dtype}
        cases = [
            (f"PFNRegressor({checkpoint!r})", PFNRegressor(checkpoint=checkpoint, **kwargs),
             single, REGRESSOR_METHODS),
            ("PFNRegressor()", PFNRegressor(**kwargs), table, REGRESSOR_METHODS),
            ("PFNClassifier()", PFNClassifier(**kwargs), labelled, CLASSIFIER_METHODS),
        ]  # fmt: skip
        results += [_case(name, est, data, methods, repeats) for name, est, data, methods in cases]
    return results


def _gaps(fast: Any, exact: Any, xq: np.ndarray) -> dict[str, float]:
    """Largest float32-vs-float64 and float32 split differences over the queries xq.

    Regressors: in predictive standard deviations (of the float64 predictive); classifiers:
    in probability. "split": the float32 estimator on rows in pieces of 7 against all at once.
    """
    pieces = np.array_split(xq, max(1, len(xq) // 7))
    if isinstance(fast, PFNClassifier):
        proba = fast.predict_proba(xq)
        split = np.concatenate([fast.predict_proba(p) for p in pieces])
        return {"proba": float(np.abs(proba - exact.predict_proba(xq)).max()),
                "split": float(np.abs(split - proba).max())}  # fmt: skip
    std = exact.predict_distribution(xq).stddev.numpy()
    mean = fast.predict(xq)
    quantiles = fast.predict_quantiles(xq, QUANTILE_LEVELS)
    exact_quantiles = exact.predict_quantiles(xq, QUANTILE_LEVELS)
    split = np.concatenate([fast.predict(p) for p in pieces])
    return {"mean": float((np.abs(mean - exact.predict(xq)) / std).max()),
            "quantiles": float((np.abs(quantiles - exact_quantiles) / std[:, None]).max()),
            "split": float((np.abs(split - mean) / std).max())}  # fmt: skip


def measure_precision(checkpoint: str, sizes: MethodSizes) -> list[dict[str, Any]]:
    """What float64 buys over float32 on each case, and sklearn's diabetes table (real units)."""
    n, m, d = sizes.table
    x, y = load_diabetes(return_X_y=True)
    n_real = min(n, len(x) // 2)
    cases = [
        (f"PFNRegressor({checkpoint!r})", PFNRegressor, {"checkpoint": checkpoint},
         sine_data(*sizes.single)),
        ("PFNRegressor()", PFNRegressor, {}, table_data(n, m, d)),
        ("PFNRegressor(), sklearn diabetes", PFNRegressor, {},
         (x[:n_real], y[:n_real], x[n_real:])),
        ("PFNClassifier()", PFNClassifier, {}, table_data(n, m, d, classes=3)),
    ]  # fmt: skip
    results = []
    for name, cls, kwargs, (x_ctx, y_ctx, xq) in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = cls(dtype="float32", **kwargs).fit(x_ctx, y_ctx)
            exact = cls(dtype="float64", **kwargs).fit(x_ctx, y_ctx)
        results.append({"case": name, "queries": len(xq), **_gaps(fast, exact, xq)})
    return results


def precision_table(results: list[dict[str, Any]]) -> Table:
    """The largest differences float64 makes, and how much float32 depends on the split."""
    table = Table(
        title="What float64 buys: float32 against float64 predictions (largest over queries)",
        caption=(
            "mean, quantiles: |float32 - float64| in predictive standard deviations; proba: "
            "in probability; split: float32 on rows in pieces of 7 against all rows at once "
            "(same units)"
        ),
    )
    for column in ("case", "queries", "mean", "quantiles", "proba", "split"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        cells = [f"{r[k]:.1e}" if k in r else "" for k in ("mean", "quantiles", "proba", "split")]
        table.add_row(r["case"], str(r["queries"]), *cells)
    return table


def methods_table(results: list[dict[str, Any]], sizes: MethodSizes, repeats: int) -> Table:
    """Total and per-member milliseconds of each method, and its ratio to raw float32."""
    (n1, m1), (n, m, d) = sizes.single, sizes.table
    table = Table(
        title="Estimator methods against the raw float32 forward pass",
        caption=(
            f"The first regressor: N={n1} context points, M={m1} queries, 1 feature; the "
            f"defaults: a {n}-row table of {d} features (3 classes for the classifier), M={m} "
            f"queries. Median of {repeats} interleaved rounds. raw float32: one uncached "
            "model(x_ctx, y_ctx, x_qry) per member on that member's inputs. ratio = method "
            "time / raw float32 time, per member and in total alike (target: at most 1.3). "
            f"quantiles at {QUANTILE_LEVELS}."
        ),
    )
    for column in ("case", "dtype", "members", "call", "total ms", "ms / member", "ratio"):
        table.add_column(column, justify="left" if column in ("case", "call") else "right")
    for r in results:
        e, raw = r["members"], r["raw_float32_s"]
        rows = [("raw float32 forward", raw), *r["methods_s"].items()]
        for k, (call, seconds) in enumerate(rows):
            case = (r["case"], r["dtype"], str(e)) if k == 0 else ("", "", "")
            cells = (f"{1e3 * seconds:,.1f}", f"{1e3 * seconds / e:,.1f}", f"{seconds / raw:.2f}")
            table.add_row(*case, call, *cells)
    return table
