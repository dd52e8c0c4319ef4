"""Acquisition functions in closed form over a `BarDistribution`, for minimisation.

The improvement over an incumbent τ (the best value seen so far) is ``(τ - Y)^+``. A bar
distribution is a mixture of K bucket densities with masses ``p_k`` (see
`pfnkit.distributions`): uniform on each inner bar ``[b_k, b_{k+1}]``, a half-normal
``b_1 - s_L |Z|`` on the left tail and ``b_{K-1} + s_R |Z|`` on the right tail. Every
expectation below is therefore ``Σ_k p_k e_k(τ)``, where ``e_k`` is that bucket's own
closed form and depends only on the borders and τ; gradients reach the query inputs
through the masses (the model's logits). Derivations, with ``h(u) = φ(u) + u Φ(u)`` the
Gaussian expected-improvement function:

* inner bar ``[l, u]`` of width w, with ``c = clamp(τ, l, u)``:
  ``E[(τ - Y)^+] = (c - l) / w · (τ - (l + c) / 2)``;
* left tail, ``a = (b_1 - τ) / s_L``: ``s_L (√(2/π) - a)`` for ``a <= 0`` and
  ``2 s_L h(-a)`` for ``a > 0``;
* right tail, ``a = (τ - b_{K-1}) / s_R``: 0 for ``a <= 0`` and
  ``s_R (a erf(a / √2) + 2 φ(0) expm1(-a² / 2))`` for ``a > 0``.

The left tail's term never vanishes, so log-EI is finite for any incumbent: it is a
log-sum-exp over the buckets, with ``log h`` taken from Ament et al., "Unexpected
Improvements to Expected Improvement for Bayesian Optimization" (arXiv 2310.20708),
where EI itself underflows. All arithmetic runs in the borders' precision (float64 after
`BarDistribution.affine`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from pfnkit.distributions import BarDistribution

__all__ = [
    "ACQUISITIONS",
    "expected_improvement",
    "log_expected_improvement",
    "log_h",
    "log_probability_of_improvement",
    "lower_confidence_bound",
    "probability_of_improvement",
    "upper_confidence_bound",
]

_SQRT2 = math.sqrt(2.0)
_PHI0 = 1.0 / math.sqrt(2.0 * math.pi)  # φ(0)
_HALFNORMAL_MEAN = math.sqrt(2.0 / math.pi)  # E|Z|
_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI_DIV_2 = 0.5 * math.log(math.pi / 2.0)


# ------------------------------------------------------------------ Gaussian helpers
def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2 (Mächler, 2012)."""
    small = x > -_LOG_2
    x_small = x.masked_fill(~small, -_LOG_2)
    x_large = x.masked_fill(small, -_LOG_2)
    return torch.where(small, torch.log(-torch.expm1(x_small)), torch.log1p(-torch.exp(x_large)))


def log_h(u: Tensor) -> Tensor:
    """log(φ(u) + u Φ(u)), finite and differentiable for all u (arXiv 2310.20708, eq. 9).

    For u > -1 it is the direct formula. Below, ``h(u) = φ(u) (1 - |u| Φ(u) / φ(u))``,
    whose second factor is ``1 - exp(w)`` with ``w = log(|u| erfcx(-u / √2)) + log √(π/2)``,
    taken with `log1mexp`; past ``-1 / √eps`` its leading order ``-2 log|u|`` replaces it.
    Every branch sees only inputs where it is valid, so gradients carry no NaN.
    """
    bound = -1.0
    neg_inv_sqrt_eps = -1.0 / math.sqrt(torch.finfo(u.dtype).eps)
    upper = u > bound
    u_upper = u.masked_fill(~upper, bound)
    log_upper = torch.log(
        torch.exp(-0.5 * u_upper**2) * _PHI0 + u_upper * torch.special.ndtr(u_upper)
    )
    u_lower = u.masked_fill(upper, bound)
    u_mid = u_lower.masked_fill(u_lower < neg_inv_sqrt_eps, neg_inv_sqrt_eps)
    w = torch.log(torch.special.erfcx(-u_mid / _SQRT2) * u_mid.abs()) + _LOG_SQRT_PI_DIV_2
    log_phi = -0.5 * u_lower**2 - _HALF_LOG_2PI
    tail = torch.where(u_lower > neg_inv_sqrt_eps, _log1mexp(w), -2.0 * u_lower.abs().log())
    return torch.where(upper, log_upper, log_phi + tail)


