"""What every scikit-learn estimator serving a PFN checkpoint shares: load, map, encode, decode.

`CheckpointEstimator` loads (and on refits reuses) the checkpoint in the requested dtype,
checks the feature count against the card's data mapping, preprocesses the table
(`pfnkit.estimators.tables`), fits the ensemble's views of it, which map features into
the prior's domain (`pfnkit.estimators.ensemble`), warns when the context outgrows the
trained size, and turns allocation failures into a `MemoryError` that names the knob to
turn. `PFNRegressor` and `PFNClassifier` add only what their targets need: how members
are formed and how their predictions are averaged.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Distribution

from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.estimators.ensemble import (
    AUTO_PREPROCESSING,
    PAD_RESCALES,
    FeatureViews,
    draw_feature_orders,
    pad_features,
    resolve_preprocessing,
    view_layout,
)
from pfnkit.estimators.tables import TablePreprocessor
from pfnkit.models.pfn import ContextCache

__all__ = ["DTYPES", "CheckpointEstimator", "DataMapping", "as_table", "pad_features"]

_T = TypeVar("_T")
# queries reach the network in blocks of this many rows (see CheckpointEstimator._decode);
# a multiple of the row tiles of the CPU matrix kernels (MKL: 8 or 16)
QUERY_BLOCK = 32
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MAPPINGS = ("identity", "standardize")
_FEATURE_MODES = ("exact", "pad")
_MIN_SCALE = 1e-12
# how allocators word a failed allocation: CPU ("can't allocate memory"), CUDA/MPS ("out of memory")
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        marker in str(error).lower() for marker in _OOM_MARKERS
    )


@contextlib.contextmanager
def _explain_out_of_memory(what: str, advice: str) -> Iterator[None]:
    """Re-raise an allocation failure inside the block as a `MemoryError` that says what to do."""
    try:
        yield
    except (RuntimeError, MemoryError) as error:
        if not _is_out_of_memory(error):
            raise
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MemoryError(f"{what} ran out of memory ({first_line}); {advice}") from error


def _is_positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_mapping_spec(spec: dict[str, str], keys: tuple[str, ...]) -> None:
    for key in keys:
        if spec.get(key, "identity") not in _MAPPINGS:
            raise ValueError(f"card data_mapping[{key!r}]={spec[key]!r}; known: {_MAPPINGS}")


@dataclass(frozen=True)
class DataMapping:
    """Affine map from the user's units into the checkpoint's prior domain.

    ``x_model = (x - x_loc) / x_scale`` per feature and ``y_model = (y - y_loc) / y_scale``;
    predictions map back with ``y = y_loc + y_scale * y_model``, whose Jacobian
    ``1 / y_scale`` enters every density through `BarDistribution.affine`.
    """

    x_loc: np.ndarray
    x_scale: np.ndarray
    y_loc: float
    y_scale: float

    @classmethod
    def from_context(cls, X: np.ndarray, y: np.ndarray, spec: dict[str, str]) -> DataMapping:
        """Build the map the checkpoint card declares (`spec["x"]`, `spec["y"]`)."""
        _check_mapping_spec(spec, ("x", "y"))
        features = cls.for_features(X, spec)
        if spec.get("y", "identity") == "standardize":
            y_sorted = np.sort(y)  # the row order does not change the sums
            y_loc = float(y_sorted.mean())
            y_scale = float(y_sorted.std())
            y_scale = y_scale if y_scale > _MIN_SCALE * (1 + abs(y_loc)) else 1.0
        else:
            y_loc, y_scale = 0.0, 1.0
        return cls(x_loc=features.x_loc, x_scale=features.x_scale, y_loc=y_loc, y_scale=y_scale)

    @classmethod
    def for_features(cls, X: np.ndarray, spec: dict[str, str]) -> DataMapping:
        """The card's feature map (`spec["x"]`) with the identity on targets (class labels).

        Statistics skip NaN (missing values) and are taken over sorted columns, so they
        do not depend on the order of the rows.
        """
        _check_mapping_spec(spec, ("x",))
        d = X.shape[1]
        if spec.get("x", "identity") == "standardize":
            sorted_X = np.sort(X, axis=0)
            x_loc = np.nanmean(sorted_X, axis=0)
            x_scale = np.nanstd(sorted_X, axis=0)
            x_scale = np.where(x_scale > _MIN_SCALE * (1 + np.abs(x_loc)), x_scale, 1.0)
        else:
            x_loc, x_scale = np.zeros(d), np.ones(d)
        return cls(x_loc=x_loc, x_scale=x_scale, y_loc=0.0, y_scale=1.0)

    def map_x(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_loc) / self.x_scale

    def map_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_loc) / self.y_scale


class CheckpointEstimator(BaseEstimator):
    """Base of the estimators that serve a PFN checkpoint (not an estimator on its own).

    Subclasses take `checkpoint`, `device`, `dtype`, `query_chunk_size`, `n_estimators`,
    `preprocessing`, `categorical_features`, `random_state` and `softmax_temperature` in
    `__init__`; call `_check_n_estimators`, `_load_checkpoint`, `_fit_table`,
    `_check_feature_count`, `_warn_if_context_exceeds_training`, `_fit_views` and
    `_encode_context` in `fit`; and `_decode` to predict. `_member_views` (which view
    each encoded context reads) is their hook into both.

    Attributes:
        checkpoint_: the loaded `Checkpoint` (model and card).
        preprocessor_: the fitted `TablePreprocessor`.
        views_: the fitted `FeatureViews`.
        cache_: per-layer context keys and values, one context per member.
    """

    _head: str  # "regression" or "classification": the model head the subclass serves
    checkpoint: str
    device: str
    dtype: str
    query_chunk_size: int
    n_estimators: int
    preprocessing: str | tuple[str, ...]
    categorical_features: object
    random_state: object
    softmax_temperature: float
    checkpoint_: Checkpoint
    preprocessor_: TablePreprocessor
    views_: FeatureViews
    cache_: ContextCache

    def _load_checkpoint(self) -> None:
        """Load the checkpoint in `dtype` on `device`; refits reuse the verified model."""
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        source = (str(self.checkpoint), str(self.device))
        if getattr(self, "_loaded_from", None) != source:
            loaded = load_checkpoint(self.checkpoint, device=self.device)
            self._check_head(loaded)
            self.checkpoint_ = loaded
            self._loaded_from = source
        self.checkpoint_.model.to(DTYPES[self.dtype])

    def _check_head(self, loaded: Checkpoint) -> None:
        n_classes = getattr(loaded.model.config, "n_classes", None)
        head = None if n_classes is None else "classification" if n_classes else "regression"
        if head != self._head:
            other = {"classification": "PFNClassifier", "regression": "PFNRegressor"}.get(head)
            hint = f"; use {other}" if other else ""
            raise ValueError(
                f"checkpoint {loaded.name!r} holds a {loaded.card['model_kind']!r} model with "
                f"a {head or 'non-PFN'} head, but {type(self).__name__} needs a PFN with a "
                f"{self._head} head{hint}"
            )
        if getattr(loaded.model.config, "y_context_floor", 0) > 0:
            raise ValueError(
                f"checkpoint {loaded.name!r} standardizes its targets per context "
                "(y_context_floor > 0); the estimators map data by the card's data_mapping "
                "and read bars on the y scale, so they need a PFN with y_context_floor = 0"
            )

    def _check_feature_count(self, X: np.ndarray, *, allow_more: bool = False) -> None:
        """Refuse a feature count the card's mapping cannot take.

        `allow_more`: more features than the model reads are fine (the caller feeds it
        subsets of exactly num_features of them).
        """
        d_model = self.checkpoint_.model.config.num_features
        mode = self.checkpoint_.data_mapping.get("features", "exact")
        if mode not in _FEATURE_MODES:
            raise ValueError(f"card data_mapping['features']={mode!r}; known: {_FEATURE_MODES}")
        rescale = self.checkpoint_.data_mapping.get("pad_rescale", "none")
        if rescale not in PAD_RESCALES:
            raise ValueError(f"card data_mapping['pad_rescale']={rescale!r}; known: {PAD_RESCALES}")
        d = X.shape[1]
        too_many = d > d_model and not allow_more
        if too_many or (mode == "exact" and d < d_model):
            supported = f"at most {d_model}" if mode == "pad" else f"exactly {d_model}"
            raise ValueError(
                f"X has {d} features but checkpoint {self.checkpoint_.name!r} was trained for "
                f"{supported}"
            )

    def _warn_if_context_exceeds_training(self, n_ctx: int) -> None:
        """Warn (at the caller of `fit`) when the context outgrows the trained size."""
        n_max = self.checkpoint_.trained_n_ctx_max
        if n_ctx > n_max:
            warnings.warn(
                f"context has {n_ctx} points but checkpoint {self.checkpoint_.name!r} was "
                f"trained on at most {n_max}; the model extrapolates in context size, so "
                "check its calibration on held-out data",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------ tables and ensembles
    def _check_n_estimators(self) -> None:
        if not _is_positive_int(self.n_estimators):
            raise ValueError(f"n_estimators must be a positive int, got {self.n_estimators!r}")
        self._temperature()

    _AUTO_TEMPERATURE = 1.0  # "auto" on a checkpoint that standardizes features (measured)

    def _temperature(self) -> float:
        """`softmax_temperature` checked and resolved: a positive finite number.

        "auto" is the subclass's measured `_AUTO_TEMPERATURE` on a checkpoint that
        standardizes its features (one meant for real tables), and 1.0 on one whose prior
        has fixed units (where the untempered model is the Bayes posterior predictive).
        """
        t = self.softmax_temperature
        if isinstance(t, str) and t == "auto":
            if not hasattr(self, "checkpoint_"):
                return 1.0  # checked again at predict time, with the card
            standardize = self.checkpoint_.data_mapping.get("x", "identity") == "standardize"
            return self._AUTO_TEMPERATURE if standardize else 1.0
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t < np.inf:
            raise ValueError(f"softmax_temperature must be 'auto' or a positive number, got {t!r}")
        return float(t)

    _DROP_CONSTANT_COLUMNS = False  # on a card that standardizes and pads (see `_fit_table`)
    _AUTO_PREPROCESSING = AUTO_PREPROCESSING  # preprocessing="auto" on a standardizing card

    def _fit_table(self, X: np.ndarray) -> np.ndarray:
        """Fit `preprocessor_` on the validated table X; return its float64 features.

        Columns constant over the context are dropped when the subclass says so and the
        card standardizes features and pads missing ones (the model takes fewer).
        """
        spec = self.checkpoint_.data_mapping
        pads = spec.get("x") == "standardize" and spec.get("features") == "pad"
        self.preprocessor_ = TablePreprocessor(
            categorical_features=self.categorical_features,
            column_names=getattr(self, "feature_names_in_", None),
            drop_constant=self._DROP_CONSTANT_COLUMNS and pads,
        ).fit(X)
        return self.preprocessor_.transform(X)

    def _fit_views(self, x: np.ndarray, n_views: int, rng: np.random.RandomState) -> None:
        """Draw the column orders, pick the transforms and fit `views_` on the context x.

        Warns (at the caller of `fit`) when x is wider than the model reads.
        """
        spec = self.checkpoint_.data_mapping
        width = self.checkpoint_.model.config.num_features
        methods = resolve_preprocessing(
            self.preprocessing, spec.get("x", "identity"), self._AUTO_PREPROCESSING
        )
        orders = draw_feature_orders(x.shape[1], width, n_views, rng)
        layout = view_layout(len(orders), len(methods), n_views)
        if x.shape[1] > width:
            warnings.warn(
                f"X has {x.shape[1]} features but checkpoint {self.checkpoint_.name!r} reads "
                f"at most {width}; each of the {len(layout)} ensemble views sees a random "
                f"subset of {width} of them (every feature is in at least one). Raise "
                "n_estimators for more subsets, or select features first",
                UserWarning,
                stacklevel=3,
            )
        categorical = self.preprocessor_.categorical_[self.preprocessor_.kept_]
        self.views_ = FeatureViews(
            orders=orders,
            methods=methods,
            layout=layout,
            categorical=categorical,
            standardize=spec.get("x", "identity") == "standardize",
            width=width,
            pad_rescale=spec.get("pad_rescale", "none"),
        ).fit(x)

    def _member_views(self) -> np.ndarray:
        """(E,) the view each ensemble member (encoded context) reads: one member per view."""
        return np.arange(len(self.views_.layout))

    def _model_inputs(self, X: np.ndarray, n_contexts: int) -> torch.Tensor:
        """(n_contexts, m, num_features) model inputs for the rows of X, one per member."""
        members = self._member_views()
        if len(members) != n_contexts:
            raise RuntimeError(f"{n_contexts} contexts for {len(members)} ensemble members")
        x_EMD = self.views_.transform(X)[members]
        return torch.as_tensor(x_EMD, dtype=DTYPES[self.dtype], device=self.device)

    def _validate_queries(self, X: np.ndarray) -> np.ndarray:
        """Query rows checked against what `fit` saw, as the preprocessor's float64 features."""
        X = validate_data(self, as_table(X), reset=False, dtype=None, ensure_all_finite=False)
        return self.preprocessor_.transform(X)

    def _encode_context(
        self, X: np.ndarray, y_BN: torch.Tensor, *, extra_advice: str = ""
    ) -> ContextCache:
        """Encode the rows of X with each row of targets `y_BN` (B contexts of n points).

        Runs without gradients; an allocation failure says what to do.
        """
        advice = (
            "fit's memory grows linearly in the context size, so pass fewer context points "
            f"(a random subset){self._float32_advice()}{extra_advice} or a device with more "
            "memory"
        )
        what = f"encoding a context of {X.shape[0]} points on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            x_BND = self._model_inputs(X, y_BN.shape[0])
            return self.checkpoint_.model.encode_context(x_BND, y_BN)

    def _float32_advice(self) -> str:
        """The dtype knob of an out-of-memory message, for a float64 estimator."""
        return ", use dtype='float32' (half the memory of float64)" * (self.dtype == "float64")

    def _decode(
        self,
        X: np.ndarray,
        summary: Callable[[Distribution], _T],
        *,
        n_contexts: int = 1,
        validate_args: bool | None = None,
    ) -> _T:
        """`summary` of the model's predictive at X against each of `n_contexts` cached contexts.

        The distribution handed to `summary` has batch shape (n_contexts, m); with
        `validate_args=False` its logits are unchecked, and `summary` checks what it
        derives from them. X is validated first; an allocation failure says what to do.

        The network sees the queries in blocks of `QUERY_BLOCK` rows (the rows padded with
        zeros, chunks rounded up to whole blocks). A float32 matrix product on the CPU gives
        a row other bits in a batch of another size (MKL: rows beyond the last full tile of
        8 or 16 take another kernel), but, as measured, the same bits in any batch of whole
        blocks; so a prediction does not depend on how the rows are split into calls
        (tests/estimators/test_precision.py bounds what is left at float32 resolution).
        """
        check_is_fitted(self, "cache_")
        X = self._validate_queries(X)
        chunk = self.query_chunk_size
        advice = (
            f"pass a smaller query_chunk_size (now {chunk}; e.g. "
            f"{type(self).__name__}(query_chunk_size={max(1, chunk // 4)}))"
            f"{self._float32_advice()}, or predict fewer rows per call"
        )
        what = f"predicting {X.shape[0]} queries on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            x_BMD = self._model_inputs(X, n_contexts)
            m = x_BMD.shape[1]
            x_BMD = F.pad(x_BMD, (0, 0, 0, -m % QUERY_BLOCK))
            model = self.checkpoint_.model
            blocks = -(-chunk // QUERY_BLOCK) * QUERY_BLOCK
            logits_BMK = model.predict_from_cache(
                self.cache_, x_BMD, chunk_size=blocks, validate_args=False
            ).logits
            return summary(
                model.output_distribution(logits_BMK[:, :m], validate_args=validate_args)
            )

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values: imputed, with indicators
        tags.input_tags.string = True  # categorical columns (ordinal codes)
        return tags


def as_table(X: object) -> object:
    """Nested lists as an object array, so a row of numbers and strings keeps its numbers."""
    return np.asarray(X, dtype=object) if isinstance(X, list | tuple) else X
