"""Per-column preprocessing of real tables for a PFN estimator, fitted on the context alone.

`TablePreprocessor` turns a table (a numeric array, an object array, or what scikit-learn
makes of a DataFrame) into float64 features, one column per input column it keeps:

* **Categorical columns** get ordinal codes 0..k-1, the sorted categories seen in `fit`
  (sklearn's `OrdinalEncoder`). A category first seen at predict time gets the code -1,
  one below the seen codes: a category of its own, as a rare category missing from the
  context would be in the SCM prior, whose codes are nominal (randomly permuted). Which
  columns are categorical: ``"auto"`` (the default) takes every column that holds a
  string (``str`` or ``bytes``), such as a DataFrame's object, string or category
  columns; a list of column indices or a boolean mask names them explicitly (numeric
  columns included).
* **Numeric columns** pass through as float64; the ensemble's views transform them
  (`pfnkit.estimators.ensemble`).
* **Missing values** (NaN or None, in any column) become NaN, which the views impute
  (with a missingness indicator where the model has room). A column with no value at
  all in the context carries no information: it is dropped, with a `UserWarning` that
  names it, and ignored at predict time too. Infinity is not a missing value: it is a
  `ValueError` that names the columns.
* **Constant columns** (`drop_constant=True`): a column with one value in every context
  row (no missing ones) carries no information either; it is dropped, silently, and
  ignored at predict time, whatever its values there. Standardized, it would read 0 in
  the context and (x - value) / 1 in the queries: shifts the model never saw explained.

The checkpoint card's feature mapping (e.g. "standardize") applies afterwards, to every
column, as the prior standardizes its categorical codes too.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.preprocessing import OrdinalEncoder

__all__ = ["UNKNOWN_CATEGORY_CODE", "TablePreprocessor", "categorical_columns"]

UNKNOWN_CATEGORY_CODE = -1  # the code of a category not seen in fit


def _holds_strings(column: np.ndarray) -> bool:
    return column.dtype.kind in "USO" and any(isinstance(v, str | bytes) for v in column)


def categorical_columns(
    X: np.ndarray, categorical_features: str | Sequence[int] | Sequence[bool] | np.ndarray
) -> np.ndarray:
    """(d,) bool mask of the categorical columns of X (see the module docstring).

    Args:
        X: the (n, d) table.
        categorical_features: "auto", column indices (negative ones count from the end), or
            a boolean mask of length d.
    """
    d = X.shape[1]
    if isinstance(categorical_features, str):
        if categorical_features != "auto":
            raise ValueError(
                "categorical_features must be 'auto', column indices or a boolean mask, got "
                f"{categorical_features!r}"
            )
        return np.array([_holds_strings(X[:, j]) for j in range(d)], dtype=bool)
    spec = np.asarray(categorical_features)
    if spec.dtype == bool:
        if spec.shape != (d,):
            raise ValueError(f"a boolean categorical_features mask needs {d} entries (X has {d} "
                             f"columns), got shape {spec.shape}")  # fmt: skip
        return spec.copy()
    if spec.size and not all(isinstance(i, numbers.Integral) for i in spec.ravel().tolist()):
        raise ValueError(f"categorical_features must hold column indices, got {spec.tolist()}")
    indices = spec.astype(np.int64).ravel()
    if np.any((indices < -d) | (indices >= d)):
        raise ValueError(f"categorical_features {indices.tolist()} out of range for {d} columns")
    mask = np.zeros(d, dtype=bool)
    mask[indices] = True
    return mask


def _describe_columns(columns: np.ndarray, names: np.ndarray | None) -> str:
    if names is None:
        return ", ".join(str(j) for j in columns)
    return ", ".join(f"{j} ({names[j]!r})" for j in columns)


def _is_missing(value: object) -> bool:
    """None, or a NaN number (a string such as "nan" is a category)."""
    if value is None:
        return True
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        return bool(np.isnan(value))
    return False


def _is_infinite(value: object) -> bool:
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        return bool(np.isinf(value))
    return False


def _mask(X: np.ndarray, test: object) -> np.ndarray:
    """(n, d) bool: where `test` holds, cell by cell, for a table of any dtype."""
    if X.dtype.kind in "fc":
        return np.isnan(X) if test is _is_missing else np.isinf(X)
    if X.dtype.kind in "iub":
        return np.zeros(X.shape, dtype=bool)
    return np.vectorize(test, otypes=[bool])(X) if X.size else np.zeros(X.shape, dtype=bool)


class TablePreprocessor:
    """Categorical codes, missing values as NaN and checks, fitted on a context.

    Args:
        categorical_features: "auto", column indices or a boolean mask (module docstring).
        column_names: names for messages (e.g. a DataFrame's `feature_names_in_`).
        drop_constant: drop the columns that hold one value in every context row.

    Attributes (after `fit`):
        categorical_: (d,) bool mask of the categorical columns.
        empty_: (d,) bool mask of the columns without a value in the context (dropped).
        constant_: (d,) bool mask of the constant columns dropped (none unless
            `drop_constant`).
        kept_: (d,) bool mask of the columns `transform` returns.
        encoder_: the fitted `OrdinalEncoder` of the categorical columns kept, or None.
    """

    def __init__(
        self,
        *,
        categorical_features: str | Sequence[int] | Sequence[bool] | np.ndarray = "auto",
        column_names: np.ndarray | None = None,
        drop_constant: bool = False,
    ) -> None:
        self.categorical_features = categorical_features
        self.column_names = column_names
        self.drop_constant = drop_constant

    def fit(self, X: np.ndarray) -> TablePreprocessor:
        """Learn the categories of X and which of its columns are empty (or constant)."""
        self.categorical_ = categorical_columns(X, self.categorical_features)
        self._check_strings(X)
        missing = self._check_missing(X)
        self.empty_ = missing.all(axis=0) if len(X) else np.zeros(X.shape[1], dtype=bool)
        if self.empty_.all():
            raise ValueError(
                f"every column of X is missing (NaN or None) in all {len(X)} rows; there is "
                "nothing to learn from"
            )
        if self.empty_.any():
            warnings.warn(
                f"column(s) {_describe_columns(np.flatnonzero(self.empty_), self.column_names)} "
                "of X hold no value in the context (all NaN or None); they carry no "
                "information and are ignored, in fit and predict",
                UserWarning,
                stacklevel=4,
            )
        self.constant_ = np.zeros(X.shape[1], dtype=bool)
        if self.drop_constant:
            self.constant_ = ~missing.any(axis=0) & np.array(
                [len(set(X[:, j].tolist())) <= 1 for j in range(X.shape[1])], dtype=bool
            )
        self.kept_ = ~self.empty_ & ~self.constant_
        kept = self.categorical_ & self.kept_
        self.encoder_ = None
        if kept.any():
            codes = np.where(missing[:, kept], np.nan, X[:, kept]).astype(object)
            self.encoder_ = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=UNKNOWN_CATEGORY_CODE
            ).fit(codes)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, number of `kept_` columns) float64 features, NaN where missing, in X's order."""
        self._check_strings(X)
        missing = self._check_missing(X)
        out = np.empty(X.shape, dtype=np.float64)
        numeric = ~self.categorical_
        out[:, numeric] = np.where(missing[:, numeric], np.nan, X[:, numeric]).astype(np.float64)
        kept = self.categorical_ & self.kept_
        if self.encoder_ is not None:
            codes = np.where(missing[:, kept], np.nan, X[:, kept]).astype(object)
            out[:, kept] = self.encoder_.transform(codes)
        return out[:, self.kept_]

    def _check_strings(self, X: np.ndarray) -> None:
        columns = np.flatnonzero(~self.categorical_)
        strings = [j for j in columns if _holds_strings(X[:, j])]
        if strings:
            raise ValueError(
                f"column(s) {_describe_columns(np.array(strings), self.column_names)} of X hold "
                "strings but are not among categorical_features; list them there (or pass "
                "categorical_features='auto')"
            )

    def _check_missing(self, X: np.ndarray) -> np.ndarray:
        """(n, d) mask of the missing cells, after refusing infinite ones."""
        bad = _mask(X, _is_infinite).any(axis=0)
        if bad.any():
            raise ValueError(
                f"X contains inf in column(s) "
                f"{_describe_columns(np.flatnonzero(bad), self.column_names)}; infinity is "
                "not a missing value: replace it by NaN (missing) or a finite number"
            )
        return _mask(X, _is_missing)
