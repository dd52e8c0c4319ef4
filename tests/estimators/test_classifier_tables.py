"""PFNClassifier on real tables: ensembles over views and relabellings, categorical codes."""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from pfnkit import PFNClassifier
from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators.calibration import LOG_TEMPERATURE_PRIOR_STD
from pfnkit.estimators.ensemble import PREPROCESSINGS
from pfnkit.estimators.tables import UNKNOWN_CATEGORY_CODE
from pfnkit.models import PFNConfig
from tests.conftest import FLOAT64_ATOL
from tests.estimators.test_calibration import OPTIMIZER_ATOL, _brent, _folds_oracle
from tests.helpers import make_tiny_pfn

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
    """(E, m, C) member probabilities, one by one through the uncached forward pass,
    standardized by hand."""
    model = clf.checkpoint_.model
    loc, scale = x.mean(axis=0), x.std(axis=0)
    _, y_index = np.unique(y, return_inverse=True)
    members = []
    for view, relabelling in clf.members_:
        order = clf.views_.orders[clf.views_.layout[view, 0]]
        perm = clf.permutations_[relabelling]

        def inputs(rows: np.ndarray, order: np.ndarray = order) -> torch.Tensor:
            z = (rows[:, order] - loc[order]) / scale[order]
            padded = np.zeros((len(rows), WIDTH))
            padded[:, : len(order)] = z
            return torch.as_tensor(padded)[None]

        labels = torch.as_tensor(perm[y_index], dtype=torch.float64)[None]
        with torch.no_grad():
            logits = model(inputs(x), labels, inputs(x_test)).logits[0]
        members.append(torch.softmax(logits[:, perm], dim=-1).numpy())
    return np.array(members)


def _pooled(members_EMC: np.ndarray, pooling: str, temperature: float = 1.0) -> np.ndarray:
    """The pool of member probabilities, by hand: p ∝ pool^(1/T)."""
    if pooling == "linear":
        pool = members_EMC.mean(axis=0)
    else:  # the geometric mean
        pool = np.exp(np.log(members_EMC).mean(axis=0))
    sharpened = pool ** (1 / temperature)
    return sharpened / sharpened.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("d", [3, 6])  # fewer features than the model reads, and more
