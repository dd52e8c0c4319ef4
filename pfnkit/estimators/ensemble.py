"""Inference-time ensembles: the views of a table that the members of an estimator read.

A PFN is only approximately invariant to the order of its input columns, and a
checkpoint trained on standardized features of arbitrary tables sees the same table in
many equally valid monotone coordinates. Ensemble members therefore differ in **column
order** (`draw_feature_orders`; random subsets of the columns when the table is wider
than the model) and in the **numeric transform** of their columns (`NumericTransform`):

* ``"none"``: the values as given;
* ``"quantile"``: normal scores of the context's empirical CDF (sklearn's
  `QuantileTransformer` for the level u, then Φ⁻¹((u (q-1) + ½)/q), the Hazen plotting
  position, so the context's extremes land at ±Φ⁻¹(1 - 1/(2q)) rather than ±5.2);
* ``"power"``: a Yeo-Johnson power transform (Yeo & Johnson 2000, as scikit-learn's
  `PowerTransformer`, with λ in [-3, 3] found by a golden-section search vectorized
  over the columns) of the standardized column, then standardized again: skewed
  columns become more symmetric;
* ``"robust"``: centred on the median and scaled by the interquartile range
  (`RobustScaler`), so outliers do not shrink the bulk of the column.

Categorical columns keep their ordinal codes in every view. After the transform comes
the checkpoint card's feature map (e.g. "standardize"), then **missing values**: NaN is
imputed with the context mean of the mapped column (0 once standardized) and, where the
model has spare inputs, a missingness indicator column (standardized like the others)
is appended for each column of the view that has holes in the context. Every statistic
is fitted on the context with its columns sorted, so it does not depend on the order of
the context rows, and every map is row-wise, so a prediction does not depend on which
other rows are predicted with it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.preprocessing import QuantileTransformer, RobustScaler

__all__ = [
    "AUTO_CLASSIFIER_PREPROCESSING",
    "AUTO_PREPROCESSING",
    "PREPROCESSINGS",
    "FeatureViews",
    "NumericTransform",
    "PAD_RESCALES",
    "distinct_permutations",
    "draw_feature_orders",
    "fit_yeo_johnson",
    "pad_features",
    "resolve_preprocessing",
    "view_layout",
    "yeo_johnson",
]

PREPROCESSINGS = ("none", "quantile", "power", "robust")
# "auto" on a checkpoint that standardizes its features (see the module docstring)
AUTO_PREPROCESSING = ("none", "quantile", "power", "robust")
# PFNClassifier's "auto": "robust" is an affine map of each column, which the card's
# standardization undoes, so it repeats "none"; without it, and with the transforms that
# measured best alone first (benchmarks/tabular.py, 3 seeds: mean ROC AUC +0.0004 to
# +0.0015 at each training size)
AUTO_CLASSIFIER_PREPROCESSING = ("power", "quantile", "none")
_MAX_QUANTILES = 1000  # as QuantileTransformer's default n_quantiles
_MIN_SCALE = 1e-12  # a column whose spread is below this (relative) is only centred
_POWER_CLIP = 1e4  # |Yeo-Johnson output| bound: far outside any prior, but never inf
_LAMBDA_RANGE = (-3.0, 3.0)  # Yeo-Johnson exponents searched
_GOLDEN_STEPS = 40  # golden-section steps: the bracket shrinks to 6 × 0.618^40 ≈ 2e-8
PAD_RESCALES = ("none", "sqrt")  # card data_mapping["pad_rescale"]


def pad_features(x: np.ndarray, num_features: int, rescale: str = "none") -> np.ndarray:
    """Zero-pad (n, d) model-unit features to (n, num_features), as the prior does.

    Args:
        x: mapped features, shape (n, d) with d <= num_features.
        num_features: the model's input width D.
        rescale: the card's ``data_mapping["pad_rescale"]``: "none", or "sqrt" to multiply
            the d used features by √(D / d) first (GP prior ``feature_rescale = "sqrt"``).
    """
    if rescale not in PAD_RESCALES:
        raise ValueError(f"card data_mapping['pad_rescale']={rescale!r}; known: {PAD_RESCALES}")
    n, d = x.shape
    if d > num_features:
        raise ValueError(f"got {d} features, more than the model's {num_features}")
    if rescale == "sqrt":
        x = x * np.sqrt(num_features / d)
    if d < num_features:
        x = np.concatenate([x, np.zeros((n, num_features - d))], axis=1)
    return x


def resolve_preprocessing(
    preprocessing: str | Sequence[str], card_x: str, auto: tuple[str, ...] = AUTO_PREPROCESSING
) -> tuple[str, ...]:
    """The numeric transforms the views cycle through.

    Args:
        preprocessing: "auto", one of `PREPROCESSINGS`, or a sequence of them.
        card_x: the card's feature map. "auto" means `auto` on a checkpoint that
            standardizes its features and ("none",) on one whose prior has fixed feature
            units ("identity"), where a transform would change them.
        auto: the estimator's mix for "auto" (`AUTO_PREPROCESSING`,
            `AUTO_CLASSIFIER_PREPROCESSING`).
    """
    if isinstance(preprocessing, str):
        if preprocessing == "auto":
            return auto if card_x == "standardize" else ("none",)
        methods = (preprocessing,)
    else:
        methods = tuple(preprocessing)
    bad = [m for m in methods if m not in PREPROCESSINGS]
    if bad or not methods:
        raise ValueError(
            f"preprocessing must be 'auto', one of {PREPROCESSINGS} or a sequence of them, "
            f"got {preprocessing!r}"
        )
    return methods


def distinct_permutations(n: int, count: int, rng: np.random.RandomState) -> np.ndarray:
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
    """(A, min(n_features, width)) column orders for the views.

    Up to `width` features (the model's input width): the identity order first, then
    distinct random permutations, A = min(n_orders, n_features!) of them. More features
    than that: A = max(n_orders, ceil(n_features / width)) random subsets of `width`
    columns in random order, each drawn from the least-used columns so far, so every
    column is in at least one subset and no column is used twice more often than another.
    """
    if n_features <= width:
        return distinct_permutations(n_features, n_orders, rng)
    n_subsets = max(n_orders, math.ceil(n_features / width))
    uses = np.zeros(n_features)
    orders = []
    for _ in range(n_subsets):
        subset = np.argsort(uses + rng.uniform(size=n_features))[:width]  # least used first
        uses[subset] += 1
        orders.append(rng.permutation(subset))
    return np.array(orders, dtype=np.int64)


def view_layout(n_orders: int, n_methods: int, n_views: int) -> np.ndarray:
    """(F, 2) (order index, method index) of each view, all pairs distinct.

    F = n_orders when there are at least `n_views` orders (view k reads order k with
    method k mod n_methods), else min(n_views, n_orders × n_methods), walking the grid
    so that consecutive views change both the method and, block by block, the order.
    """
    if n_orders >= n_views:
        return np.array([(k, k % n_methods) for k in range(n_orders)], dtype=np.int64)
    n = min(n_views, n_orders * n_methods)
    pairs = [((k % n_methods + k // n_methods) % n_orders, k % n_methods) for k in range(n)]
    return np.array(pairs, dtype=np.int64)


def _sorted_columns(x: np.ndarray) -> np.ndarray:
    """Each column sorted (NaN last): statistics of it do not depend on the row order."""
    return np.sort(x, axis=0)


def _loc_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-ignoring per-column mean and standard deviation (1 for a constant column)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without values
        loc = np.nan_to_num(np.nanmean(x, axis=0))
        scale = np.nan_to_num(np.nanstd(x, axis=0))
    return loc, np.where(scale > _MIN_SCALE * (1 + np.abs(loc)), scale, 1.0)


def yeo_johnson(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The Yeo-Johnson transform of the columns of x (NaN stays NaN), exponents lam (d,)."""
    log_abs = np.log1p(np.abs(x))
    with np.errstate(over="ignore", invalid="ignore"):
        pos_lam, neg_lam = np.where(lam == 0, 1.0, lam), np.where(lam == 2, 1.0, 2 - lam)
        positive = np.where(lam == 0, log_abs, np.expm1(lam * log_abs) / pos_lam)
        negative = -np.where(lam == 2, log_abs, np.expm1((2 - lam) * log_abs) / neg_lam)
    return np.where(x >= 0, positive, negative)


def _yeo_johnson_llf(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """(d,) profile log-likelihood of each column at its exponent (NaN ignored)."""
    n = np.sum(~np.isnan(x), axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        variance = np.nanvar(yeo_johnson(x, lam), axis=0)
        jacobian = np.nansum(np.sign(x) * np.log1p(np.abs(x)), axis=0)
        llf = -0.5 * n * np.log(variance) + (lam - 1) * jacobian
    return np.where(np.isfinite(llf), llf, -np.inf)


def fit_yeo_johnson(x: np.ndarray) -> np.ndarray:
    """(d,) exponents maximizing each column's likelihood, by golden section in [-3, 3]."""
    ratio = (np.sqrt(5) - 1) / 2
    lo, hi = np.full(x.shape[1], _LAMBDA_RANGE[0]), np.full(x.shape[1], _LAMBDA_RANGE[1])
    for _ in range(_GOLDEN_STEPS):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        left_better = _yeo_johnson_llf(x, a) >= _yeo_johnson_llf(x, b)
        hi, lo = np.where(left_better, b, hi), np.where(left_better, lo, a)
    return (lo + hi) / 2


class NumericTransform:
    """One of `PREPROCESSINGS`, fitted per column on a context; NaN stays NaN.

    Args:
        method: "none", "quantile", "power" or "robust" (module docstring).
    """

    def __init__(self, method: str) -> None:
        if method not in PREPROCESSINGS:
            raise ValueError(f"preprocessing must be one of {PREPROCESSINGS}, got {method!r}")
        self.method = method

    def fit(self, x: np.ndarray) -> NumericTransform:
        """Fit on the (n, d) context columns x (NaN for missing values)."""
        x = _sorted_columns(x)
        self.varying_ = np.array([len(np.unique(c[~np.isnan(c)])) > 1 for c in x.T], dtype=bool)
        x = x[:, self.varying_]
        if self.method == "none" or x.shape[1] == 0:
            self.fitted_ = None
        elif self.method == "quantile":
            n_quantiles = min(_MAX_QUANTILES, x.shape[0])
            self.fitted_ = QuantileTransformer(n_quantiles=n_quantiles, subsample=None).fit(x)
        elif self.method == "power":
            self.loc_, self.scale_ = _loc_scale(x)
            z = (x - self.loc_) / self.scale_
            self.fitted_ = fit_yeo_johnson(z)  # the exponents
            self.power_loc_, self.power_scale_ = _loc_scale(yeo_johnson(z, self.fitted_))
        else:
            self.fitted_ = RobustScaler().fit(x)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(m, d) transformed columns; constant context columns pass through as given."""
        out = np.array(x, dtype=np.float64)
        if self.fitted_ is None:
            return out
        part = x[:, self.varying_]
        if self.method == "quantile":
            q = len(self.fitted_.references_)
            levels = self.fitted_.transform(part)
            part = torch.special.ndtri(torch.from_numpy((levels * (q - 1) + 0.5) / q)).numpy()
        elif self.method == "power":
            part = yeo_johnson((part - self.loc_) / self.scale_, self.fitted_)
            part = (part - self.power_loc_) / self.power_scale_
            part = np.clip(part, -_POWER_CLIP, _POWER_CLIP)  # overflow far out: finite
        else:
            part = self.fitted_.transform(part)
        out[:, self.varying_] = part
        return out


class FeatureViews:
    """The model inputs of every view of a table, fitted on the context.

    Args:
        orders: (A, k) column orders (`draw_feature_orders`).
        methods: the numeric transforms (`resolve_preprocessing`).
        layout: (F, 2) (order index, method index) per view (`view_layout`).
        categorical: (d,) bool mask of the columns that hold category codes (never
            transformed).
        standardize: whether the card standardizes features ("standardize") or passes
            them as they are ("identity").
        width: the model's input width (num_features).
        pad_rescale: the card's ``data_mapping["pad_rescale"]`` (`pad_features`).
    """

    def __init__(
        self,
        *,
        orders: np.ndarray,
        methods: tuple[str, ...],
        layout: np.ndarray,
        categorical: np.ndarray,
        standardize: bool,
        width: int,
        pad_rescale: str = "none",
    ) -> None:
        self.orders = orders
        self.methods = methods
        self.layout = layout
        self.categorical = categorical
        self.standardize = standardize
        self.width = width
        self.pad_rescale = pad_rescale

    def fit(self, x: np.ndarray) -> FeatureViews:
        """Fit transforms, maps, fill values and indicators on the (n, d) context x."""
        used = sorted({int(m) for m in self.layout[:, 1]})
        numeric = ~self.categorical
        self.transforms_ = {m: NumericTransform(self.methods[m]).fit(x[:, numeric]) for m in used}
        self.maps_ = {}
        for m in used:
            t = _sorted_columns(self._transformed(x, m))
            loc, scale = _loc_scale(t) if self.standardize else (0.0, 1.0)
            fill = np.nan_to_num(np.nanmean((t - loc) / scale, axis=0))
            self.maps_[m] = (loc, scale, fill)
        missing = np.isnan(x)
        self.has_missing_ = missing.any(axis=0)
        rate = missing.mean(axis=0)
        self.indicator_loc_ = rate if self.standardize else np.zeros_like(rate)
        spread = np.sqrt(rate * (1 - rate))
        self.indicator_scale_ = np.where(spread > 0, spread, 1.0) if self.standardize else 1.0
        self.indicators_ = [self._indicator_columns(self.orders[o]) for o, _ in self.layout]
        return self

    def _indicator_columns(self, order: np.ndarray) -> np.ndarray:
        """Columns of `order` with holes in the context, as many as the spare inputs allow."""
        holes = [int(j) for j in order if self.has_missing_[j]]
        return np.array(holes[: max(0, self.width - len(order))], dtype=np.int64)

    def _transformed(self, x: np.ndarray, m: int) -> np.ndarray:
        out = np.array(x, dtype=np.float64)
        out[:, ~self.categorical] = self.transforms_[m].transform(x[:, ~self.categorical])
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(F, m, width) float64 model inputs of the (m, d) rows x, view by view."""
        mapped = {}
        for m, (loc, scale, fill) in self.maps_.items():
            z = (self._transformed(x, m) - loc) / scale
            mapped[m] = np.where(np.isnan(z), fill, z)
        indicators = (np.isnan(x) - self.indicator_loc_) / self.indicator_scale_
        views = []
        for (o, m), holes in zip(self.layout, self.indicators_, strict=True):
            columns = np.concatenate([mapped[m][:, self.orders[o]], indicators[:, holes]], axis=1)
            views.append(pad_features(columns, self.width, self.pad_rescale))
        return np.stack(views)
