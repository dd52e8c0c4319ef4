"""What every scikit-learn estimator serving a PFN checkpoint shares: load, map, encode, decode.

`CheckpointEstimator` loads (and on refits reuses) the checkpoint in the requested dtype,
checks the feature count against the card's data mapping, maps features into the prior's
domain, warns when the context outgrows the trained size, and turns allocation failures
into a `MemoryError` that names the knob to turn. `PFNRegressor` and `PFNClassifier`
add only what their targets need.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted, validate_data
from torch.distributions import Distribution

from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.models.pfn import ContextCache

__all__ = ["DTYPES", "CheckpointEstimator", "DataMapping", "pad_features"]

_T = TypeVar("_T")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MAPPINGS = ("identity", "standardize")
_FEATURE_MODES = ("exact", "pad")
_PAD_RESCALES = ("none", "sqrt")  # card data_mapping["pad_rescale"]
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


def _check_mapping_spec(spec: dict[str, str], keys: tuple[str, ...]) -> None:
    for key in keys:
        if spec.get(key, "identity") not in _MAPPINGS:
            raise ValueError(f"card data_mapping[{key!r}]={spec[key]!r}; known: {_MAPPINGS}")


def pad_features(x: np.ndarray, num_features: int, rescale: str = "none") -> np.ndarray:
    """Zero-pad (n, d) model-unit features to (n, num_features), as the prior does.

    Args:
        x: mapped features, shape (n, d) with d <= num_features.
        num_features: the model's input width D.
        rescale: the card's ``data_mapping["pad_rescale"]``: "none", or "sqrt" to multiply
            the d used features by √(D / d) first (GP prior ``feature_rescale = "sqrt"``).
    """
    if rescale not in _PAD_RESCALES:
        raise ValueError(f"card data_mapping['pad_rescale']={rescale!r}; known: {_PAD_RESCALES}")
    n, d = x.shape
    if d > num_features:
        raise ValueError(f"got {d} features, more than the model's {num_features}")
    if rescale == "sqrt":
        x = x * np.sqrt(num_features / d)
    if d < num_features:
        x = np.concatenate([x, np.zeros((n, num_features - d))], axis=1)
    return x


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
            y_loc = float(y.mean())
            y_scale = float(y.std())
            y_scale = y_scale if y_scale > _MIN_SCALE * (1 + abs(y_loc)) else 1.0
        else:
            y_loc, y_scale = 0.0, 1.0
        return cls(x_loc=features.x_loc, x_scale=features.x_scale, y_loc=y_loc, y_scale=y_scale)

    @classmethod
    def for_features(cls, X: np.ndarray, spec: dict[str, str]) -> DataMapping:
        """The card's feature map (`spec["x"]`) with the identity on targets (class labels)."""
        _check_mapping_spec(spec, ("x",))
        d = X.shape[1]
        if spec.get("x", "identity") == "standardize":
            x_loc = X.mean(axis=0)
            x_scale = X.std(axis=0)
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

    Subclasses take `checkpoint`, `device`, `dtype` and `query_chunk_size` in `__init__`,
    call `_load_checkpoint`, `_check_feature_count`, `_warn_if_context_exceeds_training`
    and `_encode_context` in `fit`, and `_decode` to predict. `_validate_queries` (how
    query rows are checked and converted) and `_model_inputs` (what each context's model
    reads) are their hooks into both.

    Attributes:
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping`.
        cache_: per-layer context keys and values.
    """

    _head: str  # "regression" or "classification": the model head the subclass serves
    checkpoint: str
    device: str
    dtype: str
    query_chunk_size: int
    checkpoint_: Checkpoint
    mapping_: DataMapping
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
        if rescale not in _PAD_RESCALES:
            raise ValueError(
                f"card data_mapping['pad_rescale']={rescale!r}; known: {_PAD_RESCALES}"
            )
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

    def _to_model_x(self, X: np.ndarray) -> torch.Tensor:
        """(m, num_features) model inputs: the fitted feature map, then the card's padding."""
        rescale = self.checkpoint_.data_mapping.get("pad_rescale", "none")
        d_model = self.checkpoint_.model.config.num_features
        x = pad_features(self.mapping_.map_x(X), d_model, rescale)
        return torch.as_tensor(x, dtype=DTYPES[self.dtype], device=self.device)

    def _model_inputs(self, X: np.ndarray, n_contexts: int) -> torch.Tensor:
        """(n_contexts, m, num_features) model inputs for the rows of X, one per context.

        The same inputs for every context here; `PFNClassifier` feeds each ensemble member
        its own column order.
        """
        return self._to_model_x(X).unsqueeze(0).expand(n_contexts, -1, -1)

    def _validate_queries(self, X: np.ndarray) -> np.ndarray:
        """Query rows checked against what `fit` saw, as float64 features."""
        return validate_data(self, X, reset=False, dtype=np.float64)

    def _encode_context(
        self, X: np.ndarray, y_BN: torch.Tensor, *, extra_advice: str = ""
    ) -> ContextCache:
        """Encode the rows of X with each row of targets `y_BN` (B contexts of n points).

        Runs without gradients; an allocation failure says what to do.
        """
        advice = (
            "fit's memory grows linearly in the context size, so pass fewer context points "
            f"(a random subset), use dtype='float32' (half the memory of float64){extra_advice} "
            "or a device with more memory"
        )
        what = f"encoding a context of {X.shape[0]} points on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            x_BND = self._model_inputs(X, y_BN.shape[0])
            return self.checkpoint_.model.encode_context(x_BND, y_BN)

    def _decode(
        self, X: np.ndarray, summary: Callable[[Distribution], _T], *, n_contexts: int = 1
    ) -> _T:
        """`summary` of the model's predictive at X against each of `n_contexts` cached contexts.

        The distribution handed to `summary` has batch shape (n_contexts, m). X is
        validated first; an allocation failure says what to do.
        """
        check_is_fitted(self, "cache_")
        X = self._validate_queries(X)
        chunk = self.query_chunk_size
        advice = (
            f"pass a smaller query_chunk_size (now {chunk}; e.g. "
            f"{type(self).__name__}(query_chunk_size={max(1, chunk // 4)})), use "
            "dtype='float32' (half the memory of float64), or predict fewer rows per call"
        )
        what = f"predicting {X.shape[0]} queries on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            x_BMD = self._model_inputs(X, n_contexts)
            model = self.checkpoint_.model
            return summary(model.predict_from_cache(self.cache_, x_BMD, chunk_size=chunk))

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