# ------------------------------------------------------------ per-bucket closed forms
def _right_tail_shortfall(a: Tensor) -> Tensor:
    """E[(a - |Z|)^+] for a >= 0: ``a erf(a/√2) + 2 φ(0) expm1(-a²/2)``, ≈ φ(0) a² near 0.

    Both terms are O(a²) near 0 with ratio -2, so the difference loses no digits.
    """
    return (a * torch.erf(a / _SQRT2) + 2 * _PHI0 * torch.expm1(-0.5 * a**2)).clamp_min(0)


def _prepare(dist: BarDistribution, incumbent: float | Tensor) -> tuple[Tensor, Tensor]:
    """The incumbent as (..., 1) in the borders' precision, and the (..., K) log-masses.

    The incumbent keeps its own shape (it is not expanded to the batch): the per-bucket
    terms depend only on it and the borders, so one incumbent for all queries computes
    them once, (1, K), and they broadcast against the masses.
    """
    b = dist.borders
    tau = torch.as_tensor(incumbent, dtype=b.dtype, device=b.device)
    if not bool(torch.isfinite(tau).all()):
        raise ValueError(f"the incumbent must be finite, got {incumbent!r}")
    shape = torch.broadcast_shapes(tau.shape, dist.batch_shape)
    log_probs = dist.log_probs.expand(*shape, dist.n_bars)
    return tau.unsqueeze(-1), log_probs


def _bucket_improvement(dist: BarDistribution, tau: Tensor) -> Tensor:
    """E[(τ - Y)^+] within each bucket, shape (..., K) for τ of shape (..., 1)."""
    b, w = dist.borders, dist.widths
    s_left, s_right = w[0], w[-1]
    lo, hi = b[1:-2], b[2:-1]  # inner bars 1..K-2
    c = torch.minimum(torch.maximum(tau, lo), hi)
    inner = (c - lo) / w[1:-1] * (tau - (lo + c) / 2)
    a_left = (b[1] - tau) / s_left
    beyond = 2 * log_h(-a_left.clamp_min(0)).exp()
    left = s_left * torch.where(a_left > 0, beyond, _HALFNORMAL_MEAN - a_left)
    a_right = ((tau - b[-2]) / s_right).clamp_min(0)
    right = s_right * _right_tail_shortfall(a_right)
    return torch.cat([left, inner, right], dim=-1)


def _log_bucket_improvement(dist: BarDistribution, tau: Tensor) -> Tensor:
    """log E[(τ - Y)^+] within each bucket, shape (..., K); -inf where it is 0.

    Only the left tail can hold a tiny positive value, and it uses `log_h`; an inner bar
    or the right tail is either 0 or at least of the order of its width times its
    overlap with τ, so their logs are taken directly.
    """
    b, w = dist.borders, dist.widths
    s_left, s_right = w[0], w[-1]
    lo, hi = b[1:-2], b[2:-1]
    c = torch.minimum(torch.maximum(tau, lo), hi)
    covered = c > lo
    overlap = torch.where(covered, c - lo, torch.ones_like(c))
    gap = torch.where(covered, tau - (lo + c) / 2, torch.ones_like(c))
    log_inner = torch.where(covered, overlap.log() - w[1:-1].log() + gap.log(), -math.inf)
    a_left = (b[1] - tau) / s_left
    beyond = a_left > 0
    near = torch.where(beyond, torch.zeros_like(a_left), _HALFNORMAL_MEAN - a_left)
    log_left = torch.where(beyond, _LOG_2 + log_h(-a_left.clamp_min(0)), near.log())
    a_right = ((tau - b[-2]) / s_right).clamp_min(0)
    e_right = _right_tail_shortfall(a_right)
    positive = e_right > 0
    log_right = torch.where(positive, e_right.clamp_min(torch.finfo(b.dtype).tiny).log(), -math.inf)
    log_terms = torch.cat([log_left, log_inner, log_right], dim=-1)
    log_scales = torch.cat(
        [s_left.log().reshape(1), torch.zeros_like(lo), s_right.log().reshape(1)]
    )
    return log_terms + log_scales


