"""scikit-learn classifier serving a classification PFN checkpoint, as an ensemble on real tables.

A PFN sees class labels as the integers 0..C-1 and features in a column order and in
one coordinate system, and a trained network is only approximately invariant to any of
them. `PFNClassifier` therefore encodes the context once per ensemble member, a (view,
relabelling of the classes) pair, where a view is a column order and a numeric
transform of the table (`pfnkit.estimators.ensemble`), and averages the members'
predicted probabilities. With every view paired with all C! relabellings the prediction
does not depend on how the classes are named or ordered. Before that,
`pfnkit.estimators.tables.TablePreprocessor` turns the table into numbers (ordinal codes
for categorical columns, NaN for missing values, which the views impute). A table wider
than the checkpoint is read through random subsets of its columns, one per view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Categorical

from pfnkit.checkpoint import resolve_checkpoint
from pfnkit.estimators._base import DTYPES, CheckpointEstimator, _is_positive_int, as_table
from pfnkit.estimators.ensemble import distinct_permutations

__all__ = ["PFNClassifier"]

_MAX_ALL_PERMUTATIONS = math.factorial(6)  # "all" refuses more context encodings than this


class PFNClassifier(ClassifierMixin, CheckpointEstimator):
    """Bayesian classification in one forward pass with a pretrained classification PFN.

    `fit` validates the table, preprocesses it (`pfnkit.estimators.tables`), fits the
    views (column orders and numeric transforms, then the checkpoint card's feature map
    and imputation: `pfnkit.estimators.ensemble`), encodes the labels as 0..C-1 in the
    order of `classes_` and encodes the context once per ensemble member;
    `predict_proba` reuses the cached keys and values, runs query points in chunks and
    averages the class probabilities over the members.

    Members: about `n_estimators` of them, and fit and predict cost and memory grow
    linearly in their number. Member e reads view `members_[e, 0]` (`views_.layout`:
    a column order of `feature_orders_` and a transform) with the labels relabelled by
    `permutations_[members_[e, 1]]`. Either every view meets every relabelling (a grid
    of n_estimators // P views × P relabellings: "all", an int, or "auto" when
    2 × C! <= n_estimators), or (the rest of "auto") view k meets relabelling k mod P,
    with min(C!, n_estimators) relabellings.

    Inputs the checkpoint was not trained for:

    * more classes than its head has: `ValueError`;
    * more features than it reads: every member sees a random subset of num_features of
      them (at least ceil(d / num_features) members, so every feature is seen), with a
      `UserWarning`; fewer features are zero-padded when the card says so;
    * a context larger than trained: it is used whole, with a `UserWarning` (the model
      extrapolates in context size; subsample the rows yourself if calibration suffers);
    * missing values (NaN or None) in X: imputed with the context mean of the column,
      plus a missingness indicator where the model has spare inputs; a column with no
      value in the context is dropped with a `UserWarning`; inf in X is a `ValueError`.

    Args:
        checkpoint: short name or path of a classification checkpoint. The default,
            "scm-clf", is the general-purpose tabular classifier (up to 32 features,
            2 to 10 classes); "bnn-clf" is a fixed 2-feature binary BNN prior.
        device: torch device for the model.
        dtype: the network's precision: "float32" (default) or "float64", about twice as
            slow on a CPU (benchmarks/inference.py). Measured on a real-scale table, float32
            probabilities differ from float64 ones by under 1e-6, and by as little with how
            the queries are split into calls or chunks. Averaged in float64 either way.
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.
        class_permutations: relabellings of the classes to average over (see Members).
            "auto": all C! in a grid when 2 × C! <= n_estimators, else min(C!,
            n_estimators) of them (the identity first) one per view; "all": all C! (up to
            6 classes) in a grid; an int k >= 1: the identity and k - 1 further random
            ones in a grid (1 turns the relabelling off). Only all C! in a grid make
            predictions exactly invariant to renaming the classes.
        n_estimators: ensemble members (see Members); fewer when the table has fewer
            distinct views, more when it is wider than the model. 1 reads the table as
            given (with preprocessing="none").
        preprocessing: the numeric transforms the views cycle through: "auto" (all of
            "none", "quantile", "power", "robust" on a checkpoint that standardizes its
            features, "none" on one with fixed feature units), one of them, or a sequence.
        categorical_features: "auto" (columns that hold strings), column indices or a
            boolean mask. Categorical columns get ordinal codes of their sorted context
            categories; a category unseen in fit gets the code -1.
        random_state: seed (or `numpy.random.RandomState`) of the random relabellings and
            column orders; the same seed gives the same predictions.
        softmax_temperature: each member's logits are divided by it before its softmax;
            below 1 sharpens the probabilities. "auto" is 1.0 (on real tables no
            temperature between 0.7 and 1.25 improved the log loss by more than 0.002).

    Attributes:
        classes_: the sorted class labels seen in `fit`.
        n_features_in_: the number of features seen in `fit`.
        permutations_: (P, C) int array; relabelling p gives class k the model label
            `permutations_[p, k]`.
        members_: (E, 2) int array: the view and the relabelling of each member.
        views_: the fitted `FeatureViews`; its `orders` are column orders of the
            preprocessed table (the model reads them, then indicators, then zeros).
        preprocessor_: the fitted `TablePreprocessor`.
        checkpoint_: the loaded `Checkpoint` (model and card).
        cache_: per-layer context keys and values, one context per member.
    """

    _head = "classification"

    def __init__(
        self,
        checkpoint: str = "scm-clf",
        device: str = "cpu",
        dtype: str = "float32",
        query_chunk_size: int = 4096,
        class_permutations: int | str = "auto",
        n_estimators: int = 8,
        preprocessing: str | Sequence[str] = "auto",
        categorical_features: str | Sequence[int] | Sequence[bool] = "auto",
        random_state: int | np.random.RandomState | None = 0,
        softmax_temperature: float | str = "auto",
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
        self.softmax_temperature = softmax_temperature

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNClassifier:
        """Validate and preprocess (X, y), fit the views, encode labels and context."""
        self._check_n_estimators()
        X, y = validate_data(self, as_table(X), y, dtype=None, ensure_all_finite=False)
        check_classification_targets(y)
        self._load_checkpoint()
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._check_class_count(len(self.classes_))
        x = self._fit_table(X)
        self._check_feature_count(x, allow_more=True)
        self._warn_if_context_exceeds_training(x.shape[0])
        rng = check_random_state(self.random_state)
        n_views, grid = self._draw_permutations(len(self.classes_), rng)
        self._fit_views(x, n_views, rng)
        n_views, n_perm = len(self.views_.layout), len(self.permutations_)
        if grid:
            self.members_ = np.array([(f, p) for f in range(n_views) for p in range(n_perm)])
        else:
            n_members = max(n_views, n_perm)
            self.members_ = np.array([(k % n_views, k % n_perm) for k in range(n_members)])
        labels_EN = self.permutations_[self.members_[:, 1]][:, y_index]
        labels_EN = torch.as_tensor(labels_EN, dtype=DTYPES[self.dtype], device=self.device)
        extra = (
            f", a smaller n_estimators or fewer class_permutations (now {len(self.members_)} "
            f"context encodings: {n_views} views, {n_perm} relabellings)"
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

    def _draw_permutations(self, n_classes: int, rng: np.random.RandomState) -> tuple[int, bool]:
        """Draw `permutations_`; return the number of views to ask for and whether to grid.

        (P, C) relabellings: all C! of them, or the identity first, then random ones.
        """
        n_all = math.factorial(n_classes)
        setting, n_estimators = self.class_permutations, int(self.n_estimators)
        if setting == "auto":
            grid = 2 * n_all <= n_estimators
            n_perm = n_all if grid else min(n_all, n_estimators)
        elif setting == "all":
            if n_all > _MAX_ALL_PERMUTATIONS:
                raise ValueError(
                    f"class_permutations='all' means {n_all} context encodings for "
                    f"{n_classes} classes; pass an int (e.g. 6) instead"
                )
            grid, n_perm = True, n_all
        elif _is_positive_int(setting):
            grid, n_perm = True, min(int(setting), n_all)
        else:
            raise ValueError(
                f"class_permutations must be 'auto', 'all' or a positive int, got {setting!r}"
            )
        self.permutations_ = distinct_permutations(n_classes, n_perm, rng)
        return (max(1, n_estimators // n_perm) if grid else n_estimators), grid

    def _member_views(self) -> np.ndarray:
        return self.members_[:, 0]

    # --------------------------------------------------------------------- prediction
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive class probabilities, shape (m, len(classes_))."""
        check_is_fitted(self, "cache_")
        perms_EC = torch.as_tensor(self.permutations_[self.members_[:, 1]], device=self.device)
        temperature = self._temperature()

        def average(dist: Categorical) -> np.ndarray:
            log_p_EMK = dist.logits  # over all model labels; keep the C in use, class order
            index_EMC = perms_EC[:, None, :].expand(-1, log_p_EMK.shape[1], -1)
            proba_EMC = torch.softmax(log_p_EMK.gather(-1, index_EMC) / temperature, dim=-1)
            return proba_EMC.double().mean(dim=0).cpu().numpy()

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
