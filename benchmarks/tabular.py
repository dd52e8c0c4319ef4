"""Tabular benchmark: PFNClassifier against logistic regression, a random forest and boosting.

Run:  python benchmarks/tabular.py [--checkpoint scm-clf] [--splits 10] [--sizes 50,100,300]
          [--datasets iris,wine,...] [--n-estimators 4] [--preprocessing none]
          [--dtype float32] [--json out.json] [--markdown] [--plot out.png] [--write-card]
          [--no-progress] [--smoke]

Datasets: iris, wine and breast_cancer (bundled with scikit-learn) and synthetic sets of
1,000 rows with fixed seeds (`DATASETS`): make_classification with 2 or 5 classes and 5 or
20 features (some informative, some redundant, one with 5% flipped labels), make_moons
(noise 0.3) and make_circles (noise 0.1, factor 0.5). Each training size n gets --splits
random stratified splits (split k uses seed k): n training rows, and the other rows, at
most 500, as the test set. A size is skipped for a dataset that cannot keep 50 test rows
(iris and wine at 300), and a dataset with more classes than the checkpoint's head is
skipped for every method; both are printed.

Methods, each fitted on the training rows of a split and scored on its test rows:
- PFN: `PFNClassifier(checkpoint, n_estimators, preprocessing, dtype, random_state=k)`,
  one instance for the whole run, so the checkpoint is loaded (and warmed up) once,
  outside the timings;
- LogReg: StandardScaler, then LogisticRegression(max_iter=1000);
- RandomForest: RandomForestClassifier(n_estimators=200, random_state=k);
- HistGB: HistGradientBoostingClassifier(random_state=k) (scikit-learn's defaults).

Metrics: ROC AUC (binary, or one-vs-rest macro), log loss and accuracy from
`predict_proba` (sklearn's `log_loss` with `labels=` on float64 probabilities for every
method, so all are clipped alike, at float64's machine epsilon), and wall time of fit +
predict_proba. Means are taken over the splits of a (dataset, size) cell, then over cells
with equal weight. The two targets of the scm-clf checkpoint are checked on the overall
means: PFN ROC AUC >= RandomForest's, PFN log loss <= LogReg's. Figures are printed,
never asserted. --plot draws, per dataset, each method's mean ROC AUC and log loss (with
the standard error over splits) against the training size. --write-card records the
command, the means per size and per cell and the targets in the checkpoint card's
`validation` (`passed`: both targets met), which the slow test in
tests/test_shipped_checkpoints.py re-measures on a few cells.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sklearn import datasets as skdata
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pfnkit import PFNClassifier
from pfnkit.checkpoint import resolve_checkpoint, write_manifest
from pfnkit.figures import pyplot, save_figure

__all__ = ["DATASETS", "main"]

MAX_TEST, MIN_TEST = 500, 50  # test rows per split: the rest of the data, capped; fewer: skip
METHODS = ("PFN", "LogReg", "RandomForest", "HistGB")
METRICS = ("roc_auc", "log_loss", "accuracy", "seconds")
Loader = Callable[[], tuple[np.ndarray, np.ndarray]]


def _bundled(load: Callable[..., Any]) -> Loader:
    return lambda: load(return_X_y=True)


def _synthetic(make: Callable[..., Any], **options: Any) -> Loader:
    return lambda: make(n_samples=1000, **options)


DATASETS: dict[str, Loader] = {
    "iris": _bundled(skdata.load_iris),
    "wine": _bundled(skdata.load_wine),
    "breast_cancer": _bundled(skdata.load_breast_cancer),
    "clf-2c-5f": _synthetic(skdata.make_classification, n_features=5, n_informative=3,
                            n_redundant=1, n_classes=2, random_state=0),
    "clf-2c-20f": _synthetic(skdata.make_classification, n_features=20, n_informative=6,
                             n_redundant=4, n_classes=2, flip_y=0.05, random_state=1),
    "clf-5c-5f": _synthetic(skdata.make_classification, n_features=5, n_informative=4,
                            n_redundant=1, n_classes=5, n_clusters_per_class=1, random_state=2),
    "clf-5c-20f": _synthetic(skdata.make_classification, n_features=20, n_informative=8,
                             n_redundant=4, n_classes=5, n_clusters_per_class=1, random_state=3),
    "moons": _synthetic(skdata.make_moons, noise=0.3, random_state=4),
    "circles": _synthetic(skdata.make_circles, noise=0.1, factor=0.5, random_state=5),
}  # fmt: skip
SMOKE = {"splits": 1, "sizes": "30", "datasets": "iris,moons"}


@dataclass(frozen=True)
class Cell:
    """One (dataset, training size) pair and its splits."""

    dataset: str
    n_train: int
    X: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]


def baselines(seed: int) -> dict[str, Any]:
    return {
        "LogReg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "RandomForest": RandomForestClassifier(n_estimators=200, random_state=seed),
        "HistGB": HistGradientBoostingClassifier(random_state=seed),
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
    names: list[str], sizes: list[int], n_splits: int, max_classes: int, notes: list[str]
) -> list[Cell]:
    """The (dataset, size) cells that can run, with their splits; the others go to `notes`."""
    cells = []
    for name in names:
        X, y = DATASETS[name]()
        n_classes = len(np.unique(y))
        if n_classes > max_classes:
            notes.append(f"{name}: {n_classes} classes, more than the checkpoint's {max_classes}")
            continue
        for n_train in sizes:
            n_test = min(MAX_TEST, len(y) - n_train)
            if n_test < MIN_TEST:
                notes.append(
                    f"{name}: n_train={n_train}, as its {len(y)} rows would leave "
                    f"fewer than {MIN_TEST} test rows"
                )
                continue
            if n_train < 2 * n_classes:
                notes.append(f"{name}: n_train={n_train}, fewer than 2 rows per class")
                continue
            splitter = StratifiedShuffleSplit(
                n_splits, train_size=n_train, test_size=n_test, random_state=0
            )
            splits = [(train, test) for train, test in splitter.split(X, y)]
            cells.append(Cell(name, n_train, X.astype(np.float64), y, splits))
    return cells


def run(args: argparse.Namespace, cells: list[Cell], pfn: PFNClassifier) -> list[dict]:
    """One record per (cell, split, method)."""
    records = []
    jobs = [(cell, split) for cell in cells for split in range(len(cell.splits))]
    progress = track(jobs, description="fitting", disable=args.no_progress, transient=True)
    for cell, split in progress:
        estimators = {"PFN": pfn.set_params(random_state=split), **baselines(split)}
        for method, estimator in estimators.items():
            result, caught = fit_predict(estimator, cell, split)
            records.append(
                {
                    "dataset": cell.dataset,
                    "n_train": cell.n_train,
                    "split": split,
                    "method": method,
                    **result,
                    "warnings": caught,
                }
            )
    return records


def cell_means(records: list[dict]) -> dict[tuple[str, int, str], dict[str, float]]:
    """Mean of every metric over the splits of each (dataset, n_train, method)."""
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["n_train"], r["method"]), []).append(r)
    return {
        key: {m: float(np.mean([r[m] for r in rs])) for m in METRICS} for key, rs in groups.items()
    }


def summary(means: dict[tuple[str, int, str], dict[str, float]]) -> dict[str, dict]:
    """Per size ("50", ...) and over all sizes ("all"): method -> metric means over cells."""
    sizes = sorted({n for _, n, _ in means})
    out: dict[str, dict] = {}
    for label, keep in [(str(n), [n]) for n in sizes] + [("all", sizes)]:
        out[label] = {}
        for method in METHODS:
            rows = [v for (_, n, m), v in means.items() if m == method and n in keep]
            out[label][method] = {m: float(np.mean([r[m] for r in rows])) for m in METRICS}
            out[label][method]["cells"] = len(rows)
    return out


def table_rows(summ: dict[str, dict]) -> list[list[str]]:
    """Rows per size and method, then over all sizes (when there are several)."""
    shown = {size: v for size, v in summ.items() if size != "all" or len(summ) > 2}
    return [
        [
            size,
            method,
            f"{v['roc_auc']:.4f}",
            f"{v['log_loss']:.4f}",
            f"{v['accuracy']:.4f}",
            f"{1e3 * v['seconds']:,.1f}",
            str(v["cells"]),
        ]
        for size, by_method in shown.items()
        for method, v in by_method.items()
    ]


HEADERS = ["n_train", "method", "ROC AUC", "log loss", "accuracy", "fit+predict ms", "cells"]


def markdown(rows: list[list[str]]) -> str:
    align = ["---:" if h not in ("method",) else "---" for h in HEADERS]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(align) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def targets(summ: dict[str, dict]) -> dict[str, Any]:
    """The scm-clf targets on the overall means."""
    overall = summ["all"]
    pfn_auc, rf_auc = overall["PFN"]["roc_auc"], overall["RandomForest"]["roc_auc"]
    pfn_nll, lr_nll = overall["PFN"]["log_loss"], overall["LogReg"]["log_loss"]
    return {
        "roc_auc_vs_random_forest": {"pfn": pfn_auc, "baseline": rf_auc, "met": pfn_auc >= rf_auc},
        "log_loss_vs_logreg": {"pfn": pfn_nll, "baseline": lr_nll, "met": pfn_nll <= lr_nll},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="scm-clf", help="short name or path")
    parser.add_argument("--splits", type=int, default=10, help="random splits per size")
    parser.add_argument("--sizes", default="50,100,300", help="training sizes, comma-separated")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated names")
    parser.add_argument("--n-estimators", type=int, default=4, help="PFN column orders")
    parser.add_argument("--preprocessing", default="none", choices=("none", "quantile"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--json", help="write every record and mean to this path")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--plot", help="write per-dataset panels of ROC AUC and log loss here")
    parser.add_argument(
        "--write-card", action="store_true", help="record the figures in the checkpoint's card"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--smoke", action="store_true", help=f"tiny run: {SMOKE}")
    args = parser.parse_args(argv)
    if args.smoke and args.write_card:
        parser.error("--write-card records a full run on the card; drop --smoke")
    if args.smoke:
        vars(args).update(SMOKE)
    unknown = sorted(set(args.datasets.split(",")) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {list(DATASETS)}")
    return args


def report(
    console: Console, args: argparse.Namespace, summ: dict, notes: list[str], warned: dict[str, int]
) -> dict[str, Any]:
    rows = table_rows(summ)
    if args.markdown:
        print(markdown(rows))
    else:
        title = f"PFN ({args.checkpoint}) against baselines: means over (dataset, size) cells"
        table = Table(title=title)
        for header in HEADERS:
            table.add_column(header, justify="left" if header == "method" else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in notes:
        console.print(f"skipped: {note}")
    for message, count in warned.items():
        console.print(f"PFN warned in {count} fits: {message}")
    checks = targets(summ)
    for name, check in checks.items():
        verdict = "met" if check["met"] else "NOT met"
        relation = ">=" if "roc_auc" in name else "<="
        console.print(
            f"target {name}: PFN {check['pfn']:.4f} {relation} {check['baseline']:.4f} -> {verdict}"
        )
    return checks


def plot(records: list[dict], path: str) -> str:
    """Two rows of panels, ROC AUC and log loss, one column per dataset, against n_train."""
    names = list(dict.fromkeys(r["dataset"] for r in records))
    plt = pyplot()
    fig, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.2), squeeze=False)
    for col, name in enumerate(names):
        sizes = sorted({r["n_train"] for r in records if r["dataset"] == name})
        for method in METHODS:
            mine = [r for r in records if r["dataset"] == name and r["method"] == method]
            for row, metric in enumerate(("roc_auc", "log_loss")):
                values = [np.array([r[metric] for r in mine if r["n_train"] == n]) for n in sizes]
                means = [v.mean() for v in values]
                errors = [v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0 for v in values]
                axes[row, col].errorbar(sizes, means, yerr=errors, marker="o", ms=3,
                                        capsize=2, label=method)  # fmt: skip
        axes[0, col].set_title(name, fontsize=9)
        axes[1, col].set_xlabel("training rows")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("ROC AUC (higher is better)")
    axes[1, 0].set_ylabel("log loss (lower is better)")
    axes[0, 0].legend(fontsize=7)
    return str(save_figure(fig, path))


def write_card(args: argparse.Namespace, argv: list[str], out: dict[str, Any]) -> str:
    """Record the run in the checkpoint card's `validation` and refresh the manifest."""
    _, card_path, _ = resolve_checkpoint(args.checkpoint)
    card = json.loads(card_path.read_text())
    options = ("splits", "sizes", "datasets", "n_estimators", "preprocessing", "dtype")
    card["validation"] = {
        "command": shlex.join(["python", "benchmarks/tabular.py", *argv]),
        "kind": "tabular benchmark against scikit-learn baselines",
        "config": {key: getattr(args, key) for key in options},
        "torch_threads": torch.get_num_threads(),
        "skipped": out["skipped"],
        "summary": out["summary"],
        "targets": out["targets"],
        "per_dataset": out["per_dataset"],
        "passed": all(check["met"] for check in out["targets"].values()),
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    write_manifest(card_path.parent)
    return str(card_path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    console = Console()
    pfn = PFNClassifier(
        checkpoint=args.checkpoint,
        n_estimators=args.n_estimators,
        preprocessing=args.preprocessing,
        dtype=args.dtype,
    )
    try:
        pfn.fit(np.eye(2), [0, 1])  # load and warm up outside the timings
    except (ValueError, FileNotFoundError) as error:  # an unknown or unsuitable checkpoint
        console.print(f"error: {error}")
        return 2
    max_classes = pfn.checkpoint_.model.config.n_classes
    notes: list[str] = []
    sizes = [int(s) for s in args.sizes.split(",")]
    cells = build_cells(args.datasets.split(","), sizes, args.splits, max_classes, notes)
    if not cells:
        console.print("error: no (dataset, size) cell can run: " + "; ".join(notes))
        return 2
    records = run(args, cells, pfn)
    means = cell_means(records)
    summ = summary(means)
    warned: dict[str, int] = {}
    for r in records:
        for message in r["warnings"] if r["method"] == "PFN" else []:
            warned[message] = warned.get(message, 0) + 1
    console.print(
        f"checkpoint {pfn.checkpoint_.name}, n_estimators {args.n_estimators}, "
        f"preprocessing {args.preprocessing}, dtype {args.dtype}, "
        f"{torch.get_num_threads()} torch threads; {len(cells)} cells"
    )
    checks = report(console, args, summ, notes, warned)
    per_dataset = [{"dataset": d, "n_train": n, "method": m, **v} for (d, n, m), v in means.items()]
    out = {
        "config": vars(args),
        "checkpoint": pfn.checkpoint_.name,
        "skipped": notes,
        "summary": summ,
        "targets": checks,
        "per_dataset": per_dataset,
        "records": records,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2)
    if args.plot:
        console.print(f"wrote {plot(records, args.plot)}")
    if args.write_card:
        console.print(f"wrote the figures to {write_card(args, argv, out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
