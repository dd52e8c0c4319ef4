"""scikit-learn estimators serving a pretrained PFN checkpoint: fit encodes, predict decodes."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted, validate_data

from pfnkit.checkpoint import load_checkpoint
from pfnkit.distributions import BarDistribution
from pfnkit.models.pfn import ContextCache

__all__ = ["DataMapping", "PFNRegressor"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAPPINGS = ("identity", "standardize")
_FEATURE_MODES = ("exact", "pad")
_MIN_SCALE = 1e-12
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
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
        for key in ("x", "y"):
            if spec.get(key, "identity") not in _MAPPINGS:
                raise ValueError(f"card data_mapping[{key!r}]={spec[key]!r}; known: {_MAPPINGS}")
        d = X.shape[1]
        if spec.get("x", "identity") == "standardize":
            x_loc = X.mean(axis=0)
            x_scale = X.std(axis=0)
            x_scale = np.where(x_scale > _MIN_SCALE * (1 + np.abs(x_loc)), x_scale, 1.0)
        else:
            x_loc, x_scale = np.zeros(d), np.ones(d)
        if spec.get("y", "identity") == "standardize":
            y_loc = float(y.mean())
            y_scale = float(y.std())
            y_scale = y_scale if y_scale > _MIN_SCALE * (1 + abs(y_loc)) else 1.0
        else:
            y_loc, y_scale = 0.0, 1.0
        return cls(x_loc=x_loc, x_scale=x_scale, y_loc=y_loc, y_scale=y_scale)

    def map_x(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_loc) / self.x_scale

    def map_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_loc) / self.y_scale


class PFNRegressor(RegressorMixin, BaseEstimator):
    """Bayesian regression in one forward pass with a pretrained PFN.

    `fit` validates the data, maps it into the checkpoint's prior domain (as its card
    declares) and encodes the context once; every prediction reuses the cached keys and
    values and runs query points in chunks.

    Args:
        checkpoint: short name (e.g. "gp-rbf") or path to a checkpoint file.
        device: torch device for the model.
        dtype: "float64" (default: NumPy's precision, so predictions do not depend on how
            the query rows are batched) or "float32" (about twice as fast on a CPU).
        query_chunk_size: query points per forward pass in `predict*`. A chunk's
            activations grow linearly in it; lower it if `predict` runs out of memory.

    Memory grows linearly in the context size and the number of queries: attention runs
    through SDPA's fused kernels, which never form an (N + M)² score matrix. An allocation
    failure raises a `MemoryError` that names the knob to turn.

    Attributes:
        checkpoint_: the loaded `Checkpoint` (model and card).
        mapping_: the fitted `DataMapping`.
        cache_: per-layer context keys and values.
    """

    def __init__(
        self,
        checkpoint: str = "gp-rbf",
        device: str = "cpu",
        dtype: str = "float64",
        query_chunk_size: int = 4096,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.query_chunk_size = query_chunk_size

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: np.ndarray, y: np.ndarray) -> PFNRegressor:
        """Validate (X, y), map it into the prior's domain and encode it as the context."""
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        source = (str(self.checkpoint), str(self.device))
        if getattr(self, "_loaded_from", None) != source:  # refits reuse the verified model
            self.checkpoint_ = load_checkpoint(self.checkpoint, device=self.device)
            self._loaded_from = source
        self.checkpoint_.model.to(_DTYPES[self.dtype])
        self._check_feature_count(X)
        mapping_spec = self.checkpoint_.data_mapping
        self.mapping_ = DataMapping.from_context(X, y, mapping_spec)
        n_max = self.checkpoint_.trained_n_ctx_max
        if X.shape[0] > n_max:
            warnings.warn(
                f"context has {X.shape[0]} points but checkpoint {self.checkpoint_.name!r} was "
                f"trained on at most {n_max}; the model extrapolates in context size, so "
                "check its calibration on held-out data",
                UserWarning,
                stacklevel=2,
            )
        y_model = self._clip_context_targets(self.mapping_.map_y(y))
        model = self.checkpoint_.model
        advice = (
            "fit's memory grows linearly in the context size, so pass fewer context points "
            "(a random subset), use dtype='float32' (half the memory of float64) or a device "
            "with more memory"
        )
        what = f"encoding a context of {X.shape[0]} points on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            x_t = self._to_model_x(X).unsqueeze(0)
            y_t = torch.as_tensor(y_model, dtype=_DTYPES[self.dtype], device=self.device)[None]
            self.cache_: ContextCache = model.encode_context(x_t, y_t)
        return self

    def _check_feature_count(self, X: np.ndarray) -> None:
        d_model = self.checkpoint_.model.config.num_features
        mode = self.checkpoint_.data_mapping.get("features", "exact")
        if mode not in _FEATURE_MODES:
            raise ValueError(f"card data_mapping['features']={mode!r}; known: {_FEATURE_MODES}")
        d = X.shape[1]
        if d > d_model or (mode == "exact" and d != d_model):
            supported = f"at most {d_model}" if mode == "pad" else f"exactly {d_model}"
            raise ValueError(
                f"X has {d} features but checkpoint {self.checkpoint_.name!r} was trained for "
                f"{supported}"
            )

    def _clip_context_targets(self, y_model: np.ndarray) -> np.ndarray:
        borders = self.checkpoint_.model.borders.cpu().numpy()
        lo, hi = float(borders[0]), float(borders[-1])
        outside = (y_model < lo) | (y_model > hi)
        if outside.any():
            warnings.warn(
                f"{int(outside.sum())} context target(s) lie outside [{lo:.3g}, {hi:.3g}], the "
                f"range of targets the prior of checkpoint {self.checkpoint_.name!r} produced (in "
                "its units, after the card's data mapping); they are clipped to that range for "
                "encoding and predictions near them are unreliable",
                UserWarning,
                stacklevel=3,
            )
        return np.clip(y_model, lo, hi)

    def _to_model_x(self, X: np.ndarray) -> torch.Tensor:
        x = self.mapping_.map_x(X)
        d_model = self.checkpoint_.model.config.num_features
        if x.shape[1] < d_model:
            x = np.concatenate([x, np.zeros((x.shape[0], d_model - x.shape[1]))], axis=1)
        return torch.as_tensor(x, dtype=_DTYPES[self.dtype], device=self.device)

    # --------------------------------------------------------------------- prediction
    def _decode(self, X: np.ndarray, summary: Callable[[BarDistribution], _T]) -> _T:
        """`summary` of the predictive distribution at X; an allocation failure says what to do."""
        check_is_fitted(self, "cache_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        model = self.checkpoint_.model
        chunk = self.query_chunk_size
        advice = (
            f"pass a smaller query_chunk_size (now {chunk}; e.g. "
            f"PFNRegressor(query_chunk_size={max(1, chunk // 4)})), use dtype='float32' (half "
            "the memory of float64), or predict fewer rows per call"
        )
        what = f"predicting {X.shape[0]} queries on device {self.device!r}"
        with torch.no_grad(), _explain_out_of_memory(what, advice):
            dist = model.predict_from_cache(
                self.cache_, self._to_model_x(X).unsqueeze(0), chunk_size=chunk
            )
            mapping = self.mapping_
            return summary(dist[0].affine(mapping.y_loc, mapping.y_scale))

    def predict_distribution(self, X: np.ndarray) -> BarDistribution:
        """Posterior predictive of y at each row of X, batch shape (m,), in the user's units."""
        return self._decode(X, lambda dist: dist)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Posterior predictive mean."""
        return self._decode(X, lambda dist: dist.mean.double().cpu().numpy())

    def predict_quantiles(self, X: np.ndarray, quantiles: list[float] | np.ndarray) -> np.ndarray:
        """Predictive quantiles, shape (m, len(quantiles))."""
        levels = torch.as_tensor(np.asarray(quantiles, dtype=np.float64))

        def summary(dist: BarDistribution) -> np.ndarray:
            return dist.quantiles(levels.to(dist.logits.dtype)).double().cpu().numpy()

        return self._decode(X, summary)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
