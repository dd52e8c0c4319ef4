"""PFNClassifier on real tables: ensembles over column orders, categorical codes, quantiles."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pfnkit import PFNClassifier
from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators.classifier import draw_feature_orders
from pfnkit.estimators.tables import UNKNOWN_CATEGORY_CODE
from pfnkit.models import PFNConfig
from tests.helpers import make_tiny_pfn

FLOAT64_ATOL = 1e-10  # float64 identities up to summation order (rows permuted, cached or not)
WIDTH, N_CLASSES = 4, 4  # the random checkpoint reads 4 features, has 4 class outputs


@pytest.fixture
def clf4(tmp_path: Path) -> str:
    """A random 4-feature, 4-class checkpoint ("pad", "standardize") named 'clf4'."""
    config = PFNConfig(num_features=WIDTH, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                       n_classes=N_CLASSES)  # fmt: skip
    card = save_checkpoint(
        tmp_path / "clf4",
        make_tiny_pfn(config).double(),
        prior_name="scm",
        prior_config={"num_classes_max": N_CLASSES},
        train_config={"n_ctx_max": 100},
        command="pytest fixture",
        data_mapping={"x": "standardize", "features": "pad"},
    )
    return str(card.with_suffix(".safetensors"))


def _table(n: int = 30, d: int = 3, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, d)) + y[:, None] * np.linspace(0.5, 1.5, d)
    return x, y


def _loop_oracle(clf: PFNClassifier, x: np.ndarray, y: np.ndarray, x_test: np.ndarray):
    """Members one by one through the uncached forward pass, standardized by hand."""
    model = clf.checkpoint_.model
    loc, scale = x.mean(axis=0), x.std(axis=0)
    _, y_index = np.unique(y, return_inverse=True)
    members = []
    for order, perm in itertools.product(clf.feature_orders_, clf.permutations_):

        def inputs(rows: np.ndarray, order: np.ndarray = order) -> torch.Tensor:
            z = (rows[:, order] - loc[order]) / scale[order]
            padded = np.zeros((len(rows), WIDTH))
            padded[:, : len(order)] = z
            return torch.as_tensor(padded)[None]

        labels = torch.as_tensor(perm[y_index], dtype=torch.float64)[None]
        with torch.no_grad():
            logits = model(inputs(x), labels, inputs(x_test)).logits[0]
        members.append(torch.softmax(logits[:, perm], dim=-1).numpy())
    return np.mean(members, axis=0)


@pytest.mark.parametrize("d", [3, 6])  # fewer features than the model reads, and more
def test_ensemble_equals_a_loop_over_its_members(clf4: str, d: int) -> None:
    x, y = _table(d=d)
    x_test = np.random.default_rng(1).normal(size=(7, d))
    clf = PFNClassifier(checkpoint=clf4, n_estimators=4, class_permutations=2, query_chunk_size=3)
    with pytest.warns(UserWarning) if d > WIDTH else contextlib.nullcontext():
        clf.fit(x, y)
    assert len(clf.feature_orders_) == 4 and len(clf.permutations_) == 2
    expected = _loop_oracle(clf, x, y, x_test)
    np.testing.assert_allclose(clf.predict_proba(x_test), expected, atol=FLOAT64_ATOL, rtol=0)


def test_predictions_are_invariant_to_the_order_of_context_rows(clf4: str) -> None:
    x, y = _table(n=40, d=3)
    x = np.column_stack([x, np.array(["a", "b", "c", "d", "e"], dtype=object)[np.arange(40) % 5]])
    x_test = x[::3]
    options = dict(checkpoint=clf4, n_estimators=4, preprocessing="quantile", random_state=3)
    proba = PFNClassifier(**options).fit(x, y).predict_proba(x_test)
    rows = np.random.default_rng(0).permutation(len(x))
    shuffled = PFNClassifier(**options).fit(x[rows], y[rows]).predict_proba(x_test)
    np.testing.assert_allclose(proba, shuffled, atol=FLOAT64_ATOL, rtol=0)


def test_the_seed_fixes_the_ensemble(clf4: str) -> None:
    x, y = _table(d=3)
    x_test = np.random.default_rng(1).normal(size=(9, 3))

    def proba(seed: int, **options) -> np.ndarray:
        clf = PFNClassifier(checkpoint=clf4, random_state=seed, **options)
        return clf.fit(x, y).predict_proba(x_test)

    np.testing.assert_array_equal(proba(5, n_estimators=3), proba(5, n_estimators=3))
    assert not np.allclose(proba(5, n_estimators=3), proba(6, n_estimators=3))
    # one member reads the columns as given, whatever the seed
    np.testing.assert_array_equal(
        proba(5, n_estimators=1, class_permutations="all"),
        proba(6, n_estimators=1, class_permutations="all"),
    )


def test_feature_orders_start_with_the_identity_and_are_distinct() -> None:
    rng = np.random.RandomState(0)
    orders = draw_feature_orders(5, 8, 4, rng)
    assert orders.shape == (4, 5) and len({tuple(o) for o in orders}) == 4
    np.testing.assert_array_equal(orders[0], np.arange(5))
    assert all(sorted(o) == list(range(5)) for o in orders)
    every = draw_feature_orders(3, 8, 6, rng)  # 3! <= 6: all of them
    assert {tuple(o) for o in every} == set(itertools.permutations(range(3)))
    np.testing.assert_array_equal(draw_feature_orders(3, 3, 1, rng), [[0, 1, 2]])


def test_more_features_than_the_model_reads_become_balanced_subsets(clf4: str) -> None:
    orders = draw_feature_orders(10, 4, 2, np.random.RandomState(0))
    assert orders.shape == (3, 4)  # ceil(10 / 4) subsets, though 2 were asked for
    uses = np.bincount(orders.ravel(), minlength=10)
    assert uses.min() >= 1 and uses.max() - uses.min() <= 1
    assert all(len(set(o)) == 4 for o in orders)
    x, y = _table(d=10)
    with pytest.warns(UserWarning, match="X has 10 features but checkpoint 'clf4' reads at most 4; "
                      "each of the 3 ensemble members sees a random subset of 4"):  # fmt: skip
        clf = PFNClassifier(checkpoint=clf4).fit(x, y)
    assert clf.n_features_in_ == 10 and np.isfinite(clf.predict_proba(x)).all()
    with pytest.raises(ValueError, match="X has 9 features, but PFNClassifier is expecting 10"):
        clf.predict(x[:, :9])


def test_too_many_classes_is_a_clear_error(clf4: str) -> None:
    x, _ = _table(n=30, d=3)
    with pytest.raises(
        ValueError, match="y has 5 classes but checkpoint 'clf4' supports at most 4"
    ):
        PFNClassifier(checkpoint=clf4, n_estimators=3).fit(x, np.arange(30) % 5)


def test_missing_values_are_rejected_naming_the_columns(clf4: str) -> None:
    x, y = _table(d=3)
    with_nan = x.copy()
    with_nan[[2, 5], 2] = np.nan
    with_nan[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN .* or inf in column\(s\) 0, 2; .* impute"):
        PFNClassifier(checkpoint=clf4).fit(with_nan, y)
    table = np.column_stack([x, np.array(["u", "v"], dtype=object)[np.arange(30) % 2]])
    table[4, 3] = None
    with pytest.raises(ValueError, match=r"NaN .* in column\(s\) 3;"):
        PFNClassifier(checkpoint=clf4).fit(table, y)
    clf = PFNClassifier(checkpoint=clf4).fit(x, y)
    with pytest.raises(ValueError, match=r"NaN .* in column\(s\) 2;"):
        clf.predict_proba(with_nan[2:4])


def test_categorical_columns_get_ordinal_codes_and_unseen_categories_code_minus_one(
    clf4: str,
) -> None:
    x, y = _table(d=2)
    colours = np.array(["red", "green", "blue"], dtype=object)[np.arange(30) % 3]
    table = np.column_stack([x[:, 0], colours, x[:, 1]])  # object array, one string column
    clf = PFNClassifier(checkpoint=clf4, n_estimators=2).fit(table, y)
    np.testing.assert_array_equal(clf.preprocessor_.categorical_, [False, True, False])
    codes = clf.preprocessor_.transform(table)[:, 1]
    np.testing.assert_array_equal(codes, np.searchsorted(["blue", "green", "red"], colours))
    queries = table[:4].copy()
    queries[0, 1] = "purple"  # unseen in fit
    assert clf.preprocessor_.transform(queries)[0, 1] == UNKNOWN_CATEGORY_CODE
    assert np.isfinite(clf.predict_proba(queries)).all()
    # naming the column by index or mask is the same as "auto"; lists keep their numbers
    for spec in ([1], [-2], [False, True, False]):
        named = PFNClassifier(checkpoint=clf4, n_estimators=2, categorical_features=spec)
        np.testing.assert_array_equal(named.fit(table, y).predict_proba(queries),
                                      clf.predict_proba(queries))  # fmt: skip
    as_list = PFNClassifier(checkpoint=clf4, n_estimators=2).fit(table.tolist(), y)
    np.testing.assert_array_equal(as_list.predict_proba(queries), clf.predict_proba(queries))
    # a numeric column may be declared categorical; a string column must be categorical
    numeric = PFNClassifier(checkpoint=clf4, categorical_features=[0]).fit(x.round(), y)
    np.testing.assert_array_equal(numeric.preprocessor_.categorical_, [True, False])
    with pytest.raises(ValueError, match=r"column\(s\) 1 of X hold strings but are not among"):
        PFNClassifier(checkpoint=clf4, categorical_features=[0]).fit(table, y)
    with pytest.raises(ValueError, match="out of range for 3 columns"):
        PFNClassifier(checkpoint=clf4, categorical_features=[3]).fit(table, y)


def test_numbers_in_object_arrays_stay_numeric(clf4: str) -> None:
    x, y = _table(d=3)
    clf = PFNClassifier(checkpoint=clf4).fit(x.astype(object), y)
    assert not clf.preprocessor_.categorical_.any()
    expected = PFNClassifier(checkpoint=clf4).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(clf.predict_proba(x.astype(object)), expected)


def test_quantile_scores_match_plotting_positions_of_the_context(clf4: str) -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.exponential(size=40), rng.standard_t(2, size=40)])
    y = np.arange(40) % 2
    clf = PFNClassifier(checkpoint=clf4, preprocessing="quantile").fit(x, y)
    # oracle: the k-th smallest of n distinct context values has level (k + 1/2) / n;
    # between context values the level is linear in x, outside it is clipped
    n = len(x)
    queries = np.vstack([x[:5] + 1e-3, x.min(axis=0) - 1, x.max(axis=0) + 1])
    for j in range(2):
        ranks = np.argsort(np.argsort(x[:, j]))
        np.testing.assert_allclose(clf.preprocessor_.transform(x)[:, j],
                                   norm.ppf((ranks + 0.5) / n), atol=1e-12)  # fmt: skip
        level = np.interp(queries[:, j], np.sort(x[:, j]), (np.arange(n) + 0.5) / n)
        np.testing.assert_allclose(
            clf.preprocessor_.transform(queries)[:, j], norm.ppf(level), atol=1e-9
        )
    scores = clf.preprocessor_.transform(x)
    assert np.abs(scores).max() == pytest.approx(norm.ppf(1 - 0.5 / n))  # not sklearn's 5.2


def test_bad_options_are_clear_errors(clf4: str) -> None:
    x, y = _table(d=3)
    for bad in (0, 2.0, True, "4"):
        with pytest.raises(ValueError, match="n_estimators must be a positive int"):
            PFNClassifier(checkpoint=clf4, n_estimators=bad).fit(x, y)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        PFNClassifier(checkpoint=clf4, preprocessing="power").fit(x, y)
    with pytest.raises(ValueError, match="categorical_features must be 'auto'"):
        PFNClassifier(checkpoint=clf4, categorical_features="all").fit(x, y)
