"""The regression half of benchmarks/tabular.py: PFNRegressor against ML-II GPs and ridge.

Methods, each fitted on the training rows of a split and scored on its test rows:

- PFN: `PFNRegressor(checkpoint, ...)`, one instance for the run (loaded outside the
  timings), told the table's categorical columns (ordinal codes) and random_state=k
  where it takes them;
- GP-sklearn: scikit-learn's `GaussianProcessRegressor`, Matérn-5/2 ARD times a constant
  plus a white-noise kernel, ML-II with 2 optimizer restarts, normalize_y, on standardized
  features;
- GP-gpytorch: `pfnkit.reference.fit_ml2` (Matérn-5/2 ARD, L-BFGS from 3 lengthscale
  inits, noise variance >= 1e-4) and its exact predictive, on standardized x and y;
- Ridge: one-hot categoricals and standardized numbers, `RidgeCV` over `RIDGE_ALPHAS`
  (leave-one-out), with a Gaussian predictive: the ridge mean and the mean squared
  leave-one-out residual of the chosen alpha as its variance.

A table wider than the PFN reads (and the estimator takes no more) is cut, for every
method alike, to the `width` columns with the largest univariate F statistic on the
training rows of each split. Scores are in units of the training split's target standard
deviation s, so that tables average: the NLL of y / s, i.e. NLL - log s (nats per test
point), and RMSE / s; coverage is the fraction of test points inside the central 90%
interval. A method that
fails numerically on a split (every ML-II restart diverged) gets NaN there, left out of
the means and counted.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy import stats
from sklearn.compose import make_column_transformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import f_regression
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tabular_data import Cell

from pfnkit.estimators import PFNRegressor
from pfnkit.reference import exact_gp_predictive, fit_ml2

__all__ = ["REG_METHODS", "REG_METRICS", "regression_methods", "regression_targets",
           "run_regression", "score_split", "top_columns", "width_cap"]  # fmt: skip

LEVEL = 0.9
Z = float(stats.norm.ppf(0.5 + LEVEL / 2))
REG_METHODS = ("PFN", "GP-sklearn", "GP-gpytorch", "Ridge")
REG_METRICS = ("nll", "rmse", "coverage", "seconds")
RIDGE_ALPHAS = tuple(np.logspace(-3, 3, 13))
COVERAGE_RANGE = (0.85, 0.95)  # the target for the PFN's mean 90% coverage
NLL_WIN_SHARE = 0.8  # the PFN's NLL at or below the better GP's on this share of tables

# (mean, log density of test targets, lower, upper) of the 90% central interval
Prediction = tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], np.ndarray, np.ndarray]
Method = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Prediction]


def _standardize(x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    loc, scale = x_train.mean(0), x_train.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    return [(a - loc) / scale for a in (x_train, *others)]


def _gaussian(mean: np.ndarray, sd: np.ndarray | float) -> Prediction:
    def log_prob(y: np.ndarray) -> np.ndarray:
        return stats.norm.logpdf(y, mean, sd)

    return mean, log_prob, mean - Z * sd, mean + Z * sd


def _pfn(reg: PFNRegressor, seed: int) -> Method:
    def predict(
        x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, categorical: np.ndarray
    ) -> Prediction:
        options = {"categorical_features": categorical, "random_state": seed}
        reg.set_params(**{k: v for k, v in options.items() if k in reg.get_params()})
        reg.fit(x_train, y_train)
        dist = reg.predict_distribution(x_test)
        levels = torch.tensor([0.5 - LEVEL / 2, 0.5 + LEVEL / 2], dtype=dist.logits.dtype)
        lower, upper = dist.quantiles(levels).double().numpy().T

        def log_prob(y: np.ndarray) -> np.ndarray:
            return dist.log_prob(torch.as_tensor(y, dtype=dist.logits.dtype)).double().numpy()

        return dist.mean.double().numpy(), log_prob, lower, upper

    return predict


def _gp_sklearn(seed: int) -> Method:
    def predict(
        x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, _: np.ndarray
    ) -> Prediction:
        x_train, x_test = _standardize(x_train, x_test)
        kernel = ConstantKernel() * Matern(np.ones(x_train.shape[1]), nu=2.5) + WhiteKernel()
        gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                      random_state=seed)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(x_train, y_train)
        return _gaussian(*gp.predict(x_test, return_std=True))

    return predict


def _gp_gpytorch(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, _: np.ndarray
) -> Prediction:
    x_train, x_test = _standardize(x_train, x_test)
    y_loc, y_scale = y_train.mean(), y_train.std()
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    y_std = as_t((y_train - y_loc) / y_scale)
    hyper = fit_ml2(as_t(x_train), y_std, kernel="matern52", noise_lower_bound=1e-4)
    pred = exact_gp_predictive(as_t(x_train), y_std, as_t(x_test), hyper)
    return _gaussian(y_loc + y_scale * pred.mean.numpy(), y_scale * pred.variance.sqrt().numpy())


def _ridge(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, categorical: np.ndarray
) -> Prediction:
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        (StandardScaler(), ~categorical),
    )
    model = make_pipeline(encode, RidgeCV(alphas=RIDGE_ALPHAS, store_cv_results=True))
    model.fit(x_train, y_train)
    ridge = model[-1]
    loo_mse = ridge.cv_results_[:, RIDGE_ALPHAS.index(ridge.alpha_)].mean()
    return _gaussian(model.predict(x_test), math.sqrt(loo_mse))


def regression_methods(reg: PFNRegressor) -> dict[str, Callable[[int], Method]]:
    """Method name -> (split seed -> method), in the order of `REG_METHODS`."""
    return {
        "PFN": lambda seed: _pfn(reg, seed),
        "GP-sklearn": _gp_sklearn,
        "GP-gpytorch": lambda _: _gp_gpytorch,
        "Ridge": lambda _: _ridge,
    }


def width_cap(reg: PFNRegressor) -> int | None:
    """The PFN's input width if the fitted `reg` refuses wider tables, else None."""
    width = reg.checkpoint_.model.config.num_features
    x = np.random.default_rng(0).normal(size=(8, width + 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reg.fit(x, x.sum(axis=1))
    except ValueError:
        return width
    return None


def top_columns(x_train: np.ndarray, y_train: np.ndarray, k: int) -> np.ndarray:
    """The k columns with the largest univariate F statistic against y, in table order."""
    with np.errstate(divide="ignore", invalid="ignore"):
        f_stat = np.nan_to_num(f_regression(x_train, y_train)[0], nan=0.0)
    return np.sort(np.argsort(-f_stat, kind="stable")[:k])


def score_split(
    method: Method, cell: Cell, split: int, width: int | None
) -> tuple[dict[str, float], list[str]]:
    """Standardized NLL and RMSE, coverage and seconds of one method on one split, and the
    warnings it raised; NaN scores and ``failed`` where the method failed numerically."""
    train, test = cell.splits[split]
    x_train, y_train, x_test, y_test = cell.X[train], cell.y[train], cell.X[test], cell.y[test]
    categorical = cell.categorical
    if width is not None and x_train.shape[1] > width:
        keep = top_columns(x_train, y_train, width)
        x_train, x_test, categorical = x_train[:, keep], x_test[:, keep], categorical[keep]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            mean, log_prob, lower, upper = method(x_train, y_train, x_test, categorical)
        except (RuntimeError, np.linalg.LinAlgError) as error:
            failed = {m: float("nan") for m in REG_METRICS}
            return {**failed, "failed": str(error).splitlines()[0]}, []
        seconds = time.perf_counter() - start
    scale = float(y_train.std())
    nll = float(-log_prob(y_test).mean())
    rmse = float(np.sqrt(((mean - y_test) ** 2).mean()))
    result = {
        "nll": nll - math.log(scale),  # the NLL of y / s
        "rmse": rmse / scale,
        "coverage": float(((y_test >= lower) & (y_test <= upper)).mean()),
        "seconds": seconds,
        "nll_raw": nll,
        "rmse_raw": rmse,
    }
    return result, sorted({str(w.message).split(";")[0] for w in caught})


def run_regression(
    jobs: Iterable[tuple[Cell, int]], reg: PFNRegressor, width: int | None
) -> list[dict]:
    """One record per (cell, split, method) of the (cell, split) `jobs`."""
    records, methods = [], regression_methods(reg)
    for cell, split in jobs:
        for method, make in methods.items():
            result, caught = score_split(make(split), cell, split, width)
            records.append({"dataset": cell.dataset, "n_train": cell.n_train,
                            "n_test": len(cell.splits[split][1]), "split": split,
                            "method": method, **result, "warnings": caught})  # fmt: skip
    return records


def regression_targets(
    summ: dict[str, dict], per_table: dict[tuple[str, str], dict[str, float]]
) -> dict[str, dict]:
    """The regression targets: NLL per table against the better GP, mean RMSE against each
    GP, and the mean coverage of the PFN's 90% intervals."""
    tables = sorted({dataset for dataset, _ in per_table})
    wins = []
    for table in tables:
        best_gp = min(per_table[(table, gp)]["nll"] for gp in ("GP-sklearn", "GP-gpytorch"))
        wins.append(per_table[(table, "PFN")]["nll"] <= best_gp)
    share = float(np.mean(wins)) if wins else float("nan")
    overall = summ["all"]
    checks: dict[str, dict] = {
        "nll_vs_better_gp_per_table": {
            "pfn": share, "baseline": NLL_WIN_SHARE, "met": share >= NLL_WIN_SHARE,
            "wins": [t for t, won in zip(tables, wins, strict=True) if won],
        },
    }  # fmt: skip
    for gp in ("GP-sklearn", "GP-gpytorch"):
        pfn, other = overall["PFN"]["rmse"], overall[gp]["rmse"]
        checks[f"rmse_vs_{gp}"] = {"pfn": pfn, "baseline": other, "met": pfn <= other}
    coverage = overall["PFN"]["coverage"]
    low, high = COVERAGE_RANGE
    checks["coverage_90"] = {"pfn": coverage, "baseline": list(COVERAGE_RANGE),
                             "met": low <= coverage <= high}  # fmt: skip
    return checks
