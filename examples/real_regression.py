"""Real data: the general `gp` PFN against ML-II Gaussian processes (gpytorch and scikit-learn).

On scikit-learn's diabetes data (442 patients, 10 features) and make_friedman1 (10
features, 5 of them irrelevant, unit-variance noise), for 30 random splits at 50 and 200
training points, it scores on the held-out points:

* `PFNRegressor(checkpoint=...)`: one forward pass, hyperparameters integrated out by
  the prior it was trained on;
* gpytorch ML-II: Matérn-5/2 ARD, hyperparameters at their marginal-likelihood maximum
  (`pfnkit.reference.fit_ml2`), on standardized x and y;
* scikit-learn: `GaussianProcessRegressor` with Matern(nu=2.5) ARD + WhiteKernel,
  normalize_y=True, on standardized x.

Scores: test NLL (nats per point, in the target's units), RMSE, 90% interval coverage, and
time per split (fit + predict).

Run:  python examples/real_regression.py [--checkpoint gp] [--splits 30] [--json out.json]
      python examples/real_regression.py --smoke --checkpoint tests/data/gp10-tiny.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from pfnkit.estimators import PFNRegressor
from pfnkit.reference import exact_gp_predictive, fit_ml2

LEVEL = 0.9
Z = stats.norm.ppf(0.5 + LEVEL / 2)
MAX_TEST = 500  # held-out points per split (the rest of the data, at most this many)

# method(x_train, y_train, x_test) -> (mean, a callable scoring log densities, lower, upper)
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple]


def datasets(smoke: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = load_diabetes(return_X_y=True)
    xf, yf = make_friedman1(n_samples=120 if smoke else 1000, noise=1.0, random_state=0)
    return {"diabetes": (x, y), "friedman1": (xf, yf)}


def _standardize(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    loc, scale = x_train.mean(0), x_train.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    return [(a - loc) / scale for a in (x_train, *others)]


def gaussian(mean: np.ndarray, sd: np.ndarray) -> tuple:
    def log_prob(y: np.ndarray) -> np.ndarray:
        return stats.norm.logpdf(y, mean, sd)

    return mean, log_prob, mean - Z * sd, mean + Z * sd


def predict_pfn(checkpoint: str) -> Predictor:
    reg = PFNRegressor(checkpoint=checkpoint)  # refits reuse the loaded model

    def run(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # targets clipped to the prior's range
            reg.fit(x_train, y_train)
        dist = reg.predict_distribution(x_test)  # one pass; everything below derives from it
        levels = torch.tensor([0.5 - LEVEL / 2, 0.5 + LEVEL / 2], dtype=dist.logits.dtype)
        lower, upper = dist.quantiles(levels).double().numpy().T

        def log_prob(y: np.ndarray) -> np.ndarray:
            return dist.log_prob(torch.as_tensor(y, dtype=dist.logits.dtype)).double().numpy()

        return dist.mean.double().numpy(), log_prob, lower, upper

    return run


def predict_gpytorch_ml2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple:
    x_train, x_test = _standardize(x_train, x_test)
    y_loc, y_scale = y_train.mean(), y_train.std()
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    y_std = as_t((y_train - y_loc) / y_scale)
    # noise variance >= 1e-4 (standardized units), gpytorch's own default bound; at 1e-6,
    # L-BFGS ran into NaN from every restart on some 200-point splits
    hyper = fit_ml2(as_t(x_train), y_std, kernel="matern52", noise_lower_bound=1e-4)
    pred = exact_gp_predictive(as_t(x_train), y_std, as_t(x_test), hyper)
    mean = y_loc + y_scale * pred.mean.numpy()
    return gaussian(mean, y_scale * pred.variance.sqrt().numpy())


def predict_sklearn(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple:
    x_train, x_test = _standardize(x_train, x_test)
    d = x_train.shape[1]
    kernel = ConstantKernel() * Matern(length_scale=np.ones(d), nu=2.5) + WhiteKernel()
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x_train, y_train)
    mean, sd = gp.predict(x_test, return_std=True)
    return gaussian(mean, sd)


def score(method: Predictor, x: np.ndarray, y: np.ndarray, n_train: int, seed: int) -> dict:
    """One random split: NLL, RMSE, coverage and seconds (fit + predict).

    A method that fails numerically on the split (every ML-II restart diverged) gets
    ``{"failed": message}``: counted in the table, left out of the means.
    """
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[:n_train], order[n_train : n_train + MAX_TEST]
    start = time.perf_counter()
    try:
        mean, log_prob, lower, upper = method(x[train], y[train], x[test])
    except RuntimeError as error:
        return {"failed": str(error)}
    seconds = time.perf_counter() - start
    y_test = y[test]
    return {
        "nll": float(-log_prob(y_test).mean()),
        "rmse": float(np.sqrt(((mean - y_test) ** 2).mean())),
        "coverage": float(((y_test >= lower) & (y_test <= upper)).mean()),
        "seconds": seconds,
    }


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "failed" not in r]
    out = {}
    for key in ("nll", "rmse", "coverage", "seconds"):
        values = np.array([r[key] for r in ok]) if ok else np.array([math.nan])
        se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
        out[key] = {"mean": float(values.mean()), "se": float(se)}
    out["failed"] = len(runs) - len(ok)
    return out


def print_table(results: dict, checkpoint: str, n_splits: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Real regression: {n_splits} random splits (mean ± s.e.)")
    for name in (
        "data",
        "n_train",
        "method",
        "test NLL",
        "RMSE",
        f"{LEVEL:.0%} coverage",
        "s/split",
        "failed",
    ):
        table.add_column(name, justify="right")
    formats = {"nll": ".3f", "rmse": ".3g", "coverage": ".2f", "seconds": ".3f"}
    for key, entry in results.items():
        summary = entry["summary"]
        cells = [f"{summary[k]['mean']:{f}} ± {summary[k]['se']:{f}}" for k, f in formats.items()]
        table.add_row(*key.split("|"), *cells, str(summary["failed"]))
    Console(width=max(Console().width, 110)).print(table)
    print(f"PFN = PFNRegressor(checkpoint={checkpoint!r}); NLL in nats per test point")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--checkpoint", default="gp", help="PFN checkpoint name or path")
    parser.add_argument("--splits", type=int, default=30, help="random train/test splits")
    parser.add_argument("--json", help="write every split's scores and the summary here")
    parser.add_argument("--smoke", action="store_true", help="2 splits of 20 points (tests)")
    args = parser.parse_args(argv)
    n_splits = 2 if args.smoke else args.splits
    sizes = (20,) if args.smoke else (50, 200)
    methods = {"PFN": predict_pfn(args.checkpoint), "gpytorch ML-II": predict_gpytorch_ml2,
               "sklearn GPR": predict_sklearn}  # fmt: skip
    data_sets = datasets(args.smoke)
    x, y = data_sets["diabetes"]
    for method in methods.values():  # untimed warm-up: loading, first-call overheads
        score(method, x, y, min(sizes), seed=n_splits)
    results = {}
    for data, (x, y) in data_sets.items():
        for n_train in sizes:
            for name, method in methods.items():
                runs = [score(method, x, y, n_train, seed) for seed in range(n_splits)]
                results[f"{data}|{n_train}|{name}"] = {"runs": runs, "summary": summarize(runs)}
    print_table(results, args.checkpoint, n_splits)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
