"""Missing values in X: imputed and flagged inside the members; finite and calibrated answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, make_friedman1
from sklearn.metrics import log_loss

from pfnkit import PFNClassifier, PFNRegressor
from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFNConfig
from tests.helpers import make_tiny_pfn

FLOAT64_ATOL = 1e-10  # float64 identities (same inputs by another route)
COVERAGE_BAND = (0.8, 0.97)  # 90% intervals on ~900 held-out points with 20% of X missing
HOLES = 0.2  # fraction of cells of X removed at random


def _save(path: Path, n_classes: int) -> str:
    config = PFNConfig(num_features=4, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20,
                       n_classes=n_classes)  # fmt: skip
    card = save_checkpoint(
        path,
        make_tiny_pfn(config).double(),
        prior_name="scm" if n_classes else "gp",
        prior_config={},
        train_config={"n_ctx_max": 100},
        command="pytest fixture",
        data_mapping={"x": "standardize", "y": "standardize", "features": "pad"},
    )
    return str(card.with_suffix(".safetensors"))


@pytest.fixture(params=["regressor", "classifier"])
def estimator(request: pytest.FixtureRequest, tmp_path: Path) -> PFNRegressor | PFNClassifier:
    """A PFNRegressor or PFNClassifier on a random 4-feature checkpoint."""
    if request.param == "regressor":
        return PFNRegressor(checkpoint=_save(tmp_path / "reg4", 0))
    return PFNClassifier(checkpoint=_save(tmp_path / "clf4", 3))


def _predict(est, x: np.ndarray) -> np.ndarray:
    return est.predict_proba(x) if isinstance(est, PFNClassifier) else est.predict(x)


def _with_holes(x: np.ndarray, rate: float = HOLES, seed: int = 0) -> np.ndarray:
    x = x.copy()
    x[np.random.default_rng(seed).random(x.shape) < rate] = np.nan
    return x


def _table(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    return x, np.arange(n) % 3


def test_a_table_with_holes_gives_finite_predictions(estimator) -> None:
    x, y = _table()
    holes = _with_holes(x)
    assert np.isnan(holes).any(axis=1).sum() > 10
    estimator.fit(holes, y)
    out = _predict(estimator, _with_holes(x, seed=1))
    assert np.isfinite(out).all()
    if isinstance(estimator, PFNClassifier):
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=FLOAT64_ATOL)
    # None in an object table is missing too, in a categorical column as in a numeric one
    table = np.column_stack([holes, np.array(["a", "b"], dtype=object)[np.arange(40) % 2]])
    table[[0, 5], 3] = None
    table[2, 0] = None
    assert np.isfinite(_predict(estimator.fit(table, y), table)).all()


def test_a_column_of_nan_is_reported_and_ignored(estimator) -> None:
    x, y = _table()
    empty = np.column_stack([x[:, :1], np.full(len(x), np.nan), x[:, 1:]])
    with pytest.warns(UserWarning, match=r"column\(s\) 1 of X hold no value in the context"):
        estimator.fit(empty, y)
    with_values = empty.copy()
    with_values[:, 1] = 7.0  # values at predict time in the ignored column change nothing
    got = _predict(estimator, with_values)
    np.testing.assert_allclose(got, _predict(estimator.fit(x, y), x), atol=FLOAT64_ATOL, rtol=0)
    with pytest.raises(ValueError, match="every column of X is missing"):
        estimator.fit(np.full((10, 2), np.nan), y[:10])


def test_nan_and_inf_in_y_stay_errors(estimator) -> None:
    x, y = _table()
    for bad in (np.nan, np.inf):
        y_bad = y.astype(float)
        y_bad[3] = bad
        with pytest.raises(ValueError, match="y contains"):
            estimator.fit(x, y_bad)


@pytest.mark.slow
def test_regression_with_holes_is_calibrated_on_the_shipped_checkpoint() -> None:
    x, y = make_friedman1(n_samples=1000, noise=1.0, random_state=0)
    x = _with_holes(x)
    reg = PFNRegressor().fit(x[:100], y[:100])  # the general-purpose "gp"
    quantiles = reg.predict_quantiles(x[100:], [0.05, 0.95])
    coverage = np.mean((y[100:] >= quantiles[:, 0]) & (y[100:] <= quantiles[:, 1]))
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1]
    log_density = reg.predict_distribution(x[100:]).log_prob(torch.as_tensor(y[100:]))
    assert torch.isfinite(log_density).all()
    # better than the Gaussian of the context's targets, which ignores X
    loc, var = y[:100].mean(), y[:100].var()
    baseline = -0.5 * np.log(2 * np.pi * var) - 0.5 * (y[100:] - loc) ** 2 / var
    assert log_density.mean().item() > baseline.mean() + 0.2


@pytest.mark.slow
def test_classification_with_holes_is_calibrated_on_the_shipped_checkpoint() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(y))
    x, y = _with_holes(x[rows]), y[rows]
    clf = PFNClassifier().fit(x[:200], y[:200])  # the general-purpose "scm-clf"
    proba = clf.predict_proba(x[200:])[:, 1]
    assert log_loss(y[200:], proba) < 0.3  # the class frequencies alone score 0.66
    # calibration: in each fifth of the predicted probabilities the observed rate is close
    bins = np.quantile(proba, np.linspace(0, 1, 6))
    which = np.clip(np.searchsorted(bins, proba, side="right") - 1, 0, 4)
    for b in range(5):
        assert abs(proba[which == b].mean() - y[200:][which == b].mean()) < 0.15
