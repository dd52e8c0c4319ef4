"""scikit-learn classifier serving a classification PFN checkpoint, averaged over relabellings.

A PFN sees class labels as the integers 0..C-1, and a trained network is only
approximately invariant to which class gets which integer. `PFNClassifier` therefore
encodes the context once per relabelling of the classes (all C! of them for C <= 3 by
default) and averages the predicted probabilities over them, so that with all
relabellings the prediction does not depend on how the classes are named or ordered.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Categorical

from pfnkit.checkpoint import resolve_checkpoint
from pfnkit.serving import DTYPES, CheckpointEstimator, DataMapping

__all__ = ["PFNClassifier"]

_AUTO_ALL_MAX_CLASSES = 3  # "auto" averages over all C! relabellings up to this many classes
_AUTO_N_PERMUTATIONS = 6  # ... and over this many (the identity + random ones) beyond it
_MAX_ALL_PERMUTATIONS = math.factorial(6)  # "all" refuses more context encodings than this


class PFNClassifier(ClassifierMixin, CheckpointEstimator):
    """Bayesian classification in one forward pass with a pretrained classification PFN.

    `fit` validates the data, maps the features into the checkpoint's prior domain (as its
    card declares), encodes the labels as 0..C-1 in the order of `classes_` and encodes
    the context once per relabelling of the classes; `predict_proba` reuses the cached
    keys and values, runs query points in chunks and averages the class probabilities
    over the relabellings.

    Args:
        checkpoint: short name (e.g. "bnn-clf") or path to a classification checkpoint.
        device: torch device for the model.
        dtype: "float64" (default: NumPy's precision, so predictions do not depend on how
            the query rows are batched) or "float32" (about twice as fast on a CPU).
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.
        class_permutations: relabellings of the classes to average over (an ensemble;
            cost and memory grow linearly in their number). "auto": all C! when there are
            at most 3 classes, else the identity and 5 random ones; "all": all C! (up to
            6 classes); an int k >= 1: the identity and k - 1 further random ones (1 turns
            the averaging off). Only all C! make predictions exactly invariant to
            renaming the classes.
        random_state: seed (or `numpy.random.RandomState`) of the random relabellings.

    Attributes:
        classes_: the sorted class labels seen in `fit`.
        n_features_in_: the number of features seen in `fit`.
        permutations_: (P, C) int array; relabelling p gives class k the model label
            `permutations_[p, k]`.
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping` (features only).
        cache_: per-layer context keys and values, one context per relabelling.
    """

    _head = "classification"

    def __init__(
        self,
        checkpoint: str = "bnn-clf",
        device: str = "cpu",
        dtype: str = "float64",
        query_chunk_size: int = 4096,
        class_permutations: int | str = "auto",
        random_state: int | np.random.RandomState | None = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.query_chunk_size = query_chunk_size
        self.class_permutations = class_permutations
        self.random_state = random_state

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNClassifier:
        """Validate (X, y), map the features, encode the labels and the context."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self._load_checkpoint()
        self.classes_, y_index = np.unique(y, return_inverse=True)
        self._check_class_count(len(self.classes_))
        self._check_feature_count(X)
        self.mapping_ = DataMapping.for_features(X, self.checkpoint_.data_mapping)
        self._warn_if_context_exceeds_training(X.shape[0])
        self.permutations_ = self._draw_permutations(len(self.classes_))
        labels_PN = torch.as_tensor(
            self.permutations_[:, y_index], dtype=DTYPES[self.dtype], device=self.device
        )
        n_perm = len(self.permutations_)
        extra = f", fewer class_permutations (now {n_perm} context encodings)"
        self.cache_ = self._encode_context(X, labels_PN, extra_advice=extra)
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

    def _draw_permutations(self, n_classes: int) -> np.ndarray:
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
        elif (
            isinstance(setting, numbers.Integral) and not isinstance(setting, bool) and setting > 0
        ):
            n_perm = int(setting)
        else:
            raise ValueError(
                f"class_permutations must be 'auto', 'all' or a positive int, got {setting!r}"
            )
        if n_perm >= n_all:
            return np.array(list(itertools.permutations(range(n_classes))), dtype=np.int64)
        rng = check_random_state(self.random_state)
        chosen = [tuple(range(n_classes))]
        while len(chosen) < n_perm:
            candidate = tuple(int(k) for k in rng.permutation(n_classes))
            if candidate not in chosen:
                chosen.append(candidate)
        return np.array(chosen, dtype=np.int64)

    # --------------------------------------------------------------------- prediction
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive class probabilities, shape (m, len(classes_))."""
        check_is_fitted(self, "cache_")
        perms_PC = torch.as_tensor(self.permutations_, device=self.device)

        def average(dist: Categorical) -> np.ndarray:
            log_p_PMK = dist.logits  # over all model labels; keep the C in use, class order
            index_PMC = perms_PC[:, None, :].expand(-1, log_p_PMK.shape[1], -1)
            proba_PMC = torch.softmax(log_p_PMK.gather(-1, index_PMC), dim=-1)
            return proba_PMC.mean(dim=0).double().cpu().numpy()

        proba = self._decode(X, average, n_contexts=len(self.permutations_))
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
