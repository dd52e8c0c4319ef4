"""BarDistribution's cached summaries against the formulas they replaced, at float64 identity.

The reference below is the implementation before the summaries were cached (pfnkit 0.1.0:
every call re-normalised the logits and re-summed the bars), copied here in substance and
written as plain functions of (borders, logits). The cached version must give the same
numbers, tails included, whatever order the summaries are asked for in, whether the masses
come as logits or as probs, and after `affine` and indexing have moved them.

One difference is a fix: the reference located a level among the masses left of each bar,
``cumsum - probs``, where a left tail lighter than an ulp of the next cumulative mass
rounds away, so levels below that tail's mass (0 included) got the tail's border instead
of a tail quantile. The cached version searches the cumulative sums themselves; that case
is checked against scipy's half-normal instead.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from pfnkit.distributions import BarDistribution
from tests.conftest import FLOAT64_ATOL

DTYPE = torch.float64
FLOAT64_RTOL = 1e-12  # relative float64 identities: values far from 0 (deep tails)
OFFSET_RTOL = 1e-9  # identities after a 1e6 offset, which leaves bar positions 1e-10 apart
_HALFNORMAL_MEAN = math.sqrt(2.0 / math.pi)
_HALFNORMAL_VAR = 1.0 - 2.0 / math.pi
LEVELS = (1e-12, 1e-6, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1 - 1e-9)


# ------------------------------------------------------------- the reference (before)
def ref_bucket_moments(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = b[1:] - b[:-1]
    s_left, s_right = w[0], w[-1]
    means = torch.cat([(b[1] - s_left * _HALFNORMAL_MEAN).reshape(1), ((b[:-1] + b[1:]) / 2)[1:-1],
                       (b[-2] + s_right * _HALFNORMAL_MEAN).reshape(1)])  # fmt: skip
    variances = torch.cat([(s_left**2 * _HALFNORMAL_VAR).reshape(1), (w**2 / 12)[1:-1],
                           (s_right**2 * _HALFNORMAL_VAR).reshape(1)])  # fmt: skip
    return means, variances


def ref_mean(b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    means, _ = ref_bucket_moments(b)
    return (F.log_softmax(logits, dim=-1).exp() * means).sum(-1)


def ref_variance(b: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    means, variances = ref_bucket_moments(b)
    probs = F.log_softmax(logits, dim=-1).exp()
    mean = (probs * means).sum(-1, keepdim=True)
    return (probs * (variances + (means - mean) ** 2)).sum(-1)


def ref_bucket_index(b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    idx = torch.bucketize(y.contiguous(), b[1:-1].contiguous(), right=True)
    return torch.where(y == b[1], torch.zeros_like(idx), idx)


def ref_cdf(b: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y (batch...) against logits (batch..., K)."""
    probs = F.log_softmax(logits, dim=-1).exp().expand(*y.shape, logits.shape[-1])
    idx = ref_bucket_index(b, y).unsqueeze(-1)
    p = probs.gather(-1, idx).squeeze(-1)
    c = (torch.cumsum(probs, dim=-1) - probs).gather(-1, idx).squeeze(-1)
    idx = idx.squeeze(-1)
    w = b[1:] - b[:-1]
    s_left, s_right = w[0], w[-1]
    inner = ((y - b[idx]) / w[idx]).clamp(0, 1)
    left = torch.erfc((b[1] - y).clamp_min(0) / (s_left * math.sqrt(2.0)))
    right = torch.erf((y - b[-2]).clamp_min(0) / (s_right * math.sqrt(2.0)))
    frac = torch.where(idx == 0, left, inner)
    frac = torch.where(idx == logits.shape[-1] - 1, right, frac)
    return (c + p * frac).clamp(0, 1)


