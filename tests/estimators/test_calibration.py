"""Pools of ensemble members, the context's folds, and the MAP softmax temperature."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from pfnkit.estimators.calibration import context_folds, fit_temperature, pool_members
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

# Brent's method (scipy) finds the optimum of log T to within this: an independent optimizer
OPTIMIZER_ATOL = 1e-6


def _log_posterior_oracle(log_p_NC: np.ndarray, y_N: np.ndarray, prior_std: float):
    """The negative log posterior of log T, written out row by row."""

    def objective(log_t: float) -> float:
        total = 0.5 * (log_t / prior_std) ** 2
        for row, label in zip(log_p_NC / np.exp(log_t), y_N, strict=True):
            total -= row[label] - np.log(np.sum(np.exp(row - row.max()))) - row.max()
        return total

    return objective


def _brent(log_p_NC: np.ndarray, y_N: np.ndarray, prior_std: float) -> float:
    found = minimize_scalar(_log_posterior_oracle(log_p_NC, y_N, prior_std),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                            options={"xatol": 1e-9})  # fmt: skip
    return float(found.x)


def _tempered_sample(n: int, n_classes: int, temperature: float, seed: int):
    """Pooled log-probabilities and labels drawn from their tempered softmax."""
    rng = np.random.default_rng(seed)
    scores = 2.0 * rng.normal(size=(n, n_classes))
    log_p_NC = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    p_NC = np.exp(log_p_NC / temperature)
    p_NC /= p_NC.sum(axis=1, keepdims=True)
    y_N = np.array([rng.choice(n_classes, p=p) for p in p_NC])
    return log_p_NC, y_N


@pytest.mark.parametrize(("temperature", "prior_std"), [(0.4, 0.5), (2.0, 0.5), (1.3, 3.0)])
def test_fit_temperature_is_the_map_estimate(temperature: float, prior_std: float) -> None:
    log_p_NC, y_N = _tempered_sample(300, 3, temperature, seed=1)
    found = fit_temperature(log_p_NC, y_N, prior_std)
    assert abs(np.log(found) - _brent(log_p_NC, y_N, prior_std)) < OPTIMIZER_ATOL


def test_fit_temperature_recovers_the_temperature_of_the_labels() -> None:
    true_t, prior_std = 0.5, 100.0  # a prior too wide to matter
    log_p_NC, y_N = _tempered_sample(3000, 4, true_t, seed=2)
    log_t = np.log(fit_temperature(log_p_NC, y_N, prior_std))
    objective, h = _log_posterior_oracle(log_p_NC, y_N, prior_std), 1e-3
    information = (objective(log_t + h) - 2 * objective(log_t) + objective(log_t - h)) / h**2
    assert abs(log_t - np.log(true_t)) < STANDARD_ERRORS / np.sqrt(information)


def test_the_prior_keeps_few_rows_near_one() -> None:
    log_p_NC, y_N = _tempered_sample(12, 3, 0.3, seed=3)
    loose, tight = fit_temperature(log_p_NC, y_N, 10.0), fit_temperature(log_p_NC, y_N, 0.1)
    assert abs(np.log(tight)) < abs(np.log(loose))
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=np.int64)) == 1.0


def test_pools_match_their_formulas() -> None:
    rng = np.random.default_rng(4)
    p_EMC = rng.dirichlet(np.ones(3), size=(5, 7))
    linear = pool_members(np.log(p_EMC), "linear")
    np.testing.assert_allclose(np.exp(linear), p_EMC.mean(axis=0), atol=FLOAT64_ATOL, rtol=0)
    geometric = np.prod(p_EMC, axis=0) ** (1 / 5)
    expected = geometric / geometric.sum(axis=1, keepdims=True)
    log_pool = pool_members(np.log(p_EMC), "log")
    np.testing.assert_allclose(np.exp(log_pool), expected, atol=FLOAT64_ATOL, rtol=0)
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_members(np.log(p_EMC), "mean")


def _folds_oracle(x: np.ndarray, y: np.ndarray, n_folds: int) -> dict[tuple, int]:
    """Fold of each (row values, class), by Python's sort of the rows as tuples."""
    key = [tuple(np.nan_to_num(row, nan=np.inf)) for row in x]
    order = sorted(range(len(x)), key=lambda i: key[i])
    dealt = dict.fromkeys(set(y.tolist()), 0)
    folds = {}
    for i in order:
        folds[(key[i], int(y[i]))] = dealt[int(y[i])] % n_folds
        dealt[int(y[i])] += 1
    return folds


def test_context_folds_are_stratified_and_ignore_row_order_and_class_names() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(23, 3)).round(1)
    x[::5, 1] = np.nan
    y = rng.integers(0, 3, size=23)
    order, folds = context_folds(x, y, 4)
    key = [tuple(np.nan_to_num(row, nan=np.inf)) for row in x[order]]
    expected = _folds_oracle(x, y, 4)
    assert [expected[(k, int(c))] for k, c in zip(key, y[order], strict=True)] == folds.tolist()
    for label in range(3):  # each fold holds its share of every class
        counts = np.bincount(folds[y[order] == label], minlength=4)
        assert counts.max() - counts.min() <= 1
    rows = rng.permutation(23)
    _, shuffled = context_folds(x[rows], y[rows], 4)
    assert shuffled.tolist() == folds.tolist()  # rows are distinct here, so equal sequences
    _, renamed = context_folds(x, 2 - y, 4)
    assert renamed.tolist() == folds.tolist()
    order, folds = context_folds(np.zeros((3, 0)), np.array([1, 0, 1]), 2)
    assert sorted(order.tolist()) == [0, 1, 2] and sorted(folds.tolist()) == [0, 0, 1]
