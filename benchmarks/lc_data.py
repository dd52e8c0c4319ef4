"""Real learning curves for the freeze-thaw lookup benchmark, made by training real models.

Every configuration of two scikit-learn model grids is trained epoch by epoch through
``partial_fit`` (one pass over the training split per call) on datasets that ship inside
scikit-learn (digits, breast_cancer, wine: no download), and its validation error
(1 − accuracy on a held-out stratified 30%) is recorded after every epoch:

* ``mlp``: MLPClassifier (one hidden layer, Adam) over learning_rate_init × alpha ×
  hidden width × batch size (6 × 3 × 3 × 3 = 162 configurations);
* ``sgd``: SGDClassifier (constant step size) over eta0 × alpha × loss
  (6 × 3 × 3 = 54 configurations).

Features are standardised on the training split. Wine's training split has 124 rows,
so its batch size 256 means full-batch training (scikit-learn clips it). Like LCBench,
the table is a lookup benchmark: an optimiser "trains" configuration i to epoch t by
reading row i's value at t. Each row holds the raw hyperparameters, the configuration
scaled to the unit cube (x0..x3: log-scaled numeric ones mapped from their grid's
[min, max] to [0, 1], the SGD loss as its index / 2; unused columns are 0), and
err_1..err_T.

Run ``OMP_NUM_THREADS=1 python benchmarks/lc_data.py`` to rebuild the shipped
benchmarks/data/learning_curves.csv.gz (seed 0, 50 epochs); ``--smoke`` trains a few
configurations for a few epochs into a temporary file.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "learning_curves.csv.gz"
DATASETS = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}
NUM_DIMS = 4  # unit-cube columns x0..x3 (SGD uses three)
VALIDATION_FRACTION = 0.3

MLP_GRID = {
    "learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
    "alpha": [1e-5, 1e-3, 1e-1],
    "width": [8, 32, 128],
    "batch_size": [16, 64, 256],
}
SGD_GRID = {
    "learning_rate": [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
    "alpha": [1e-6, 1e-4, 1e-2],
    "loss": ["hinge", "log_loss", "modified_huber"],
}
SMOKE_CONFIGS = 3  # per (dataset, model) in --smoke


@dataclass(frozen=True)
class Split:
    """A standardised stratified train / validation split of one dataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: np.ndarray


def load_split(name: str, seed: int) -> Split:
    """The dataset `name`, split 70/30 (stratified, seeded) and standardised on the train part."""
    x, y = DATASETS[name](return_X_y=True)
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=seed
    )
    scaler = StandardScaler().fit(x_tr)
    return Split(scaler.transform(x_tr), y_tr, scaler.transform(x_val), y_val, np.unique(y))


def _log_unit(value: float, grid: list[float]) -> float:
    lo, hi = math.log(min(grid)), math.log(max(grid))
    return (math.log(value) - lo) / (hi - lo)


def mlp_configs() -> list[dict]:
    """The MLP grid, each configuration with its unit-cube coordinates x0..x3."""
    out = []
    for lr, alpha, width, batch in itertools.product(*MLP_GRID.values()):
        raw = {"learning_rate": lr, "alpha": alpha, "width": width, "batch_size": batch}
        unit = [_log_unit(raw[key], MLP_GRID[key]) for key in MLP_GRID]
        out.append({**raw, "loss": "", **{f"x{i}": u for i, u in enumerate(unit)}})
    return out


def sgd_configs() -> list[dict]:
    """The SGD grid, each configuration with its unit-cube coordinates (x3 = 0)."""
    out = []
    losses = SGD_GRID["loss"]
    for lr, alpha, loss in itertools.product(*SGD_GRID.values()):
        unit = [
            _log_unit(lr, SGD_GRID["learning_rate"]),
            _log_unit(alpha, SGD_GRID["alpha"]),
            losses.index(loss) / (len(losses) - 1),
            0.0,
        ]
        raw = {"learning_rate": lr, "alpha": alpha, "width": 0, "batch_size": 0, "loss": loss}
        out.append({**raw, **{f"x{i}": u for i, u in enumerate(unit)}})
    return out


