"""Ensemble views: column orders, numeric transforms against hand formulas, imputation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from pfnkit.estimators.ensemble import (
    PREPROCESSINGS,
    FeatureViews,
    NumericTransform,
    draw_feature_orders,
    resolve_preprocessing,
    view_layout,
)
from tests.conftest import FLOAT64_ATOL


def _skewed(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.exponential(size=n), rng.standard_t(2, size=n), rng.normal(size=n)])


def test_feature_orders_start_with_the_identity_and_are_distinct() -> None:
    rng = np.random.RandomState(0)
    orders = draw_feature_orders(5, 8, 4, rng)
    assert orders.shape == (4, 5) and len({tuple(o) for o in orders}) == 4
    np.testing.assert_array_equal(orders[0], np.arange(5))
    assert all(sorted(o) == list(range(5)) for o in orders)
    every = draw_feature_orders(3, 8, 6, rng)  # 3! <= 6: all of them
    assert {tuple(o) for o in every} == set(itertools.permutations(range(3)))
    np.testing.assert_array_equal(draw_feature_orders(3, 3, 1, rng), [[0, 1, 2]])


def test_more_features_than_the_model_reads_become_balanced_subsets() -> None:
    orders = draw_feature_orders(10, 4, 2, np.random.RandomState(0))
    assert orders.shape == (3, 4)  # ceil(10 / 4) subsets, though 2 were asked for
    uses = np.bincount(orders.ravel(), minlength=10)
    assert uses.min() >= 1 and uses.max() - uses.min() <= 1
    assert all(len(set(o)) == 4 for o in orders)


@pytest.mark.parametrize(
    ("n_orders", "n_methods", "n_views"),
    [(2, 4, 8), (3, 2, 6), (1, 4, 3), (6, 4, 4), (5, 4, 3), (2, 1, 4)],
)
def test_views_are_distinct_and_use_every_order_and_method_they_can(
    n_orders: int, n_methods: int, n_views: int
) -> None:
    layout = view_layout(n_orders, n_methods, n_views)
    assert len({tuple(v) for v in layout}) == len(layout)  # distinct
    if n_orders >= n_views:  # every order (e.g. every subset of a wide table) is read
        assert sorted(layout[:, 0]) == list(range(n_orders))
    else:
        assert len(layout) == min(n_views, n_orders * n_methods)
        assert set(layout[:, 1]) == set(range(min(n_methods, len(layout))))


def test_auto_preprocessing_follows_the_card() -> None:
    assert resolve_preprocessing("auto", "standardize") == PREPROCESSINGS
    assert resolve_preprocessing("auto", "identity") == ("none",)
    assert resolve_preprocessing(["quantile", "none"], "identity") == ("quantile", "none")
    for bad in ("power2", [], ["none", "log"]):
        with pytest.raises(ValueError, match="preprocessing must be 'auto', one of"):
            resolve_preprocessing(bad, "standardize")


def test_quantile_scores_match_plotting_positions_of_the_context() -> None:
    x = _skewed()[:, :2]
    n = len(x)
    transform = NumericTransform("quantile").fit(x)
    # oracle: the k-th smallest of n distinct context values has level (k + 1/2) / n;
    # between context values the level is linear in x, outside it is clipped
    queries = np.vstack([x[:5] + 1e-3, x.min(axis=0) - 1, x.max(axis=0) + 1])
    for j in range(2):
        ranks = np.argsort(np.argsort(x[:, j]))
        np.testing.assert_allclose(transform.transform(x)[:, j], stats.norm.ppf((ranks + 0.5) / n),
                                   atol=FLOAT64_ATOL)  # fmt: skip
        level = np.interp(queries[:, j], np.sort(x[:, j]), (np.arange(n) + 0.5) / n)
        np.testing.assert_allclose(
            transform.transform(queries)[:, j], stats.norm.ppf(level), atol=FLOAT64_ATOL
        )
    scores = transform.transform(x)
    assert np.abs(scores).max() == pytest.approx(stats.norm.ppf(1 - 0.5 / n))  # not sklearn's 5.2


def test_robust_and_power_transforms_match_hand_formulas() -> None:
    x = _skewed()
    robust = NumericTransform("robust").fit(x).transform(x)
    q1, median, q3 = np.percentile(x, [25, 50, 75], axis=0)
    np.testing.assert_allclose(robust, (x - median) / (q3 - q1), atol=FLOAT64_ATOL)
    power = NumericTransform("power").fit(x)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    for j, lam in enumerate(power.fitted_):
        # scipy's Yeo-Johnson at the fitted λ, standardized; and λ maximizes its likelihood
        expected = stats.yeojohnson(z[:, j], lmbda=lam)
        expected = (expected - expected.mean()) / expected.std()
        np.testing.assert_allclose(power.transform(x)[:, j], expected, atol=FLOAT64_ATOL)
        assert stats.yeojohnson_llf(lam, z[:, j]) >= stats.yeojohnson_llf(lam + 0.05, z[:, j])
        assert stats.yeojohnson_llf(lam, z[:, j]) >= stats.yeojohnson_llf(lam - 0.05, z[:, j])
    skew = stats.skew(power.transform(x)[:, 0])
    assert abs(skew) < abs(stats.skew(x[:, 0])) / 3  # the exponential column is symmetrized


@pytest.mark.parametrize("method", PREPROCESSINGS)
def test_transforms_ignore_row_order_and_other_rows_and_keep_nan(method: str) -> None:
    x = _skewed()
    x[[3, 7], 1] = np.nan
    x[:, 2] = 1.5  # a constant column passes through
    queries = np.vstack([_skewed(seed=1)[:6], [[np.nan, 0.3, 2.0]]])
    fitted = NumericTransform(method).fit(x)
    shuffled = NumericTransform(method).fit(x[np.random.default_rng(0).permutation(len(x))])
    out = fitted.transform(queries)
    np.testing.assert_array_equal(out, shuffled.transform(queries))  # exactly: sorted fits
    one_by_one = np.vstack([fitted.transform(row[None]) for row in queries])
    np.testing.assert_array_equal(out, one_by_one)
    assert np.isnan(out[-1, 0]) and np.isfinite(out[:-1]).all()
    np.testing.assert_array_equal(out[:, 2], queries[:, 2])


def _views(x: np.ndarray, *, width: int = 6, standardize: bool = True, **options) -> FeatureViews:
    orders = options.pop("orders", np.array([[0, 1, 2], [2, 0, 1]]))
    return FeatureViews(
        orders=orders,
        methods=options.pop("methods", ("none",)),
        layout=options.pop("layout", np.array([[0, 0], [1, 0]])),
        categorical=options.pop("categorical", np.zeros(x.shape[1], dtype=bool)),
        standardize=standardize,
        width=width,
        **options,
    ).fit(x)


def test_missing_values_are_imputed_at_the_mean_with_standardized_indicators() -> None:
    x = _skewed(n=20)
    x[[1, 4, 9, 13], 1] = np.nan  # 4 of 20 missing in column 1
    views = _views(x)
    inputs = views.transform(x)  # (2 views, 20 rows, width 6)
    assert inputs.shape == (2, 20, 6) and np.isfinite(inputs).all()
    observed = x[~np.isnan(x[:, 1]), 1]
    z = (x[:, 1] - observed.mean()) / observed.std()
    np.testing.assert_allclose(inputs[0, :, 1], np.where(np.isnan(z), 0.0, z), atol=FLOAT64_ATOL)
    indicator = (np.isnan(x[:, 1]) - 0.2) / np.sqrt(0.2 * 0.8)
    np.testing.assert_allclose(inputs[0, :, 3], indicator, atol=FLOAT64_ATOL)  # after 3 columns
    np.testing.assert_array_equal(inputs[:, :, 4:], 0.0)  # then zero padding
    np.testing.assert_allclose(inputs[1, :, :3], inputs[0][:, [2, 0, 1]], atol=0)
    # no spare input: no indicator; identity card: the column mean, raw 0/1 indicator
    assert not _views(x, width=3).transform(x)[..., 3:].size
    raw = _views(x, standardize=False).transform(x[:2])
    np.testing.assert_allclose(raw[0, 1, 1], observed.mean(), atol=FLOAT64_ATOL)
    np.testing.assert_array_equal(raw[0, :, 3], [0.0, 1.0])


def test_categorical_codes_are_never_transformed() -> None:
    x = _skewed(n=30)
    x[:, 2] = np.arange(30) % 3
    views = _views(x, methods=("quantile",), categorical=np.array([False, False, True]),
                   standardize=False)  # fmt: skip
    np.testing.assert_array_equal(views.transform(x)[0, :, 2], x[:, 2])
    assert not np.allclose(views.transform(x)[0, :, 0], x[:, 0])
