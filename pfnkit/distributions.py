"""Full-support bar distribution: the PFN's regression head (Müller et al., arXiv 2112.10510).

The real line is cut at borders ``b_1 < ... < b_{K-1}`` into K buckets. Inner buckets carry
their mass uniformly; the two outer buckets, ``(-inf, b_1]`` and ``[b_{K-1}, inf)``, are
half-normal tails whose scales are the outermost training bars' widths ``b_1 - b_0`` and
``b_K - b_{K-1}``. log_prob, cdf, icdf, moments, entropy, mode and sample all derive from that
one piecewise density, so they agree in the tails too. The KL divergence between two bar
distributions on the same borders is registered with ``torch.distributions.kl_divergence``.
"""

from __future__ import annotations

import copy
import math
from functools import cache, cached_property

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints, register_kl
from torch.distributions.utils import lazy_property

__all__ = ["BarDistribution", "borders_from_samples"]

_LOG2 = math.log(2.0)
_SQRT2 = math.sqrt(2.0)
_HALFNORMAL_MEAN = math.sqrt(2.0 / math.pi)  # E|Z| for Z ~ N(0, 1)
_HALFNORMAL_VAR = 1.0 - 2.0 / math.pi  # Var|Z|
_BORDER_CACHES = ("widths", "_bucket_moments", "mean", "variance")  # what the borders change


def borders_from_samples(y: Tensor, n_bars: int) -> Tensor:
    """Bar borders at equal-mass quantiles of prior target samples.

    Args:
        y: samples of the prior's targets, any shape (flattened).
        n_bars: number of buckets K; the result has K + 1 borders.

    Returns:
        Strictly increasing borders of shape (K + 1,), float64. The outer two borders are
        the sample extremes and only set the tail scales.
    """
    if n_bars < 3:
        raise ValueError(f"n_bars must be at least 3, got {n_bars}")
    y = y.detach().reshape(-1).to(torch.float64)
    if y.numel() < 10 * n_bars:
        raise ValueError(f"need at least {10 * n_bars} samples for {n_bars} bars, got {y.numel()}")
    y_sorted = torch.sort(y).values
    positions = torch.linspace(0, y.numel() - 1, n_bars + 1, dtype=torch.float64)
    lower = positions.floor().long()
    upper = positions.ceil().long()
    frac = positions - lower
    borders = y_sorted[lower] * (1 - frac) + y_sorted[upper] * frac
    if not bool((borders[1:] > borders[:-1]).all()):
        raise ValueError(
            "prior samples have repeated values, so equal-mass borders are not strictly "
            "increasing; use fewer bars or a continuous target"
        )
    return borders