def _bucket_cdf(dist: BarDistribution, tau: Tensor) -> Tensor:
    """P(Y < τ) within each bucket, shape (..., K)."""
    b, w = dist.borders, dist.widths
    inner = ((tau - b[1:-2]) / w[1:-1]).clamp(0, 1)
    a_left = (b[1] - tau) / w[0]
    left = torch.where(
        a_left > 0, torch.erfc(a_left.clamp_min(0) / _SQRT2), torch.ones_like(a_left)
    )
    right = torch.erf(((tau - b[-2]) / w[-1]).clamp_min(0) / _SQRT2)
    return torch.cat([left, inner, right], dim=-1)


def _log_bucket_cdf(dist: BarDistribution, tau: Tensor) -> Tensor:
    """log P(Y < τ) within each bucket, shape (..., K); the left tail via `log_ndtr`."""
    b, w = dist.borders, dist.widths
    frac = ((tau - b[1:-2]) / w[1:-1]).clamp(0, 1)
    log_inner = torch.where(frac > 0, frac.clamp_min(torch.finfo(b.dtype).tiny).log(), -math.inf)
    a_left = ((b[1] - tau) / w[0]).clamp_min(0)
    log_left = _LOG_2 + torch.special.log_ndtr(-a_left)  # erfc(a/√2) = 2 Φ(-a)
    right = torch.erf(((tau - b[-2]) / w[-1]).clamp_min(0) / _SQRT2)
    log_right = torch.where(right > 0, right.clamp_min(torch.finfo(b.dtype).tiny).log(), -math.inf)
    return torch.cat([log_left, log_inner, log_right], dim=-1)


# ---------------------------------------------------------------------- acquisitions
def expected_improvement(dist: BarDistribution, incumbent: float | Tensor) -> Tensor:
    """E[(τ - Y)^+] under `dist` for the incumbent τ (minimisation), shape of the batch.

    Exact for the bar distribution, tails included (module docstring). It underflows to 0
    far below the predictive's bulk; optimise `log_expected_improvement` there.
    """
    tau, log_probs = _prepare(dist, incumbent)
    return (log_probs.exp() * _bucket_improvement(dist, tau)).sum(-1)


def log_expected_improvement(dist: BarDistribution, incumbent: float | Tensor) -> Tensor:
    """log E[(τ - Y)^+], finite for every finite incumbent (arXiv 2310.20708)."""
    tau, log_probs = _prepare(dist, incumbent)
    return torch.logsumexp(log_probs + _log_bucket_improvement(dist, tau), dim=-1)


def probability_of_improvement(dist: BarDistribution, incumbent: float | Tensor) -> Tensor:
    """P(Y < τ) under `dist` for the incumbent τ, shape of the batch."""
    tau, log_probs = _prepare(dist, incumbent)
    return (log_probs.exp() * _bucket_cdf(dist, tau)).sum(-1).clamp(0, 1)


def log_probability_of_improvement(dist: BarDistribution, incumbent: float | Tensor) -> Tensor:
    """log P(Y < τ), finite for every finite incumbent (the left tail never vanishes)."""
    tau, log_probs = _prepare(dist, incumbent)
    return torch.logsumexp(log_probs + _log_bucket_cdf(dist, tau), dim=-1).clamp_max(0)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def lower_confidence_bound(dist: BarDistribution, level: float = 0.1) -> Tensor:
    """The `level` quantile of `dist` (for minimisation, query where it is lowest)."""
    _check_level(level)
    return dist.icdf(torch.tensor(level, dtype=dist.borders.dtype))


def upper_confidence_bound(dist: BarDistribution, level: float = 0.9) -> Tensor:
    """The `level` quantile of `dist` (for maximisation, query where it is highest)."""
    _check_level(level)
    return dist.icdf(torch.tensor(level, dtype=dist.borders.dtype))


AcquisitionScore = Callable[[BarDistribution, Tensor], Tensor]

# name -> score to maximise for minimisation. "ei" and "log_ei" pick the same point; the
# optimiser climbs the log, whose gradients do not vanish far from the incumbent (as
# BoTorch's LogEI). Likewise "pi". "lcb" minimises the 10% quantile.
ACQUISITIONS: dict[str, AcquisitionScore] = {
    "ei": log_expected_improvement,
    "log_ei": log_expected_improvement,
    "pi": log_probability_of_improvement,
    "lcb": lambda dist, incumbent: -lower_confidence_bound(dist, 0.1),
}
