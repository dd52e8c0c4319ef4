"""PFNClassifier: probabilities, label handling, relabelling invariance, clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_classifier_not_supporting_multiclass

from pfnkit import PFNClassifier
from pfnkit.checkpoint import save_checkpoint
from pfnkit.estimators import PFNRegressor
from pfnkit.models import PFN, PFNConfig
from tests.conftest import FLOAT64_ATOL


def _save_random_classifier(
    path: Path, n_classes: int, num_features: int = 3, n_ctx_max: int = 50
) -> Path:
    config = PFNConfig(
        num_features=num_features, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_classes=n_classes
    )
    torch.manual_seed(0)
    model = PFN(config)
    with torch.no_grad():
        model.query_marker.normal_()  # no parameter left at its (zero) init
    card = save_checkpoint(
        path,
        model.eval(),
        prior_name="logistic",
        prior_config={"n_classes": n_classes},
        train_config={"n_ctx_max": n_ctx_max},
        command="pytest fixture",
        data_mapping={"x": "standardize", "features": "pad"},
    )
    return card.with_suffix(".safetensors")


@pytest.fixture
def clf3(tmp_path: Path) -> str:
    """A random 3-class, 3-feature ("pad", "standardize") checkpoint named 'clf3'."""
    return str(_save_random_classifier(tmp_path / "clf3", n_classes=3))


@pytest.fixture
def clf_binary(tmp_path: Path) -> str:
    """A random binary checkpoint named 'clf-bin'."""
    return str(_save_random_classifier(tmp_path / "clf-bin", n_classes=2))


def _data(n: int = 24, d: int = 2, n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.arange(n) % n_classes
    return x + y[:, None], y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_probabilities_sum_to_one_and_match_predict(clf3: str, dtype: str) -> None:
    x, y = _data()
    x_test = np.random.default_rng(1).normal(size=(9, 2))
    clf = PFNClassifier(checkpoint=clf3, dtype=dtype, query_chunk_size=4).fit(x, y)
    proba = clf.predict_proba(x_test)
    assert proba.shape == (9, 3) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=FLOAT64_ATOL, rtol=0)
    np.testing.assert_array_equal(clf.predict(x_test), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(
        clf.predict_log_proba(x_test), np.log(proba), atol=FLOAT64_ATOL, rtol=0
    )
    assert clf.n_features_in_ == 2 and len(clf.permutations_) == 6
    assert 0.0 <= clf.score(x, y) <= 1.0


def test_one_relabelling_reads_the_raw_model(clf3: str) -> None:
    x, y = _data(n_classes=2)
    x_test = np.random.default_rng(1).normal(size=(5, 2))
    clf = PFNClassifier(checkpoint=clf3, class_permutations=1, n_estimators=1,
                        preprocessing="none", softmax_temperature=1.0,
                        dtype="float64").fit(x, y)  # fmt: skip
    model = clf.checkpoint_.model
    loc, scale = x.mean(axis=0), x.std(axis=0)

    def inputs(rows: np.ndarray) -> torch.Tensor:  # standardized, then zero-padded to 3
        return torch.as_tensor(np.column_stack([(rows - loc) / scale, np.zeros(len(rows))]))[None]

    with torch.no_grad():
        logits = model(inputs(x), torch.tensor(y, dtype=torch.float64)[None], inputs(x_test))
        logits = logits.logits[0]
    expected = torch.softmax(logits[:, :2], dim=-1).numpy()  # the 2 labels in use
    np.testing.assert_allclose(clf.predict_proba(x_test), expected, atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_predictions_are_invariant_to_relabelling_the_classes(clf3: str, n_classes: int) -> None:
    x, y = _data(n_classes=n_classes)
    x_test = np.random.default_rng(2).normal(size=(7, 2))
    names = np.array(["cat", "dog", "emu"])[:n_classes]
    renamed = np.array(["zebra", "ant", "mole"])[:n_classes]  # reverses the sorted order
    # every view with all C! relabellings: "auto" does that for 2 classes at n_estimators=8
    options = {"class_permutations": "auto" if n_classes == 2 else "all", "dtype": "float64"}
    a = PFNClassifier(checkpoint=clf3, **options).fit(x, names[y])
    b = PFNClassifier(checkpoint=clf3, **options).fit(x, renamed[y])
    order = [list(b.classes_).index(renamed[k]) for k in range(n_classes)]
    proba_a = a.predict_proba(x_test)
    proba_b = b.predict_proba(x_test)[:, order]  # columns in the order of a's classes
    np.testing.assert_allclose(proba_a, proba_b, atol=FLOAT64_ATOL, rtol=0)
    # the random network alone is not invariant, so the averaging is what makes it so
    a1 = PFNClassifier(checkpoint=clf3, class_permutations=1).fit(x, names[y])
    b1 = PFNClassifier(checkpoint=clf3, class_permutations=1).fit(x, renamed[y])
    assert not np.allclose(a1.predict_proba(x_test), b1.predict_proba(x_test)[:, order])


def test_string_and_non_contiguous_labels_round_trip(clf3: str) -> None:
    x, y = _data()
    for labels in (np.array(["no", "maybe", "yes"], dtype=object), np.array([-7, 10, 3])):
        clf = PFNClassifier(checkpoint=clf3).fit(x, labels[y])
        np.testing.assert_array_equal(clf.classes_, np.sort(labels))
        assert set(clf.predict(x)) <= set(labels)
        assert clf.predict(x).dtype == labels.dtype


def test_a_single_class_is_predicted_with_certainty(clf3: str) -> None:
    x, _ = _data()
    clf = PFNClassifier(checkpoint=clf3).fit(x, np.full(len(x), "only"))
    np.testing.assert_array_equal(clf.predict(x[:4]), ["only"] * 4)
    np.testing.assert_array_equal(clf.predict_proba(x[:4]), np.ones((4, 1)))


def test_too_many_classes_is_a_clear_error(clf_binary: str, clf3: str) -> None:
    x, _ = _data(n=25)
    y = np.arange(25) % 5
    with pytest.raises(
        ValueError, match="y has 5 classes but checkpoint 'clf-bin' supports at most 2"
    ):
        PFNClassifier(checkpoint=clf_binary).fit(x, y)
    with pytest.raises(
        ValueError, match="y has 5 classes but checkpoint 'clf3' supports at most 3"
    ):
        PFNClassifier(checkpoint=clf3).fit(x, y)


def test_binary_checkpoints_declare_binary_only_tags(clf_binary: str, clf3: str) -> None:
    assert not get_tags(PFNClassifier(checkpoint=clf_binary)).classifier_tags.multi_class
    assert get_tags(PFNClassifier(checkpoint=clf3)).classifier_tags.multi_class
    check_classifier_not_supporting_multiclass(
        "PFNClassifier", PFNClassifier(checkpoint=clf_binary)
    )


def test_wrong_feature_counts_are_rejected(clf3: str) -> None:
    x, y = _data()
    # more features than the checkpoint reads: random subsets (test_classifier_tables.py)
    with pytest.warns(UserWarning, match="X has 4 features but checkpoint 'clf3' reads at most 3"):
        wide = np.random.default_rng(0).normal(size=(6, 4))  # (constant columns are dropped)
        PFNClassifier(checkpoint=clf3).fit(wide, np.arange(6) % 2)
    clf = PFNClassifier(checkpoint=clf3).fit(x, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.zeros((2, 3)))


def test_context_larger_than_trained_warns(clf3: str) -> None:
    x, y = _data(n=60)
    with pytest.warns(UserWarning, match="context has 60 points .* trained on at most 50"):
        clf = PFNClassifier(checkpoint=clf3).fit(x, y)
    assert np.isfinite(clf.predict_proba(x)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PFNClassifier(checkpoint=clf3).fit(*_data(n=50))


def test_heads_and_estimators_must_match(clf3: str, tiny_checkpoint: Path) -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="regression head, but PFNClassifier.*use PFNRegressor"):
        PFNClassifier(checkpoint=str(tiny_checkpoint)).fit(x[:, :1], y)
    with pytest.raises(ValueError, match="classification head, but PFNRegressor.*PFNClassifier"):
        PFNRegressor(checkpoint=clf3).fit(x, y.astype(float))


def test_class_permutations_options(clf3: str) -> None:
    x, y = _data()
    perms = {
        setting: PFNClassifier(checkpoint=clf3, class_permutations=setting).fit(x, y).permutations_
        for setting in ("auto", "all", 1, 3, 100)
    }
    assert len(perms["auto"]) == len(perms["all"]) == len(perms[100]) == 6
    np.testing.assert_array_equal(perms[1], [[0, 1, 2]])
    assert len(perms[3]) == 3 and len({tuple(p) for p in perms[3]}) == 3
    np.testing.assert_array_equal(perms[3][0], [0, 1, 2])
    for bad in (0, "some", 2.5, True):
        with pytest.raises(ValueError, match="class_permutations must be"):
            PFNClassifier(checkpoint=clf3, class_permutations=bad).fit(x, y)


def test_random_relabellings_are_seeded(tmp_path: Path) -> None:
    ckpt = str(_save_random_classifier(tmp_path / "clf7", n_classes=7))
    x = np.random.default_rng(0).normal(size=(21, 2))
    y = np.arange(21) % 7
    auto = PFNClassifier(checkpoint=ckpt).fit(x, y).permutations_
    again = PFNClassifier(checkpoint=ckpt).fit(x, y).permutations_
    other = PFNClassifier(checkpoint=ckpt, random_state=1).fit(x, y).permutations_
    assert auto.shape == (8, 7)  # 7! > n_estimators = 8: 8 relabellings, one per view
    np.testing.assert_array_equal(auto, again)
    assert not np.array_equal(auto, other)
    with pytest.raises(ValueError, match="5040 context encodings"):
        PFNClassifier(checkpoint=ckpt, class_permutations="all").fit(x, y)


def test_out_of_memory_names_the_knobs(clf3: str, monkeypatch) -> None:
    x, y = _data()
    clf = PFNClassifier(checkpoint=clf3, query_chunk_size=64).fit(x, y)

    def fail(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    model_cls = type(clf.checkpoint_.model)
    monkeypatch.setattr(model_cls, "predict_from_cache", fail)
    with pytest.raises(MemoryError, match=r"PFNClassifier\(query_chunk_size=16\)"):
        clf.predict_proba(x)
    monkeypatch.setattr(model_cls, "encode_context", fail)
    # 3 classes, 2 columns: 2 orders × 3 transforms, each view with one of the 3! relabellings
    with pytest.raises(MemoryError, match=r"n_estimators or fewer class_permutations \(now 6"):
        clf.fit(x, y)
    monkeypatch.undo()
    monkeypatch.setattr(model_cls, "forward", fail)  # the temperature's cross-validation
    with pytest.raises(MemoryError, match=r"cross-validating.*pass softmax_temperature=1.0"):
        clf.fit(x, y)
