"""scikit-learn classifier serving a classification PFN checkpoint, as an ensemble on real tables.

A PFN sees class labels as the integers 0..C-1 and features in a column order and in
one coordinate system, and a trained network is only approximately invariant to any of
them. `PFNClassifier` therefore encodes the context once per ensemble member, a (view,
relabelling of the classes) pair, where a view is a column order and a numeric
transform of the table (`pfnkit.estimators.ensemble`), and pools the members' predicted
probabilities (`pfnkit.estimators.calibration`), with a softmax temperature fitted by
cross-validation on the context. With every view paired with all C! relabellings the
prediction does not depend on how the classes are named or ordered. Before that,
`pfnkit.estimators.tables.TablePreprocessor` turns the table into numbers (ordinal codes
for categorical columns, NaN for missing values, which the views impute) and drops the
columns that are constant over the context. A table wider than the checkpoint is read
through random subsets of its columns, one per view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import ClassifierMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from pfnkit.checkpoint import resolve_checkpoint
from pfnkit.estimators._base import (
    DTYPES,
    CheckpointEstimator,
    _explain_out_of_memory,
    _is_positive_int,
    as_table,
)
from pfnkit.estimators.calibration import (
    CV_FOLDS,
    POOLINGS,
    context_folds,
    fit_temperature,
    pool_members,
)
from pfnkit.estimators.ensemble import AUTO_CLASSIFIER_PREPROCESSING, distinct_permutations

__all__ = ["PFNClassifier"]

_MAX_ALL_PERMUTATIONS = math.factorial(6)  # "all" refuses more context encodings than this


class PFNClassifier(ClassifierMixin, CheckpointEstimator):
    """Bayesian classification in one forward pass with a pretrained classification PFN.

    `fit` validates the table, preprocesses it (`pfnkit.estimators.tables`), fits the
    views (column orders and numeric transforms, then the checkpoint card's feature map
    and imputation: `pfnkit.estimators.ensemble`), encodes the labels as 0..C-1 in the
    order of `classes_` and encodes the context once per ensemble member;
    `predict_proba` reuses the cached keys and values, runs query points in chunks,
    pools the members' class probabilities (`pooling`) and applies the temperature
    `temperature_`.

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
      value in the context is dropped with a `UserWarning`; inf in X is a `ValueError`;
    * a column with one value in every context row, on a checkpoint that standardizes
      and pads its features: dropped (it carries no information), whatever it holds at
      predict time.

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
        preprocessing: the numeric transforms the views cycle through: "auto" ("power",
            "quantile", "none" on a checkpoint that standardizes its features, as "robust"
            is undone by the standardization; "none" on one with fixed feature units),
            one of `PREPROCESSINGS`, or a sequence of them.
        categorical_features: "auto" (columns that hold strings), column indices or a
            boolean mask. Categorical columns get ordinal codes of their sorted context
            categories; a category unseen in fit gets the code -1.
        random_state: seed (or `numpy.random.RandomState`) of the random relabellings and
            column orders; the same seed gives the same predictions.
        softmax_temperature: the pooled log-probabilities are divided by it before the
            final normalization, p ∝ pooled^(1/T); below 1 sharpens. "auto", on a
            checkpoint that standardizes its features (one meant for real tables): fitted
            in `fit` by 5-fold cross-validation on the context, the MAP estimate under
            log T ~ N(0, 0.5²) (`pfnkit.estimators.calibration`; five passes over parts
            of the context: on 300 rows, measured, 3.3 times the context encoding, or as
            long as predicting 1000 rows); on one whose prior has fixed feature units: 1.0.
        pooling: how the members' probabilities are combined: "log" (the default: the
            mean of their log-probabilities, renormalized, a logarithmic opinion pool)
            or "linear" (the mean of the probabilities).

    Attributes:
        classes_: the sorted class labels seen in `fit`.
        temperature_: the softmax temperature in use (fitted, or as given).
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
    _DROP_CONSTANT_COLUMNS = True
    _AUTO_PREPROCESSING = AUTO_CLASSIFIER_PREPROCESSING

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
        pooling: str = "log",
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
        self.pooling = pooling

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNClassifier:
        """Validate and preprocess (X, y), fit the views, encode labels and context."""
        self._check_n_estimators()
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
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
        self.temperature_ = self._fit_temperature(x, labels_EN, y_index)
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

    def _pool(self, logits_EMK: torch.Tensor) -> np.ndarray:
        """(M, C) float64 pooled log-probabilities of the classes in use, in class order."""
        perms_EC = torch.as_tensor(self.permutations_[self.members_[:, 1]], device=self.device)
        index_EMC = perms_EC[:, None, :].expand(-1, logits_EMK.shape[1], -1)
        log_p_EMC = torch.log_softmax(logits_EMK.gather(-1, index_EMC).double(), dim=-1)
        return pool_members(log_p_EMC.cpu().numpy(), self.pooling)

    def _fit_temperature(
        self, x: np.ndarray, labels_EN: torch.Tensor, y_index: np.ndarray
    ) -> float:
        """`softmax_temperature` resolved; "auto" on a card that standardizes features is
        fitted to the context's cross-validated predictions (`calibration`)."""
        temperature = self._temperature()
        standardize = self.checkpoint_.data_mapping.get("x", "identity") == "standardize"
        if not (isinstance(self.softmax_temperature, str) and standardize):
            return temperature
        what = f"cross-validating the temperature on {x.shape[0]} points on {self.device!r}"
        advice = "pass softmax_temperature=1.0 (or another number) to skip it"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            log_p_NC, y_N = self._cross_validated_log_proba(x, labels_EN, y_index)
        return fit_temperature(log_p_NC, y_N)

    def _cross_validated_log_proba(
        self, x: np.ndarray, labels_EN: torch.Tensor, y_index: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, C) pooled log-probabilities of context rows and (N,) their classes.

        Each row is predicted by the ensemble (its members' views and relabellings) from
        the other folds of a stratified K-fold split (`calibration.context_folds`); a row
        whose class is missing from the other folds is left out. The members' column
        transforms were fitted on the whole context, held-out rows included, so the held-out
        likelihood is slightly optimistic (refitting them per fold would cost K fits).
        """
        order, folds = context_folds(x, y_index, min(CV_FOLDS, len(y_index)))
        rows = torch.as_tensor(order, device=self.device)
        x_END, labels_EN = self._model_inputs(x, len(self.members_))[:, rows], labels_EN[:, rows]
        y_index = y_index[order]
        pooled, targets = [np.zeros((0, len(self.classes_)))], [np.zeros(0, dtype=np.int64)]
        for k in np.unique(folds):
            train = folds != k
            held = ~train & np.isin(y_index, y_index[train])
            if held.any():
                fit_rows = torch.as_tensor(np.flatnonzero(train), device=self.device)
                held_rows = torch.as_tensor(np.flatnonzero(held), device=self.device)
                dist = self.checkpoint_.model(
                    x_END[:, fit_rows], labels_EN[:, fit_rows], x_END[:, held_rows]
                )
                pooled.append(self._pool(dist.logits))
                targets.append(y_index[held])
        return np.concatenate(pooled), np.concatenate(targets)

    # --------------------------------------------------------------------- prediction
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive class probabilities, shape (m, len(classes_))."""
        check_is_fitted(self, "cache_")
        pooled = self._decode(X, lambda d: self._pool(d.logits), n_contexts=len(self.members_))
        return softmax(pooled / self.temperature_, axis=1)

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