# a grid, and one relabelling per view; each with one of the pools
@pytest.mark.parametrize(("relabellings", "pooling"), [(2, "linear"), ("auto", "log")])
def test_ensemble_equals_a_loop_over_its_members(
    clf4: str, d: int, relabellings, pooling: str
) -> None:
    x, y = _table(d=d)
    x_test = np.random.default_rng(1).normal(size=(7, d))
    clf = PFNClassifier(checkpoint=clf4, n_estimators=8, class_permutations=relabellings,
                        preprocessing="none", query_chunk_size=3, dtype="float64",
                        pooling=pooling, softmax_temperature=1.0)  # fmt: skip
    with pytest.warns(UserWarning) if d > WIDTH else contextlib.nullcontext():
        clf.fit(x, y)
    n_views = len(clf.views_.layout)
    if relabellings == 2:  # 4 views × 2 relabellings, every view with each
        assert n_views == 4 and len(clf.permutations_) == 2 and len(clf.members_) == 8
        assert {tuple(m) for m in clf.members_} == set(itertools.product(range(4), range(2)))
    else:  # 4! > 8 relabellings of 4 classes: 8 of them, one per view
        assert len(clf.permutations_) == 8 and len(clf.members_) == 8
        np.testing.assert_array_equal(clf.members_[:, 1], np.arange(8))
        assert set(clf.members_[:, 0]) == set(range(n_views))
    expected = _pooled(_loop_oracle(clf, x, y, x_test), pooling)
    np.testing.assert_allclose(clf.predict_proba(x_test), expected, atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_transformed_members_equal_uncached_passes_on_their_views(
    clf4: str, temperature: float
) -> None:
    x, y = _table(d=3)
    x[::4, 1] = np.nan
    x_test = np.random.default_rng(1).normal(size=(5, 3))
    clf = PFNClassifier(checkpoint=clf4, n_estimators=8, class_permutations=2,
                        preprocessing=PREPROCESSINGS, softmax_temperature=temperature,
                        dtype="float64").fit(x, y)  # fmt: skip
    methods = {clf.views_.methods[m] for m in clf.views_.layout[:, 1]}
    assert methods == set(PREPROCESSINGS) and clf.temperature_ == temperature
    ctx, qry = clf.views_.transform(x), clf.views_.transform(x_test)
    members = []
    for view, relabelling in clf.members_:
        perm = clf.permutations_[relabelling]
        labels = torch.as_tensor(perm[y], dtype=torch.float64)[None]
        with torch.no_grad():
            logits = clf.checkpoint_.model(
                torch.as_tensor(ctx[view])[None], labels, torch.as_tensor(qry[view])[None]
            ).logits[0]
        members.append(torch.softmax(logits[:, perm], dim=-1).numpy())
    expected = _pooled(np.array(members), "log", temperature)
    np.testing.assert_allclose(clf.predict_proba(x_test), expected, atol=FLOAT64_ATOL, rtol=0)


def test_predictions_are_invariant_to_the_order_of_context_rows(clf4: str) -> None:
    x, y = _table(n=40, d=3)
    x = np.column_stack([x, np.array(["a", "b", "c", "d", "e"], dtype=object)[np.arange(40) % 5]])
    x_test = x[::3]
    x[::7, 0] = np.nan
    options = dict(checkpoint=clf4, n_estimators=8, random_state=3,  # every preprocessing
                   dtype="float64")  # fmt: skip
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
    # one view reads the columns as given, whatever the seed
    np.testing.assert_array_equal(
        proba(5, n_estimators=1, class_permutations="all", preprocessing="none"),
        proba(6, n_estimators=1, class_permutations="all", preprocessing="none"),
    )


def test_more_features_than_the_model_reads_become_subsets_with_a_warning(clf4: str) -> None:
    x, y = _table(d=10)
    with pytest.warns(UserWarning, match="X has 10 features but checkpoint 'clf4' reads at most 4; "
                      "each of the 3 ensemble views sees a random subset of 4"):  # fmt: skip
        clf = PFNClassifier(checkpoint=clf4, n_estimators=1).fit(x, y)
    assert sorted(set(clf.views_.orders.ravel())) == list(range(10))
    assert clf.n_features_in_ == 10 and np.isfinite(clf.predict_proba(x)).all()
    with pytest.raises(ValueError, match="X has 9 features, but PFNClassifier is expecting 10"):
        clf.predict(x[:, :9])


def test_too_many_classes_is_a_clear_error(clf4: str) -> None:
    x, _ = _table(n=30, d=3)
    with pytest.raises(
        ValueError, match="y has 5 classes but checkpoint 'clf4' supports at most 4"
    ):
        PFNClassifier(checkpoint=clf4, n_estimators=3).fit(x, np.arange(30) % 5)


def test_infinity_is_rejected_naming_the_columns(clf4: str) -> None:
    x, y = _table(d=3)
    with_inf = x.copy()
    with_inf[[2, 5], 2] = np.inf
    with_inf[1, 0] = -np.inf
    with pytest.raises(ValueError, match=r"inf in column\(s\) 0, 2; infinity is not a missing"):
        PFNClassifier(checkpoint=clf4).fit(with_inf, y)
    clf = PFNClassifier(checkpoint=clf4).fit(x, y)
    with pytest.raises(ValueError, match=r"inf in column\(s\) 2;"):
        clf.predict_proba(with_inf[2:4])


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
    standardized = (codes - codes.mean()) / codes.std()
    views = clf.views_.transform(clf.preprocessor_.transform(table))
    for view, (o, _) in zip(views, clf.views_.layout, strict=True):
        position = list(clf.views_.orders[o]).index(1)  # codes: standardized, not transformed
        np.testing.assert_allclose(view[:, position], standardized, atol=FLOAT64_ATOL)
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


def test_bad_options_are_clear_errors(clf4: str) -> None:
    x, y = _table(d=3)
    for bad in (0, 2.0, True, "4"):
        with pytest.raises(ValueError, match="n_estimators must be a positive int"):
            PFNClassifier(checkpoint=clf4, n_estimators=bad).fit(x, y)
    with pytest.raises(ValueError, match="preprocessing must be 'auto', one of"):
        PFNClassifier(checkpoint=clf4, preprocessing="log").fit(x, y)
    with pytest.raises(ValueError, match="softmax_temperature must be .auto. or a positive number"):
        PFNClassifier(checkpoint=clf4, softmax_temperature=0).fit(x, y)
    with pytest.raises(ValueError, match="categorical_features must be 'auto'"):
        PFNClassifier(checkpoint=clf4, categorical_features="all").fit(x, y)


def test_auto_temperature_is_fitted_to_cross_validated_members(clf4: str) -> None:
    """The loop oracle: each fold's members one by one, their log pool by hand, and the MAP
    temperature by another optimizer."""
    x, y = _table(n=33, d=3)
    x_test = np.random.default_rng(1).normal(size=(6, 3))
    clf = PFNClassifier(checkpoint=clf4, n_estimators=8, class_permutations=2,
                        dtype="float64").fit(x, y)  # fmt: skip
    views = clf.views_.transform(x)
    fold_of = _folds_oracle(x, y, 5)
    folds = np.array([fold_of[(tuple(row), int(c))] for row, c in zip(x, y, strict=True)])
    pooled, targets = [], []
    for k in range(5):
        train, held = folds != k, folds == k
        log_p = []
        for view, relabelling in clf.members_:
            perm = clf.permutations_[relabelling]
            labels = torch.as_tensor(perm[y[train]], dtype=torch.float64)[None]
            ctx, qry = (torch.as_tensor(views[view][rows])[None] for rows in (train, held))
            with torch.no_grad():
                logits = clf.checkpoint_.model(ctx, labels, qry).logits[0][:, perm]
            log_p.append(torch.log_softmax(logits, dim=-1).numpy())
        mean = np.mean(log_p, axis=0)
        pooled.append(mean - np.log(np.exp(mean).sum(axis=1, keepdims=True)))
        targets.append(y[held])
    log_t = _brent(np.concatenate(pooled), np.concatenate(targets), LOG_TEMPERATURE_PRIOR_STD)
    assert abs(np.log(clf.temperature_) - log_t) < OPTIMIZER_ATOL
    tempered = PFNClassifier(checkpoint=clf4, n_estimators=8, class_permutations=2,
                             dtype="float64", softmax_temperature=clf.temperature_)  # fmt: skip
    np.testing.assert_allclose(clf.predict_proba(x_test),
                               tempered.fit(x, y).predict_proba(x_test),
                               atol=FLOAT64_ATOL, rtol=0)  # fmt: skip


def test_a_checkpoint_with_fixed_feature_units_keeps_temperature_one(tmp_path: Path) -> None:
    config = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_classes=2)
    card = save_checkpoint(tmp_path / "fixed", make_tiny_pfn(config).double(), prior_name="bnn",
                           prior_config={}, train_config={"n_ctx_max": 100},
                           command="pytest fixture")  # fmt: skip
    x, y = _table(n=30, d=3, n_classes=2)
    x[:, 2] = 1.0  # constant, but the model reads exactly 3 columns in fixed units: kept
    clf = PFNClassifier(checkpoint=str(card.with_suffix(".safetensors"))).fit(x, y)
    assert clf.temperature_ == 1.0 and clf.preprocessor_.kept_.all()


def test_constant_columns_are_dropped_as_if_absent(clf4: str) -> None:
    x, y = _table(n=30, d=3)
    constant = np.full(30, 7.5)
    colour = np.full(30, "red", dtype=object)
    holes = np.where(np.arange(30) % 4 == 0, np.nan, 2.0)  # one value, but its holes inform
    table = np.column_stack([constant, x[:, 0], colour, x[:, 1:], holes]).astype(object)
    clf = PFNClassifier(checkpoint=clf4, n_estimators=4, dtype="float64").fit(table, y)
    np.testing.assert_array_equal(clf.preprocessor_.kept_, [0, 1, 0, 1, 1, 1])
    queries = table[:5].copy()
    queries[:, 0], queries[:, 2] = [-3.0, 0.0, 1e6, 7.5, 2.0], "blue"  # anything goes there
    without = np.column_stack([x, holes])
    expected = PFNClassifier(checkpoint=clf4, n_estimators=4, dtype="float64").fit(without, y)
    np.testing.assert_allclose(clf.predict_proba(queries),
                               expected.predict_proba(without[:5].astype(float)),
                               atol=FLOAT64_ATOL, rtol=0)  # fmt: skip
    assert clf.n_features_in_ == 6
