"""How an ensemble's members are pooled, and a softmax temperature fitted on the context.

Pooling (`pool_members`): the members of `PFNClassifier` read the same table through
different views, so their class probabilities are opinions to combine. The **linear**
pool averages the probabilities; the **log** pool (logarithmic opinion pool) averages
the log-probabilities and renormalizes, p ∝ Πₑ pₑ^(1/E), so a class that any member
rules out stays unlikely, and members that see different columns (a table wider than
the model) sharpen each other's evidence instead of diluting it.

Temperature (`fit_temperature`): a PFN's probabilities are the Bayes posterior
predictive under its prior; on a table that prior misdescribes (for one, classes that
form well-separated clusters where the SCM prior cuts one noisy score into ordered bins)
they are over- or under-confident. `PFNClassifier` then predicts each context row from
the other folds of a K-fold split of the context (`context_folds`) and fits one
temperature T to those held-out predictions, p ∝ pooled^(1/T): the maximum a posteriori
estimate under log T ~ N(0, σ²), so that a small context, whose held-out rows say little,
keeps T near 1 (temperature scaling: Guo et al., arXiv 1706.04599).
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

__all__ = [
    "CV_FOLDS",
    "LOG_TEMPERATURE_PRIOR_STD",
    "POOLINGS",
    "context_folds",
    "fit_temperature",
    "pool_members",
]

POOLINGS = ("log", "linear")
CV_FOLDS = 5  # folds of the context in the temperature's cross-validation
LOG_TEMPERATURE_PRIOR_STD = 0.5  # σ of the N(0, σ²) prior on log T (measured: 0.3-1 alike)
_LOG_TEMPERATURE_RANGE = (float(np.log(0.05)), float(np.log(20.0)))  # where log T is sought
_BISECTIONS = 60  # halvings of that interval: 6 × 2^-60, below float64 resolution


def pool_members(log_p_EMC: np.ndarray, pooling: str) -> np.ndarray:
    """(M, C) normalized log-probabilities of the pool of E members' (E, M, C) ones.

    Args:
        log_p_EMC: each member's normalized class log-probabilities.
        pooling: "log" (mean of the log-probabilities, renormalized) or "linear" (log of
            the mean of the probabilities).
    """
    if pooling == "log":
        return log_softmax(log_p_EMC.mean(axis=0), axis=-1)
    if pooling == "linear":
        return logsumexp(log_p_EMC, axis=0) - np.log(log_p_EMC.shape[0])
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def context_folds(
    x: np.ndarray, y_index: np.ndarray, n_folds: int = CV_FOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """The context rows in a canonical order, and the fold of each row in that order.

    The order sorts the rows by their values (lexicographically, the first column first;
    NaN last), so it depends neither on the order the rows came in (rows that tie are
    identical) nor on the names of the classes. Within each class the rows are dealt to
    the folds in turn, so the folds are stratified: each holds about 1/n_folds of every
    class.

    Args:
        x: (n, d) features (NaN for missing values).
        y_index: (n,) class indices.
        n_folds: the number of folds K.

    Returns:
        order: (n,) row indices of x in the canonical order.
        folds: (n,) the fold of row order[i], in 0..K-1.
    """
    keys = np.nan_to_num(x, nan=np.inf).T[::-1]  # lexsort's last key sorts first
    order = np.lexsort(keys) if len(keys) else np.arange(len(y_index))
    sorted_y = y_index[order]
    folds = np.empty(len(order), dtype=np.int64)
    for label in np.unique(sorted_y):
        members = sorted_y == label
        folds[members] = np.arange(members.sum()) % n_folds
    return order, folds


def _d_objective(log_t: float, log_p_NC: np.ndarray, y_N: np.ndarray, prior_std: float) -> float:
    """d/d(log T) of the negative log posterior of `fit_temperature`."""
    beta = np.exp(-log_t)
    q_NC = softmax(beta * log_p_NC, axis=1)
    d_nll_d_beta = np.sum(q_NC * log_p_NC) - np.sum(log_p_NC[np.arange(len(y_N)), y_N])
    return float(-beta * d_nll_d_beta + log_t / prior_std**2)


def fit_temperature(
    log_p_NC: np.ndarray, y_N: np.ndarray, prior_std: float = LOG_TEMPERATURE_PRIOR_STD
) -> float:
    """The MAP temperature T of held-out pooled log-probabilities, log T ~ N(0, prior_std²).

    Maximizes Σₙ log softmax(log_p_NC[n] / T)[y_N[n]] - (log T)² / (2 prior_std²) over
    log T in [log 0.05, log 20], by bisection on the derivative: a fixed number of halvings
    of the interval, so inputs equal up to rounding give temperatures equal up to
    rounding. No rows: 1.0.

    Args:
        log_p_NC: (N, C) pooled log-probabilities of held-out rows (finite).
        y_N: (N,) their class indices.
        prior_std: σ of the prior on log T.
    """
    if len(y_N) == 0:
        return 1.0
    lo, hi = _LOG_TEMPERATURE_RANGE
    if _d_objective(lo, log_p_NC, y_N, prior_std) >= 0:
        return float(np.exp(lo))
    if _d_objective(hi, log_p_NC, y_N, prior_std) <= 0:
        return float(np.exp(hi))
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if _d_objective(mid, log_p_NC, y_N, prior_std) > 0:
            hi = mid
        else:
            lo = mid
    return float(np.exp((lo + hi) / 2))