class BarDistribution(Distribution):
    """Piecewise-uniform density with half-normal tails, batched over logits.

    Give the bucket masses either as `logits` or as `probs`. What is derived from them
    (normalised masses and their logarithms, block sums of the masses, bucket widths and
    moments, mean and variance) is computed once per distribution, on first use, and
    shared by every method, in whatever order they are called. cdf and icdf search the
    bars in blocks of about √K: the block sums are one pass over the bars, and each value
    then reads only the bars of its own block.

    Args:
        borders: (K + 1,) strictly increasing borders shared by the whole batch.
        logits: (..., K) unnormalised log-masses of the buckets; batch shape is ``...``.
        probs: (..., K) bucket masses that sum to 1 (as `torch.softmax` leaves them; checked
            within torch's simplex tolerance when `validate_args`), instead of `logits`.
    """

    arg_constraints = {"logits": constraints.real_vector, "probs": constraints.simplex}
    support = constraints.real
    has_rsample = False

    def __init__(
        self,
        borders: Tensor,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
        *,
        probs: Tensor | None = None,
    ) -> None:
        if (logits is None) == (probs is None):
            raise ValueError("pass exactly one of logits and probs")
        masses = logits if probs is None else probs
        if borders.ndim != 1 or masses.shape[-1] + 1 != borders.shape[0]:
            name = "logits" if probs is None else "probs"
            raise ValueError(
                f"borders must be (K+1,) for {name} (..., K); got {tuple(borders.shape)} "
                f"and {tuple(masses.shape)}"
            )
        if masses.shape[-1] < 3:
            raise ValueError("a bar distribution needs at least 3 buckets")
        if masses.dtype in (torch.float16, torch.bfloat16):
            masses = masses.float()  # half-precision softmax over ~1000 bars is too coarse
        # Borders keep their own precision (float64 after `affine` to a large offset) but
        # never drop below the masses': half-precision borders of 1000 bars would collide.
        borders = borders.to(torch.promote_types(borders.dtype, masses.dtype))
        if not bool((borders[1:] > borders[:-1]).all()):
            raise ValueError("borders must be strictly increasing")
        self.borders = borders
        self._from_probs = probs is not None
        if probs is None:
            self.logits = masses
        else:
            self.probs = masses.to(borders.dtype)
        if masses.numel() == 0:  # torch's argument check cannot reshape an empty batch
            validate_args = False
        super().__init__(batch_shape=masses.shape[:-1], validate_args=validate_args)

    # ----------------------------------------------------------------- derived quantities
    @property
    def n_bars(self) -> int:
        return self.borders.shape[0] - 1

    @lazy_property
    def logits(self) -> Tensor:
        """(..., K) log-masses; the log of `probs` when the distribution was built from them."""
        return self.probs.log()

    @cached_property
    def log_probs(self) -> Tensor:
        """Normalised log-mass per bucket, shape (..., K), in the borders' precision."""
        if self._from_probs:
            return self.probs.log()  # normalised already
        return F.log_softmax(self.logits.to(self.borders.dtype), dim=-1)

    @lazy_property
    def probs(self) -> Tensor:
        """Normalised mass per bucket, shape (..., K), in the borders' precision."""
        return self.log_probs.exp()

    @property
    def _block_width(self) -> int:
        """Bars per block of the two-level search behind cdf and icdf (`_block_width_for`)."""
        return _block_width_for(self.n_bars)

    @cached_property
    def _block_cum(self) -> tuple[Tensor, Tensor]:
        """(..., B) masses before and up to the end of each block of `_block_width` bars.

        cdf and icdf find a value's block here, then sum within that block only: one pass
        over the bars, and no (..., K) cumulative sum to allocate.
        """
        width = self._block_width
        sums = self.probs.unflatten(-1, (self.n_bars // width, width)).sum(-1)
        cum = torch.cumsum(sums, dim=-1)
        return cum - sums, cum

    def _blocks(self, probs: Tensor, j: Tensor) -> tuple[Tensor, Tensor]:
        """(..., B, width) view of `probs` (..., K), and j's gather index into it."""
        width = self._block_width
        blocks = probs.unflatten(-1, (self.n_bars // width, width))
        return blocks, j.unsqueeze(-1).expand(*j.shape, width)

    @cached_property
    def widths(self) -> Tensor:
        return self.borders[1:] - self.borders[:-1]

    def _tail_scales(self) -> tuple[Tensor, Tensor]:
        w = self.widths
        return w[0], w[-1]

    @cached_property
    def _bucket_moments(self) -> tuple[Tensor, Tensor]:
        """Mean and variance of each bucket's own density, shape (K,)."""
        b, w = self.borders, self.widths
        s_left, s_right = self._tail_scales()
        means = (b[:-1] + b[1:]) / 2
        variances = w**2 / 12
        means[0] = b[1] - s_left * _HALFNORMAL_MEAN
        means[-1] = b[-2] + s_right * _HALFNORMAL_MEAN
        variances[0] = s_left**2 * _HALFNORMAL_VAR
        variances[-1] = s_right**2 * _HALFNORMAL_VAR
        return means, variances

    def _bucket_index(self, y: Tensor) -> Tensor:
        """Bucket of each y: 0 is the left tail (-inf, b_1], K-1 the right tail [b_{K-1}, inf)."""
        idx = torch.bucketize(y.contiguous(), self.borders[1:-1].contiguous(), right=True)
        # `right=True` would put b_1 itself in bucket 1; it is the left tail's peak (the mode).
        return torch.where(y == self.borders[1], torch.zeros_like(idx), idx)

    def _broadcast(self, value: Tensor, masses: Tensor) -> tuple[Tensor, Tensor]:
        """Broadcast `value` against the batch; return it and the matching (…, K) `masses`."""
        value = torch.as_tensor(value, dtype=self.borders.dtype, device=self.borders.device)
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        return value.expand(shape), masses.expand(*shape, self.n_bars)

    # ---------------------------------------------------------------------- the density
    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        y, log_probs = self._broadcast(value, self.log_probs)
        idx = self._bucket_index(y)
        lp = log_probs.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        s_left, s_right = self._tail_scales()
        inner = lp - self.widths.log()[idx]
        z_left = (self.borders[1] - y) / s_left
        z_right = (y - self.borders[-2]) / s_right
        gauss = -0.5 * math.log(2 * math.pi)
        left = lp + _LOG2 + gauss - 0.5 * z_left**2 - s_left.log()
        right = lp + _LOG2 + gauss - 0.5 * z_right**2 - s_right.log()
        out = torch.where(idx == 0, left, inner)
        return torch.where(idx == self.n_bars - 1, right, out)

    def cdf(self, value: Tensor) -> Tensor:
        y, probs = self._broadcast(value, self.probs)
        idx = self._bucket_index(y)
        p = probs.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        width = self._block_width
        j = idx // width
        left = self._block_cum[0].expand(*y.shape, -1).gather(-1, j.unsqueeze(-1)).squeeze(-1)
        before = torch.arange(width, device=idx.device) < (idx - j * width).unsqueeze(-1)
        blocks, index = self._blocks(probs, j)
        block = blocks.gather(-2, index.unsqueeze(-2)).squeeze(-2)  # the block of each value
        c = left + (block * before).sum(-1)  # mass left of bar idx
        b, w = self.borders, self.widths
        s_left, s_right = self._tail_scales()
        inner_frac = ((y - b[idx]) / w[idx]).clamp(0, 1)
        left_frac = torch.erfc((b[1] - y).clamp_min(0) / (s_left * _SQRT2))
        right_frac = torch.erf((y - b[-2]).clamp_min(0) / (s_right * _SQRT2))
        frac = torch.where(idx == 0, left_frac, inner_frac)
        frac = torch.where(idx == self.n_bars - 1, right_frac, frac)
        return (c + p * frac).clamp(0, 1)  # the cumulative sum may overshoot 1 by rounding

    def _icdf_batch_last(self, q: Tensor) -> Tensor:
        """Quantiles at levels `q` of shape (*batch_shape, L): a block, then a bar in it."""
        width = self._block_width
        left, cum_blocks = self._block_cum
        # bar k holds q when mass-left-of-k <= q < mass-up-to-k; the last bar takes q = 1
        j = torch.searchsorted(cum_blocks, q.contiguous(), right=True)
        j = j.clamp_max(cum_blocks.shape[-1] - 1)
        blocks, index = self._blocks(self.probs, j)
        block = blocks.gather(-2, index)  # (*batch_shape, L, width): the block of each level
        cum = left.gather(-1, j).unsqueeze(-1) + block.cumsum(-1)  # mass up to each bar
        pos = (cum <= q.unsqueeze(-1)).sum(-1, keepdim=True).clamp_max(width - 1)
        idx = j * width + pos.squeeze(-1)
        p = block.gather(-1, pos).squeeze(-1)
        c = cum.gather(-1, pos).squeeze(-1) - p
        b, w = self.borders, self.widths
        s_left, s_right = self._tail_scales()
        p = p.clamp_min(torch.finfo(p.dtype).tiny)  # a tail whose mass underflowed to 0
        frac = ((q - c) / p).clamp(0, 1)
        inner = b[idx] + frac * w[idx]
        left = b[1] + s_left * torch.special.ndtri(frac / 2)
        right_rem = ((1 - q) / p).clamp(0, 1)
        right = b[-2] - s_right * torch.special.ndtri(right_rem / 2)
        out = torch.where(idx == self.n_bars - 1, right, torch.where(idx == 0, left, inner))
        out = torch.where(q >= 1, torch.inf, out)  # even where the cumsum overshoots 1 by an ulp
        return torch.where(q <= 0, -torch.inf, out)

    def icdf(self, value: Tensor) -> Tensor:
        """Quantile function; `value` broadcasts against the batch like `log_prob`."""
        q = torch.as_tensor(value, dtype=self.borders.dtype, device=self.borders.device)
        shape = torch.broadcast_shapes(q.shape, self.batch_shape)
        n_extra = len(shape) - len(self.batch_shape)
        q = q.expand(shape)
        # searchsorted needs the batch dims leading: move sample dims to the back.
        q_batch_last = q.permute((*range(n_extra, len(shape)), *range(n_extra)))
        out = self._icdf_batch_last(q_batch_last.reshape(*self.batch_shape, -1))
        out = out.reshape((*self.batch_shape, *shape[:n_extra]))
        n_batch = len(self.batch_shape)
        return out.permute((*range(n_batch, len(shape)), *range(n_batch)))

    def quantiles(self, levels: Tensor | list[float]) -> Tensor:
        """Quantiles at `levels` (L,), returned with shape (*batch_shape, L)."""
        levels = torch.as_tensor(levels, dtype=self.borders.dtype, device=self.borders.device)
        if levels.ndim != 1:
            raise ValueError(f"levels must be one-dimensional, got shape {tuple(levels.shape)}")
        if bool(((levels < 0) | (levels > 1)).any()):
            raise ValueError("quantile levels must lie in [0, 1]")
        return self._icdf_batch_last(levels.expand(*self.batch_shape, -1))

    # ------------------------------------------------------------------------ summaries
    @cached_property
    def mean(self) -> Tensor:
        means, _ = self._bucket_moments
        return self.probs @ means

    @cached_property
    def variance(self) -> Tensor:
        means, variances = self._bucket_moments
        return (self.probs * (variances + (means - self.mean.unsqueeze(-1)) ** 2)).sum(-1)

    @property
    def median(self) -> Tensor:
        half = torch.full((1,), 0.5, dtype=self.borders.dtype, device=self.borders.device)
        return self.quantiles(half).squeeze(-1)

    @property
    def mode(self) -> Tensor:
        s_left, s_right = self._tail_scales()
        b = self.borders
        peak = torch.cat(
            [
                (_HALFNORMAL_MEAN / s_left).reshape(1),
                1 / self.widths[1:-1],
                (_HALFNORMAL_MEAN / s_right).reshape(1),
            ]
        )
        idx = (self.log_probs + peak.log()).argmax(-1)
        location = torch.cat([b[1].reshape(1), (b[1:-2] + b[2:-1]) / 2, b[-2].reshape(1)])
        return location[idx]

    def entropy(self) -> Tensor:
        s_left, s_right = self._tail_scales()
        halfnormal = lambda s: 0.5 * torch.log(math.pi * s**2 / 2) + 0.5  # noqa: E731
        bucket_entropy = torch.cat(
            [halfnormal(s_left).reshape(1), self.widths[1:-1].log(), halfnormal(s_right).reshape(1)]
        )
        return (self.probs * (bucket_entropy - self.log_probs)).sum(-1)

    # ------------------------------------------------------------------------- sampling
    def sample(
        self,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Exact samples: pick a bucket, then draw within it (uniform or half-normal)."""
        sample_shape = torch.Size(sample_shape)
        n = max(1, sample_shape.numel())
        probs = self.probs.reshape(-1, self.n_bars)
        with torch.no_grad():
            idx = torch.multinomial(probs, n, replacement=True, generator=generator)
            u = torch.rand(idx.shape, generator=generator, dtype=probs.dtype, device=probs.device)
            z = torch.randn(idx.shape, generator=generator, dtype=probs.dtype, device=probs.device)
            b, w = self.borders, self.widths
            s_left, s_right = self._tail_scales()
            out = b[idx] + u * w[idx]
            out = torch.where(idx == 0, b[1] - s_left * z.abs(), out)
            out = torch.where(idx == self.n_bars - 1, b[-2] + s_right * z.abs(), out)
        out = out.T.reshape(*sample_shape, *self.batch_shape)
        return out

    # --------------------------------------------------------------------- transforms
    def _with(self, borders: Tensor, index: object = None) -> BarDistribution:
        """The same masses (indexed by `index`) on other borders, in the form they were given."""
        pick = (lambda t: t) if index is None else (lambda t: t[index])  # noqa: E731
        # the masses were checked (or not) when this distribution was built
        if self._from_probs:
            return BarDistribution(borders, probs=pick(self.probs), validate_args=False)
        return BarDistribution(borders, pick(self.logits), validate_args=False)

    def affine(self, loc: float | Tensor, scale: float | Tensor) -> BarDistribution:
        """The distribution of ``loc + scale * Y``; the Jacobian enters through the widths."""
        scale = torch.as_tensor(scale, dtype=torch.float64, device=self.borders.device)
        if scale.numel() != 1 or not bool(scale > 0):
            raise ValueError(f"scale must be a positive scalar, got {scale}")
        # float64, so that a large offset (y in the 1e12s) keeps the bars distinct
        borders = self.borders.double() * scale + loc
        if borders.dtype != self.borders.dtype or not bool((borders[1:] > borders[:-1]).all()):
            return self._with(borders)  # the constructor converts, or says what is wrong
        moved = copy.copy(self)  # the masses and their cumulative sums carry over
        for name in _BORDER_CACHES:
            moved.__dict__.pop(name, None)
        moved.borders = borders
        return moved

    def expand(self, batch_shape: torch.Size, _instance: object = None) -> BarDistribution:
        batch_shape = torch.Size(batch_shape)
        if self._from_probs:
            return BarDistribution(self.borders, probs=self.probs.expand(*batch_shape, self.n_bars))
        return BarDistribution(self.borders, self.logits.expand(*batch_shape, self.n_bars))

    def __getitem__(self, index: object) -> BarDistribution:
        """Index the batch like a tensor: ``dist[0]``, ``dist[:, :5]``."""
        return self._with(self.borders, index)


@cache
def _block_width_for(n_bars: int) -> int:
    """The divisor of `n_bars` closest to its square root (25 for 1000 bars, 1 for a prime)."""
    root = math.sqrt(n_bars)
    return min((d for d in range(1, n_bars + 1) if n_bars % d == 0), key=lambda d: abs(d - root))


@register_kl(BarDistribution, BarDistribution)
def _kl_bar_bar(p: BarDistribution, q: BarDistribution) -> Tensor:
    """Exact KL(p ‖ q) for bar distributions on the same borders: a sum over bucket masses.

    Inside each bucket both densities have the same shape: uniform on an inner bucket, and a
    half-normal on a tail whose scale depends only on the borders. Their ratio is therefore
    the constant P_i / Q_i there, and ``KL = Σ_i P_i (log P_i - log Q_i)``.
    """
    if p.borders.shape != q.borders.shape or not torch.equal(p.borders, q.borders.to(p.borders)):
        raise ValueError(
            "the closed-form KL needs both bar distributions on the same borders; "
            "build them from the same model (or the same `borders` tensor)"
        )
    log_p, log_q = p.log_probs, q.log_probs.to(p.log_probs.dtype)
    return torch.where(log_p.exp() > 0, log_p.exp() * (log_p - log_q), 0.0).sum(-1)  # 0 log 0 = 0