def ref_quantiles(b: torch.Tensor, logits: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(batch..., L) quantiles at `levels` (L,), as icdf computed them."""
    q = levels.expand(*logits.shape[:-1], -1)
    probs = F.log_softmax(logits, dim=-1).exp()
    cum = torch.cumsum(probs, dim=-1) - probs
    idx = torch.searchsorted(cum[..., 1:].contiguous(), q.contiguous(), right=True)
    p = probs.gather(-1, idx).clamp_min(torch.finfo(DTYPE).tiny)
    c = cum.gather(-1, idx)
    w = b[1:] - b[:-1]
    s_left, s_right = w[0], w[-1]
    frac = ((q - c) / p).clamp(0, 1)
    inner = b[idx] + frac * w[idx]
    left = b[1] + s_left * torch.special.ndtri(frac / 2)
    right = b[-2] - s_right * torch.special.ndtri(((1 - q) / p).clamp(0, 1) / 2)
    out = torch.where(idx == 0, left, inner)
    return torch.where(idx == logits.shape[-1] - 1, right, out)


# ------------------------------------------------------------------------ fixtures
def make_case(n_bars: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uneven borders and (3, 4, K) logits: sharp and flat rows, heavy and starved tails."""
    gen = torch.Generator().manual_seed(seed)
    widths = torch.exp(0.7 * torch.randn(n_bars, generator=gen, dtype=DTYPE))
    borders = torch.cat([torch.zeros(1, dtype=DTYPE), widths.cumsum(0)]) - 3.0
    spread = torch.tensor([0.1, 1.0, 4.0], dtype=DTYPE).reshape(3, 1, 1)
    logits = spread * torch.randn(3, 4, n_bars, generator=gen, dtype=DTYPE)
    logits[0, 0, 0] = logits[0, 1, -1] = 12.0  # a tail holding most of the mass
    logits[1, 0, 0] = logits[1, 1, -1] = -40.0  # a tail starved to ~1e-18
    return borders, logits


def probe_values(b: torch.Tensor) -> torch.Tensor:
    """(P, 1, 1) values: deep in both tails, on every border, and inside the bars."""
    s_left, s_right = b[1] - b[0], b[-1] - b[-2]
    inner = b[1:-2] + 0.37 * (b[2:-1] - b[1:-2])
    tails = torch.stack([b[1] - 30 * s_left, b[1] - 2 * s_left, b[-2] + 2 * s_right,
                         b[-2] + 8 * s_right])  # fmt: skip
    return torch.cat([tails, b[1:-1], inner]).reshape(-1, 1, 1)


def close(got: torch.Tensor, want: torch.Tensor, rtol: float = FLOAT64_RTOL) -> None:
    torch.testing.assert_close(got, want, atol=FLOAT64_ATOL, rtol=rtol)


# --------------------------------------------------------------------------- tests
# cdf and icdf search blocks of bars: of 1 bar for 3 and 5 bars, of 6 for 48, of 25 for 1000
@pytest.mark.parametrize("n_bars", [3, 5, 48, 1000])
def test_summaries_equal_the_uncached_formulas(n_bars: int) -> None:
    b, logits = make_case(n_bars, seed=n_bars)
    dist = BarDistribution(b, logits)
    levels = torch.tensor(LEVELS, dtype=DTYPE)
    y = probe_values(b)
    close(dist.mean, ref_mean(b, logits))
    close(dist.variance, ref_variance(b, logits))
    close(dist.cdf(y), ref_cdf(b, logits, y.expand(-1, 3, 4)))
    close(dist.quantiles(levels), ref_quantiles(b, logits, levels))
    close(dist.icdf(levels.reshape(-1, 1, 1)), ref_quantiles(b, logits, levels).movedim(-1, 0))
    close(dist.median, ref_quantiles(b, logits, levels[5:6]).squeeze(-1))
    ends = dist.quantiles(torch.tensor([0.0, 1.0], dtype=DTYPE))
    assert (ends[..., 0] == -math.inf).all() and (ends[..., 1] == math.inf).all()


def test_a_starved_left_tail_keeps_its_quantiles() -> None:
    b, logits = make_case(48, seed=5)
    dist = BarDistribution(b, logits)[1, 0]  # its left tail holds about 1e-18
    p0 = float(dist.probs[0])
    assert 0 < p0 < 1e-16
    levels = torch.tensor([1e-300, 1e-30, 0.5 * p0], dtype=DTYPE)
    s_left = float(b[1] - b[0])
    expected = [float(b[1]) - s_left * stats.halfnorm.isf(q / p0) for q in levels.tolist()]
    torch.testing.assert_close(dist.quantiles(levels), torch.tensor(expected, dtype=DTYPE),
                               atol=FLOAT64_ATOL, rtol=FLOAT64_RTOL)  # fmt: skip


@pytest.mark.parametrize("n_bars", [5, 1000])
def test_the_order_of_requests_and_the_form_of_the_masses_do_not_matter(n_bars: int) -> None:
    b, logits = make_case(n_bars, seed=7)
    levels = torch.tensor(LEVELS, dtype=DTYPE)
    y = probe_values(b)
    first = BarDistribution(b, logits)  # summaries first, then the cdf and quantiles
    summaries = (first.mean, first.variance, first.cdf(y), first.quantiles(levels))
    second = BarDistribution(b, logits)  # the other way round
    quantiles, cdf = second.quantiles(levels), second.cdf(y)
    for got, want in zip((second.mean, second.variance, cdf, quantiles), summaries, strict=True):
        assert torch.equal(got, want)
    from_probs = BarDistribution(b, probs=torch.softmax(logits, dim=-1))
    for got, want in zip((from_probs.mean, from_probs.variance, from_probs.cdf(y),
                          from_probs.quantiles(levels)), summaries, strict=True):  # fmt: skip
        close(got, want)
    close(from_probs.log_prob(y), first.log_prob(y))
    close(from_probs.entropy(), first.entropy())
    assert torch.equal(from_probs.mode, first.mode)
    close(from_probs.logits, F.log_softmax(logits, dim=-1))


def test_affine_and_indexing_recompute_what_the_borders_change() -> None:
    b, logits = make_case(48, seed=3)
    levels = torch.tensor(LEVELS[2:-1], dtype=DTYPE)
    y = probe_values(b)
    for dist in (BarDistribution(b, logits), BarDistribution(b, probs=torch.softmax(logits, -1))):
        mean, variance, quantiles = dist.mean, dist.variance, dist.quantiles(levels)  # cached
        moved = dist.affine(1e6, 3.0)
        close(moved.mean, 1e6 + 3.0 * mean, OFFSET_RTOL)
        close(moved.variance, 9.0 * variance, OFFSET_RTOL)
        close(moved.quantiles(levels), 1e6 + 3.0 * quantiles, OFFSET_RTOL)
        torch.testing.assert_close(moved.cdf(1e6 + 3.0 * y), dist.cdf(y), atol=OFFSET_RTOL, rtol=0)
        close(moved.log_prob(1e6 + 3.0 * y), dist.log_prob(y) - math.log(3.0), OFFSET_RTOL)
        assert torch.equal(dist.mean, mean)  # the source keeps its own summaries
        close(dist[1, 2].mean, mean[1, 2])
        close(dist[:, 1:].quantiles(levels), quantiles[:, 1:])
        close(dist.expand((2, 3, 4)).mean[1], mean)


def test_quantiles_at_many_levels_equal_one_level_at_a_time() -> None:
    b, logits = make_case(1000, seed=11)
    dist = BarDistribution(b, logits)
    levels = torch.linspace(0.001, 0.999, 101, dtype=DTYPE)
    each = torch.stack([dist.icdf(level) for level in levels], dim=-1)
    close(dist.quantiles(levels), each)


def test_probs_must_be_given_alone_and_normalised() -> None:
    b = torch.linspace(-1, 1, 6, dtype=DTYPE)
    probs = torch.full((5,), 0.2, dtype=DTYPE)
    with pytest.raises(ValueError, match="exactly one of logits and probs"):
        BarDistribution(b, probs.log(), probs=probs)
    with pytest.raises(ValueError, match="exactly one of logits and probs"):
        BarDistribution(b)
    with pytest.raises(ValueError, match="probs"):
        BarDistribution(b, probs=2 * probs)  # torch's simplex check
    assert BarDistribution(b, probs=probs).n_bars == 5
