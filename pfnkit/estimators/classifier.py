"""scikit-learn classifier serving a classification PFN checkpoint, as an ensemble on real tables.

A PFN sees class labels as the integers 0..C-1 and features in a column order, and a
trained network is only approximately invariant to either. `PFNClassifier` therefore
encodes the context once per ensemble member, a (column order, relabelling of the
classes) pair, and averages the predicted probabilities over the members: with all C!
relabellings (the default for C <= 3) the prediction does not depend on how the classes
are named or ordered. Before that, `pfnkit.tables.TablePreprocessor` turns the table into
finite numbers (ordinal codes for categorical columns, optional quantile normal scores)
and the card's data mapping takes them into the prior's domain. A table wider than the
checkpoint is read through random subsets of its columns, one per member.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Categorical

from pfnkit.checkpoint import resolve_checkpoint
from pfnkit.estimators._base import DTYPES, CheckpointEstimator, DataMapping, pad_features
from pfnkit.estimators.tables import TablePreprocessor

__all__ = ["PFNClassifier", "draw_feature_orders"]

_AUTO_ALL_MAX_CLASSES = 3  # "auto" averages over all C! relabellings up to this many classes
_AUTO_N_PERMUTATIONS = 6  # ... and over this many (the identity + random ones) beyond it
_MAX_ALL_PERMUTATIONS = math.factorial(6)  # "all" refuses more context encodings than this


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _distinct_permutations(n: int, count: int, rng: np.random.RandomState) -> np.ndarray:
    """(P, n) permutations of 0..n-1: all n! when count >= n!, else the identity and then
    count - 1 distinct random ones."""
    if count >= math.factorial(n):
        return np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    chosen = [tuple(range(n))]
    while len(chosen) < count:
        candidate = tuple(int(k) for k in rng.permutation(n))
        if candidate not in chosen:
            chosen.append(candidate)
    return np.array(chosen, dtype=np.int64)


def draw_feature_orders(
    n_features: int, width: int, n_orders: int, rng: np.random.RandomState
) -> np.ndarray:
    """(F, min(n_features, width)) column orders of the ensemble members.

    Up to `width` features (the model's input width): the identity order first, then
    distinct random permutations, F = min(n_orders, n_features!) of them (all
    n_features! when there are at most n_orders). More features than that: F =
    max(n_orders, ceil(n_features / width)) random subsets of `width` columns in random
    order, each drawn from the least-used columns so far, so every column is in at least
    one subset and no column is used twice more often than another.
    """
    if n_features <= width:
        return _distinct_permutations(n_features, n_orders, rng)
    n_subsets = max(n_orders, math.ceil(n_features / width))
    uses = np.zeros(n_features)
    orders = []
    for _ in range(n_subsets):
        subset = np.argsort(uses + rng.uniform(size=n_features))[:width]  # least used first
        uses[subset] += 1
        orders.append(rng.permutation(subset))
    return np.array(orders, dtype=np.int64)


class PFNClassifier(ClassifierMixin, CheckpointEstimator):
    """Bayesian classification in one forward pass with a pretrained classification PFN.

    `fit` validates the table, preprocesses it (`pfnkit.tables.TablePreprocessor`), maps
    the features into the checkpoint's prior domain (as its card declares), encodes the
    labels as 0..C-1 in the order of `classes_` and encodes the context once per ensemble
    member; `predict_proba` reuses the cached keys and values, runs query points in chunks
    and averages the class probabilities over the members.

    The ensemble has `n_estimators` column orders times the relabellings of
    `class_permutations`, every order with every relabelling: F × P members, and fit and
    predict cost and memory grow linearly in F × P. Member f × P + p reads the features
    in the order `feature_orders_[f]` with the labels relabelled by `permutations_[p]`.

    Inputs the checkpoint was not trained for:

    * more classes than its head has: `ValueError`;
    * more features than it reads: every member sees a random subset of num_features of
      them (at least ceil(d / num_features) members, so every feature is seen), with a
      `UserWarning`; fewer features are zero-padded when the card says so;
    * a context larger than trained: it is used whole, with a `UserWarning` (the model
      extrapolates in context size; subsample the rows yourself if calibration suffers);
    * NaN, None or inf anywhere in X: `ValueError` naming the columns (impute first).

    Args:
        checkpoint: short name (e.g. "bnn-clf", "scm-clf") or path to a classification
            checkpoint.
        device: torch device for the model.
        dtype: "float64" (default: NumPy's precision, so predictions do not depend on how
            the query rows are batched) or "float32" (about twice as fast on a CPU).
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.
        class_permutations: relabellings of the classes to average over. "auto": all C!
            when there are at most 3 classes, else the identity and 5 random ones; "all":
            all C! (up to 6 classes); an int k >= 1: the identity and k - 1 further random
            ones (1 turns the averaging off). Only all C! make predictions exactly
            invariant to renaming the classes.
        n_estimators: column orders to average over (see `draw_feature_orders`): 1 (the
            default) reads the columns as given; k > 1 adds k - 1 distinct random orders
            (all d! of them when d! <= k). 4 to 8 are worth their cost on real tables.
        preprocessing: numeric columns before the card's mapping: "none", or "quantile"
            for normal scores of their context quantiles (`pfnkit.estimators.tables`).
        categorical_features: "auto" (columns that hold strings), column indices or a
            boolean mask. Categorical columns get ordinal codes of their sorted context
            categories; a category unseen in fit gets the code -1.
        random_state: seed (or `numpy.random.RandomState`) of the random relabellings and
            column orders; the same seed gives the same predictions.

    Attributes:
        classes_: the sorted class labels seen in `fit`.
        n_features_in_: the number of features seen in `fit`.
        permutations_: (P, C) int array; relabelling p gives class k the model label
            `permutations_[p, k]`.
        feature_orders_: (F, min(d, num_features)) int array; order f feeds the model
            columns `feature_orders_[f]` of the preprocessed table, then zero padding.
        preprocessor_: the fitted `TablePreprocessor`.
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping` (features only).
        cache_: per-layer context keys and values, one context per member.
    """

    _head = "classification"

    def __init__(
        self,
        checkpoint: str = "bnn-clf",
        device: str = "cpu",
        dtype: str = "float64",
        query_chunk_size: int = 4096,
        class_permutations: int | str = "auto",
        n_estimators: int = 1,
        preprocessing: str = "none",
        categorical_features: str | Sequence[int] | Sequence[bool] = "auto",
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.query_chunk_size = query_chunk_size
        self.class_permutations = class_permutations
        self.n_estimators = n_estimators
        self.preprocessing = preprocessing
        self.categorical_features = categorical_features
        self.random_state = random_state

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNClassifier:
        """Validate and preprocess (X, y), map the features, encode labels and context."""
        if not _is_positive_int(self.n_estimators):
            raise ValueError(f"n_estimators must be a positive int, got {self.n_estimators!r}")
        X, y = validate_data(self, _as_table(X), y, dtype=None, ensure_all_finite=False)
        check_classification_targets(y)
        self._load_checkpoint()
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._check_class_count(len(self.classes_))
        self.preprocessor_ = TablePreprocessor(
            categorical_features=self.categorical_features,
            method=self.preprocessing,
            column_names=getattr(self, "feature_names_in_", None),
        ).fit(X)
        x = self.preprocessor_.transform(X)
        self._check_feature_count(x, allow_more=True)
        self.mapping_ = DataMapping.for_features(x, self.checkpoint_.data_mapping)
        self._warn_if_context_exceeds_training(x.shape[0])
        rng = check_random_state(self.random_state)
        self.permutations_ = self._draw_permutations(len(self.classes_), rng)
        self.feature_orders_ = self._draw_feature_orders(x.shape[1], rng)
        labels_PN = self.permutations_[:, y_index]
        labels_EN = np.tile(labels_PN, (len(self.feature_orders_), 1))
        labels_EN = torch.as_tensor(labels_EN, dtype=DTYPES[self.dtype], device=self.device)
        n_perm, n_orders = len(self.permutations_), len(self.feature_orders_)
        extra = (
            f", fewer class_permutations (now {n_perm * n_orders} context encodings: "
            f"{n_orders} column orders × {n_perm} relabellings), a smaller n_estimators"
        )
        self.cache_ = self._encode_context(x, labels_EN, extra_advice=extra)
        return self

    def _check_class_count(self, n_classes: int) -> None:
        supported = self.checkpoint_.model.config.n_classes
        if n_classes > supported:
            binary = " Only binary classification is supported by it." if supported == 2 else ""
            raise ValueError(
                f"y has {n_classes} classes but checkpoint {self.checkpoint_.name!r} supports at "
                f"most {supported}.{binary} Use a checkpoint trained with n_classes >= "
                f"{n_classes}, or merge classes."
            )

    def _draw_permutations(self, n_classes: int, rng: np.random.RandomState) -> np.ndarray:
        """(P, C) relabellings: all C! of them, or the identity first, then random ones."""
        n_all = math.factorial(n_classes)
        setting = self.class_permutations
        if setting == "auto":
            n_perm = n_all if n_classes <= _AUTO_ALL_MAX_CLASSES else _AUTO_N_PERMUTATIONS
        elif setting == "all":
            if n_all > _MAX_ALL_PERMUTATIONS:
                raise ValueError(
                    f"class_permutations='all' means {n_all} context encodings for "
                    f"{n_classes} classes; pass an int (e.g. {_AUTO_N_PERMUTATIONS}) instead"
                )
            n_perm = n_all
        elif _is_positive_int(setting):
            n_perm = int(setting)
        else:
            raise ValueError(
                f"class_permutations must be 'auto', 'all' or a positive int, got {setting!r}"
            )
        return _distinct_permutations(n_classes, n_perm, rng)

    def _draw_feature_orders(self, n_features: int, rng: np.random.RandomState) -> np.ndarray:
        """`draw_feature_orders` for this checkpoint; warns when X is wider than the model."""
        width = self.checkpoint_.model.config.num_features
        orders = draw_feature_orders(n_features, width, int(self.n_estimators), rng)
        if n_features > width:
            warnings.warn(
                f"X has {n_features} features but checkpoint {self.checkpoint_.name!r} reads at "
                f"most {width}; each of the {len(orders)} ensemble members sees a random subset "
                f"of {width} of them (every feature is in at least one). Raise n_estimators "
                "for more subsets, or select features first",
                UserWarning,
                stacklevel=3,
            )
        return orders

    # --------------------------------------------------------------------- prediction
    def _validate_queries(self, X: np.ndarray) -> np.ndarray:
        X = validate_data(self, _as_table(X), reset=False, dtype=None, ensure_all_finite=False)
        return self.preprocessor_.transform(X)

    def _model_inputs(self, X: np.ndarray, n_contexts: int) -> torch.Tensor:
        """(F × P, m, num_features): member f × P + p reads the columns feature_orders_[f]."""
        mapped = self.mapping_.map_x(X)
        rescale = self.checkpoint_.data_mapping.get("pad_rescale", "none")
        width = self.checkpoint_.model.config.num_features
        x_FMD = np.stack([pad_features(mapped[:, order], width, rescale)
                          for order in self.feature_orders_])  # fmt: skip
        x_FMD = torch.as_tensor(x_FMD, dtype=DTYPES[self.dtype], device=self.device)
        return x_FMD.repeat_interleave(n_contexts // len(x_FMD), dim=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive class probabilities, shape (m, len(classes_))."""
        check_is_fitted(self, "cache_")
        perms_EC = np.tile(self.permutations_, (len(self.feature_orders_), 1))
        perms_EC = torch.as_tensor(perms_EC, device=self.device)

        def average(dist: Categorical) -> np.ndarray:
            log_p_EMK = dist.logits  # over all model labels; keep the C in use, class order
            index_EMC = perms_EC[:, None, :].expand(-1, log_p_EMK.shape[1], -1)
            proba_EMC = torch.softmax(log_p_EMK.gather(-1, index_EMC), dim=-1)
            return proba_EMC.mean(dim=0).double().cpu().numpy()

        proba = self._decode(X, average, n_contexts=len(perms_EC))
        return proba / proba.sum(axis=1, keepdims=True)  # exact in float64 after float32

    def predict_log_proba(self, X: np.ndarray) -> np.ndarray:
        """Logarithm of `predict_proba`."""
        return np.log(self.predict_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row of X."""
        proba = self.predict_proba(X)  # checks that the classifier is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    # --------------------------------------------------------------------------- tags
    def _checkpoint_n_classes(self) -> int | None:
        """The checkpoint card's n_classes, or None when it cannot be read (yet)."""
        try:
            _, card_path, _ = resolve_checkpoint(self.checkpoint)
            config = json.loads(card_path.read_text())["model_config"]
        except (ValueError, OSError, KeyError, TypeError):
            return None
        return int(config.get("n_classes", 0))

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = self._checkpoint_n_classes() != 2
        return tags


def _as_table(X: object) -> object:
    """Nested lists as an object array, so a row of numbers and strings keeps its numbers."""
    return np.asarray(X, dtype=object) if isinstance(X, list | tuple) else X
