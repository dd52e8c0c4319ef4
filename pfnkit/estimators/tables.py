"""Per-column preprocessing of real tables for a PFN classifier, fitted on the context alone.

`TablePreprocessor` turns a table (a numeric array, an object array, or what scikit-learn
makes of a DataFrame) into finite float64 features, one column per input column:

* **Categorical columns** get ordinal codes 0..k-1, the sorted categories seen in `fit`
  (sklearn's `OrdinalEncoder`). A category first seen at predict time gets the code -1,
  one below the seen codes: a category of its own, as a rare category missing from the
  context would be in the SCM prior, whose codes are nominal (randomly permuted). Which
  columns are categorical: ``"auto"`` (the default) takes every column that holds a
  string (``str`` or ``bytes``), such as a DataFrame's object, string or category
  columns; a list of column indices or a boolean mask names them explicitly (numeric
  columns included).
* **Numeric columns** pass through (``method="none"``), or (``method="quantile"``) go
  through their context's empirical CDF to normal scores: sklearn's
  `QuantileTransformer` gives the level u ∈ [0, 1] (u = k/(q-1) at the k-th of q context
  quantiles, linear in between, clipped outside), and the output is Φ⁻¹((u (q-1) + ½)/q),
  the Hazen plotting position. The context's extremes thus land at ±Φ⁻¹(1 - 1/(2q))
  (±2.33 for 50 rows), where normal samples of that size reach, rather than at sklearn's
  ±5.2 for ``output_distribution="normal"``.
* **Missing values.** The priors have none, so NaN, None or inf in any column is a
  `ValueError` that names the columns; impute first (e.g. `sklearn.impute.SimpleImputer`).

The checkpoint card's feature mapping (e.g. "standardize") applies afterwards, to every
column, as the prior standardizes its categorical codes too.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.preprocessing import OrdinalEncoder, QuantileTransformer

__all__ = ["PREPROCESSINGS", "UNKNOWN_CATEGORY_CODE", "TablePreprocessor", "categorical_columns"]

PREPROCESSINGS = ("none", "quantile")
UNKNOWN_CATEGORY_CODE = -1  # the code of a category not seen in fit
_MAX_QUANTILES = 1000  # as QuantileTransformer's default n_quantiles


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
    """None, or a NaN or infinite number (a string such as "nan" is a category)."""
    if value is None:
        return True
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        return not np.isfinite(value)
    return False


class TablePreprocessor:
    """Categorical codes, optional quantile normal scores and NaN checks, fitted on a context.

    Args:
        categorical_features: "auto", column indices or a boolean mask (module docstring).
        method: "none" or "quantile" for the numeric columns.
        column_names: names for error messages (e.g. a DataFrame's `feature_names_in_`).

    Attributes (after `fit`):
        categorical_: (d,) bool mask of the categorical columns.
        encoder_: the fitted `OrdinalEncoder` of the categorical columns, or None.
        quantiles_: the fitted `QuantileTransformer` (uniform levels) of the numeric
            columns, or None.
    """

    def __init__(
        self,
        *,
        categorical_features: str | Sequence[int] | Sequence[bool] | np.ndarray = "auto",
        method: str = "none",
        column_names: np.ndarray | None = None,
    ) -> None:
        if method not in PREPROCESSINGS:
            raise ValueError(f"preprocessing must be one of {PREPROCESSINGS}, got {method!r}")
        self.categorical_features = categorical_features
        self.method = method
        self.column_names = column_names

    def fit(self, X: np.ndarray) -> TablePreprocessor:
        """Learn the categories and (for "quantile") the numeric columns' quantiles from X."""
        self.categorical_ = categorical_columns(X, self.categorical_features)
        numeric = self._numeric(X)  # checks every column before anything is fitted
        self.encoder_ = None
        if self.categorical_.any():
            self.encoder_ = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=UNKNOWN_CATEGORY_CODE
            ).fit(X[:, self.categorical_])
        self.quantiles_ = None
        if self.method == "quantile" and numeric.shape[1]:
            n_quantiles = min(_MAX_QUANTILES, numeric.shape[0])
            self.quantiles_ = QuantileTransformer(n_quantiles=n_quantiles, subsample=None)
            self.quantiles_.fit(numeric)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d) finite float64 features, columns in the order of X."""
        out = np.empty(X.shape, dtype=np.float64)
        numeric = self._numeric(X)
        if self.quantiles_ is not None:
            q = len(self.quantiles_.references_)
            levels = self.quantiles_.transform(numeric)
            hazen = torch.from_numpy((levels * (q - 1) + 0.5) / q)
            numeric = torch.special.ndtri(hazen).numpy()  # Φ⁻¹, in float64
        out[:, ~self.categorical_] = numeric
        if self.encoder_ is not None:
            out[:, self.categorical_] = self.encoder_.transform(X[:, self.categorical_])
        return out

    def _numeric(self, X: np.ndarray) -> np.ndarray:
        """The numeric columns as float64, after checking the whole table for missing values."""
        self._check_no_missing(X)
        columns = np.flatnonzero(~self.categorical_)
        strings = [j for j in columns if _holds_strings(X[:, j])]
        if strings:
            raise ValueError(
                f"column(s) {_describe_columns(np.array(strings), self.column_names)} of X hold "
                "strings but are not among categorical_features; list them there (or pass "
                "categorical_features='auto')"
            )
        return np.asarray(X[:, columns], dtype=np.float64)

    def _check_no_missing(self, X: np.ndarray) -> None:
        if X.dtype.kind in "fc":
            bad = ~np.isfinite(X).all(axis=0)
        elif X.dtype.kind in "iub":
            return
        else:
            bad = np.array([any(_is_missing(v) for v in X[:, j]) for j in range(X.shape[1])])
        if bad.any():
            raise ValueError(
                f"X contains NaN (a missing value) or inf in column(s) "
                f"{_describe_columns(np.flatnonzero(bad), self.column_names)}; the prior has no "
                "missing values, so impute them first (e.g. sklearn.impute.SimpleImputer) or "
                "drop those rows"
            )