def _model(kind: str, config: dict, seed: int) -> MLPClassifier | SGDClassifier:
    if kind == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=(config["width"],), alpha=config["alpha"],
            learning_rate_init=config["learning_rate"], batch_size=config["batch_size"],
            random_state=seed,
        )  # fmt: skip
    return SGDClassifier(
        loss=config["loss"], alpha=config["alpha"], learning_rate="constant",
        eta0=config["learning_rate"], random_state=seed,
    )  # fmt: skip


def learning_curve(kind: str, config: dict, split: Split, epochs: int, seed: int) -> np.ndarray:
    """Validation error after each of `epochs` passes of ``partial_fit``, shape (epochs,)."""
    model = _model(kind, config, seed)
    errors = np.empty(epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow of a diverging run
        warnings.filterwarnings("ignore", message="Got `batch_size`")  # wine: 256 > 124 rows
        for epoch in range(epochs):
            model.partial_fit(split.x_train, split.y_train, classes=split.classes)
            errors[epoch] = 1.0 - float(np.mean(model.predict(split.x_val) == split.y_val))
    return errors


def generate(
    datasets: list[str], epochs: int, seed: int, max_configs: int | None = None
) -> pd.DataFrame:
    """One row per (dataset, model, configuration): hyperparameters, x0..x3, err_1..err_T."""
    rows = []
    for name in datasets:
        split = load_split(name, seed)
        for kind, configs in (("mlp", mlp_configs()), ("sgd", sgd_configs())):
            for index, config in enumerate(configs[:max_configs]):
                curve = learning_curve(kind, config, split, epochs, seed + index)
                errs = {f"err_{t + 1}": round(float(e), 6) for t, e in enumerate(curve)}
                rows.append({"benchmark": f"{name}-{kind}", "config": index, **config, **errs})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class LookupBenchmark:
    """One (dataset, model) table: configurations in the unit cube and their curves."""

    name: str
    configs: np.ndarray  # (n, d) in [0, 1]
    errors: np.ndarray  # (n, T) validation error per epoch

    @property
    def max_epoch(self) -> int:
        return self.errors.shape[1]


def load_learning_curves(path: Path = DEFAULT_OUT) -> dict[str, LookupBenchmark]:
    """The shipped table as one `LookupBenchmark` per "<dataset>-<model>" name."""
    frame = pd.read_csv(path)
    err_cols = [c for c in frame.columns if c.startswith("err_")]
    out = {}
    for name, group in frame.groupby("benchmark", sort=True):
        dims = NUM_DIMS if name.endswith("-mlp") else NUM_DIMS - 1
        configs = group[[f"x{i}" for i in range(dims)]].to_numpy(float)
        out[name] = LookupBenchmark(name, configs, group[err_cols].to_numpy(float))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"CSV path (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="3 configurations, 3 epochs")
    args = parser.parse_args(argv)
    if args.smoke and args.out is None:
        parser.error("--smoke needs --out (the shipped table is never overwritten by a smoke run)")
    out = args.out or DEFAULT_OUT
    epochs = 3 if args.smoke else args.epochs
    start, cpu_start = time.perf_counter(), time.process_time()
    frame = generate(list(DATASETS), epochs, args.seed, SMOKE_CONFIGS if args.smoke else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"{len(frame)} curves x {epochs} epochs in {elapsed:.0f} s ({cpu:.0f} s CPU) -> {out} "
          f"({out.stat().st_size / 1e6:.2f} MB)")  # fmt: skip
    for name, bench in load_learning_curves(out).items():
        final = bench.errors[:, -1]
        print(f"  {name}: {len(final)} configs, final error min {final.min():.3f} "
              f"median {np.median(final):.3f} max {final.max():.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
