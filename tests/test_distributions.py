"""BarDistribution and borders_from_samples against independent scipy/quadrature oracles."""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from pfnkit.distributions import BarDistribution
from tests.conftest import FLOAT64_ATOL, STANDARD_ERRORS

# Tolerances, one per class of comparison, beside the shared FLOAT64_ATOL (identities in
# float64: batch vs loop, round trips, affine maps) and STANDARD_ERRORS (counts, quantiles).
FLOAT64_RTOL = 1e-9  # relative float64 identities, e.g. left-tail masses of 1e-200
CDF_RESOLUTION = 1e-15  # a cdf near 1 is known to a few ulps, so icdf(cdf(y)) errs by this / p(y)
QUADRATURE_ATOL = 1e-8  # closed forms vs scipy.integrate.quad
GRID_ATOL = 1e-6  # mode vs a dense grid whose points come within 1e-9 of the peak
KS_PVALUE_MIN = 1e-3  # statistical: fixed seeds, so a pass is deterministic

DTYPE = torch.float64
QUAD_KWARGS = {"epsabs": 1e-14, "epsrel": 1e-12, "limit": 200}

# Points in units of tail scales beyond b_1 (left) and b_{K-1} (right).
LEFT_TAIL_DEPTHS = (0.01, 0.5, 1.0, 3.0, 8.0, 15.0, 30.0)
# 1 - F(y) in the right tail is a difference of numbers near 1, so icdf(cdf(y)) loses
# relative precision like eps / p(y) (see CDF_RESOLUTION); beyond ~5 scales that bound is loose.
RIGHT_TAIL_DEPTHS = (0.01, 0.5, 1.0, 3.0, 5.0)
Q_GRID = np.concatenate(
    [
        np.logspace(-9, -3, 7),
        np.linspace(0.01, 0.99, 25),
        1 - np.logspace(-3, -9, 7),
    ]
)


# ------------------------------------------------------------------------------ oracles
def make_borders(n_bars: int, seed: int) -> torch.Tensor:
    """Uneven borders with deliberately different outer widths (tail scales)."""
    gen = torch.Generator().manual_seed(seed)
    widths = torch.exp(0.5 * torch.randn(n_bars, generator=gen, dtype=DTYPE))
    widths[0], widths[-1] = 0.4, 1.7
    return torch.cat([torch.zeros(1, dtype=DTYPE), widths.cumsum(0)]) - 1.0


def make_dist(n_bars: int, seed: int, batch_shape: tuple[int, ...] = ()) -> BarDistribution:
    gen = torch.Generator().manual_seed(seed + 1000)
    logits = 1.5 * torch.randn(*batch_shape, n_bars, generator=gen, dtype=DTYPE)
    return BarDistribution(make_borders(n_bars, seed), logits)


def ref_params(dist: BarDistribution) -> tuple[np.ndarray, np.ndarray]:
    """Borders and bucket masses as numpy, the masses via scipy's softmax."""
    return dist.borders.numpy(), special.softmax(dist.logits.numpy(), axis=-1)


def ref_logpdf(y: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Hand-built mixture: p_0 HalfNormal reflected at b_1, uniforms, p_K HalfNormal at b_{K-1}."""
    y = np.asarray(y, dtype=np.float64)
    out = np.full(y.shape, -np.inf)
    left, right = y < b[1], y >= b[-2]
    out[left] = np.log(p[0]) + stats.halfnorm.logpdf(b[1] - y[left], scale=b[1] - b[0])
    out[right] = np.log(p[-1]) + stats.halfnorm.logpdf(y[right] - b[-2], scale=b[-1] - b[-2])
    for k in range(1, len(p) - 1):
        inside = (y >= b[k]) & (y < b[k + 1])
        out[inside] = np.log(p[k]) - np.log(b[k + 1] - b[k])
    return out


def ref_cdf(y: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    out = p[0] * stats.halfnorm.sf(b[1] - y, scale=b[1] - b[0])
    out = out + p[-1] * stats.halfnorm.cdf(y - b[-2], scale=b[-1] - b[-2])
    for k in range(1, len(p) - 1):
        out = out + p[k] * np.clip((y - b[k]) / (b[k + 1] - b[k]), 0.0, 1.0)
    return out


def ref_icdf(q: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(p)])
    out = np.empty_like(q)
    for i, qi in enumerate(q):
        if qi < p[0]:
            out[i] = b[1] - (b[1] - b[0]) * stats.halfnorm.isf(qi / p[0])
        elif qi > edges[-2]:
            out[i] = b[-2] + (b[-1] - b[-2]) * stats.halfnorm.isf((1 - qi) / p[-1])
        else:
            k = int(np.searchsorted(edges, qi, side="right")) - 1
            out[i] = b[k] + (qi - edges[k]) / p[k] * (b[k + 1] - b[k])
    return out


def density_fn(dist: BarDistribution) -> Callable[[float], float]:
    return lambda y: float(dist.log_prob(torch.tensor(y, dtype=DTYPE)).exp())


def quad_piecewise(f: Callable[[float], float], lo: float, hi: float, breaks: np.ndarray) -> float:
    """∫_lo^hi f with the interval split at every border inside it (infinite ends allowed)."""
    cuts = [lo, *[x for x in breaks if lo < x < hi], hi]
    return sum(integrate.quad(f, a, c, **QUAD_KWARGS)[0] for a, c in pairwise(cuts))


def probe_points(dist: BarDistribution) -> np.ndarray:
    """Points deep in both tails and strictly inside every inner bucket (never on a border)."""
    b = dist.borders.numpy()
    s_left, s_right = b[1] - b[0], b[-1] - b[-2]
    inner = [b[k] + f * (b[k + 1] - b[k]) for k in range(1, len(b) - 2) for f in (0.13, 0.71)]
    left = [b[1] - d * s_left for d in LEFT_TAIL_DEPTHS]
    right = [b[-2] + d * s_right for d in RIGHT_TAIL_DEPTHS]
    return np.array(left + inner + right)


# --------------------------------------------------------------------------- the density
@pytest.mark.parametrize("n_bars", [5, 8, 48])
def test_log_prob_matches_scipy_mixture(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    b, p = ref_params(dist)
    y = probe_points(dist)
    got = dist.log_prob(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, ref_logpdf(y, b, p), rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("n_bars", [5, 8, 48])
def test_density_integrates_to_one_with_bucket_masses(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    b, p = ref_params(dist)
    f = density_fn(dist)
    edges = np.concatenate([[-np.inf], b[1:-1], [np.inf]])
    masses = np.array([quad_piecewise(f, lo, hi, b) for lo, hi in pairwise(edges)])
    np.testing.assert_allclose(masses, p, atol=QUADRATURE_ATOL)
    assert abs(masses.sum() - 1.0) < QUADRATURE_ATOL
    # Mass beyond 12 tail scales is the half-normal's, not lost or duplicated.
    far_left = quad_piecewise(f, -np.inf, b[1] - 12 * (b[1] - b[0]), b)
    far_right = quad_piecewise(f, b[-2] + 3 * (b[-1] - b[-2]), np.inf, b)
    assert far_left == pytest.approx(p[0] * math.erfc(12 / math.sqrt(2)), rel=1e-6)
    assert far_right == pytest.approx(p[-1] * math.erfc(3 / math.sqrt(2)), rel=1e-6)


@pytest.mark.parametrize("n_bars", [5, 8])
def test_cdf_matches_scipy_mixture_and_quadrature(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    b, p = ref_params(dist)
    y = probe_points(dist)
    got = dist.cdf(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, ref_cdf(y, b, p), rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)
    f = density_fn(dist)
    # y is sorted, so the integral up to each point is a running sum of pieces between points.
    ends = np.concatenate([[-np.inf], y])
    integral = np.cumsum([quad_piecewise(f, lo, hi, b) for lo, hi in pairwise(ends)])
    # Relative in the deep left tail (masses down to ~1e-197), absolute elsewhere.
    np.testing.assert_allclose(got, integral, rtol=1e-8, atol=QUADRATURE_ATOL)
    assert float(dist.cdf(torch.tensor(-math.inf, dtype=DTYPE))) == 0.0
    assert float(dist.cdf(torch.tensor(math.inf, dtype=DTYPE))) == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("n_bars", [5, 48])
def test_cdf_derivative_is_density(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    y = torch.from_numpy(probe_points(dist)).requires_grad_(True)
    (grad,) = torch.autograd.grad(dist.cdf(y).sum(), y)
    density = dist.log_prob(y.detach()).exp()
    torch.testing.assert_close(grad, density, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


# ---------------------------------------------------------------------- quantile function
@pytest.mark.parametrize("n_bars", [5, 8, 48])
def test_icdf_matches_closed_form_and_inverts_cdf(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    b, p = ref_params(dist)
    y = dist.icdf(torch.from_numpy(Q_GRID))
    np.testing.assert_allclose(y.numpy(), ref_icdf(Q_GRID, b, p), rtol=1e-10, atol=1e-10)
    q_back = dist.cdf(y).numpy()
    np.testing.assert_allclose(q_back, Q_GRID, rtol=0, atol=FLOAT64_ATOL)
    low = Q_GRID < 1e-2  # left-tail levels keep full relative precision
    np.testing.assert_allclose(q_back[low], Q_GRID[low], rtol=FLOAT64_RTOL, atol=0)
    assert (y[Q_GRID < p[0]] < b[1]).all() and (y[Q_GRID > 1 - p[-1]] > b[-2]).all()


@pytest.mark.parametrize("n_bars", [5, 8, 48])
def test_cdf_then_icdf_is_identity_in_tails_and_inside(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    y = torch.from_numpy(probe_points(dist))
    error = (dist.icdf(dist.cdf(y)) - y).abs()
    allowed = FLOAT64_RTOL * (1 + y.abs()) + CDF_RESOLUTION / dist.log_prob(y).exp()
    assert (error <= allowed).all(), (error / allowed).max()


def test_icdf_endpoints_and_unbatched_scalar() -> None:
    dist = make_dist(6, seed=3)
    ends = dist.icdf(torch.tensor([0.0, 1.0], dtype=DTYPE))
    assert ends.tolist() == [-math.inf, math.inf]
    scalar = dist.icdf(torch.tensor(0.3, dtype=DTYPE))
    assert scalar.shape == ()
    assert float(scalar) == pytest.approx(float(dist.icdf(torch.tensor([0.3], dtype=DTYPE))[0]))


# ------------------------------------------------------------------------------ summaries
@pytest.mark.parametrize("n_bars", [5, 8, 48])
def test_mean_variance_entropy_match_quadrature(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    b = dist.borders.numpy()

    def integrands(y: float) -> np.ndarray:
        lp = float(dist.log_prob(torch.tensor(y, dtype=DTYPE)))
        p = math.exp(lp)
        return np.array([y * p, y * y * p, 0.0 if p == 0.0 else -p * lp])

    (mean, second, entropy), _ = integrate.quad_vec(
        integrands, -np.inf, np.inf, points=b, epsabs=1e-13, epsrel=1e-12, limit=500
    )
    var = second - mean**2
    assert float(dist.mean) == pytest.approx(mean, abs=QUADRATURE_ATOL)
    assert float(dist.variance) == pytest.approx(var, abs=QUADRATURE_ATOL)
    assert float(dist.entropy()) == pytest.approx(entropy, abs=QUADRATURE_ATOL)


@pytest.mark.parametrize("n_bars", [5, 48])
def test_median_is_half_quantile(n_bars: int) -> None:
    dist = make_dist(n_bars, seed=n_bars)
    median = dist.median
    b, p = ref_params(dist)
    assert float(median) == pytest.approx(float(ref_icdf(np.array([0.5]), b, p)[0]), abs=1e-10)
    assert float(dist.cdf(median)) == pytest.approx(0.5, abs=FLOAT64_ATOL)


def close_call_logits(borders: torch.Tensor, left: float, right: float) -> torch.Tensor:
    """Logits whose inner densities are all 1 (bucket 3 slightly more) and whose tail peaks,
    sqrt(2 / pi) p / s for a half-normal of scale s, are `left` and `right` times that."""
    w = borders[1:] - borders[:-1]
    logits = w.log()
    logits[3] += 1e-3
    logits[0] = math.log(left * w[0] / math.sqrt(2 / math.pi))
    logits[-1] = math.log(right * w[-1] / math.sqrt(2 / math.pi))
    return logits


@pytest.mark.parametrize(
    "peak", ["left_tail", "inner", "right_tail", "random", "inner_close", "right_close"]
)
def test_mode_has_maximal_density(peak: str) -> None:
    n_bars = 7
    borders = make_borders(n_bars, seed=11)
    logits = {
        "left_tail": torch.tensor([4.0, 0, 0, 0, 0, 0, 0], dtype=DTYPE),
        "inner": torch.tensor([0.0, 0, 0, 3, 0, 0, 0], dtype=DTYPE),
        "right_tail": torch.tensor([0.0, 0, 0, 0, 0, 0, 5], dtype=DTYPE),
        "random": torch.randn(n_bars, generator=torch.Generator().manual_seed(5), dtype=DTYPE),
        "inner_close": close_call_logits(borders, left=0.95, right=0.95),
        "right_close": close_call_logits(borders, left=0.95, right=1.05),
    }[peak]
    dist = BarDistribution(borders, logits)
    b = borders.numpy()
    near_borders = np.concatenate([b - 1e-9, b, b + 1e-9])
    grid = np.concatenate([np.linspace(b[1] - 10, b[-2] + 10, 20001), near_borders])
    grid_max = float(dist.log_prob(torch.from_numpy(grid)).max())
    at_mode = float(dist.log_prob(dist.mode))
    assert at_mode >= grid_max - FLOAT64_ATOL
    assert at_mode == pytest.approx(grid_max, abs=GRID_ATOL)
    if peak != "random":
        inner, right = (b[3] + b[4]) / 2, b[-2]
        expected = {"left_tail": b[1], "right_tail": right, "right_close": right}.get(peak, inner)
        assert float(dist.mode) == pytest.approx(expected, abs=FLOAT64_ATOL)


# ------------------------------------------------------------------------------- sampling
def test_samples_pass_ks_against_scipy_cdf() -> None:
    dist = make_dist(8, seed=8)
    b, p = ref_params(dist)
    samples = dist.sample((20000,), generator=torch.Generator().manual_seed(0)).numpy()
    assert samples.shape == (20000,)
    assert stats.kstest(samples, lambda x: ref_cdf(x, b, p)).pvalue > KS_PVALUE_MIN


def test_sample_tail_counts_within_standard_errors() -> None:
    logits = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 1.5], dtype=DTYPE)
    dist = BarDistribution(make_borders(6, seed=2), logits)
    b, p = ref_params(dist)
    s_left, s_right = b[1] - b[0], b[-1] - b[-2]
    n = 20000
    y = dist.sample((n,), generator=torch.Generator().manual_seed(1)).numpy()
    expected = {
        "below b_1": (y < b[1], p[0]),
        "above b_K-1": (y > b[-2], p[-1]),
        "2 scales below b_1": (y < b[1] - 2 * s_left, p[0] * math.erfc(2 / math.sqrt(2))),
        "2 scales above b_K-1": (y > b[-2] + 2 * s_right, p[-1] * math.erfc(2 / math.sqrt(2))),
    }
    for name, (hits, prob) in expected.items():
        se = math.sqrt(prob * (1 - prob) / n)
        assert abs(hits.mean() - prob) < STANDARD_ERRORS * se, name


def test_sample_is_reproducible_and_batched_per_element() -> None:
    dist = make_dist(6, seed=4, batch_shape=(3,))
    a = dist.sample((5000,), generator=torch.Generator().manual_seed(7))
    again = dist.sample((5000,), generator=torch.Generator().manual_seed(7))
    other = dist.sample((5000,), generator=torch.Generator().manual_seed(8))
    assert a.shape == (5000, 3)
    assert torch.equal(a, again) and not torch.equal(a, other)
    b, p = ref_params(dist)
    for i in range(3):  # each column follows its own element's distribution
        assert stats.kstest(a[:, i].numpy(), lambda x, i=i: ref_cdf(x, b, p[i])).pvalue > (
            KS_PVALUE_MIN
        )
    assert dist.sample(generator=torch.Generator().manual_seed(0)).shape == (3,)
    assert make_dist(6, seed=4, batch_shape=(3, 4)).sample((2, 5)).shape == (2, 5, 3, 4)


# ---------------------------------------------------------------------------- batch = loop
def test_batched_methods_equal_loop_over_elements() -> None:
    dist = make_dist(6, seed=9, batch_shape=(3, 4))
    gen = torch.Generator().manual_seed(3)
    y_34 = 3 * torch.randn(3, 4, generator=gen, dtype=DTYPE)
    y_534 = 3 * torch.randn(5, 3, 4, generator=gen, dtype=DTYPE)
    y_scalar = torch.tensor(-2.5, dtype=DTYPE)
    q_711 = torch.tensor([1e-9, 1e-4, 0.1, 0.5, 0.9, 1 - 1e-4, 1 - 1e-9], dtype=DTYPE)[
        :, None, None
    ]
    levels = torch.tensor([1e-6, 0.25, 0.5, 1 - 1e-6], dtype=DTYPE)

    lp_34, lp_534, lp_s = dist.log_prob(y_34), dist.log_prob(y_534), dist.log_prob(y_scalar)
    cdf_534, icdf_734 = dist.cdf(y_534), dist.icdf(q_711)
    quant = dist.quantiles(levels)
    assert lp_34.shape == (3, 4) and lp_534.shape == (5, 3, 4) and lp_s.shape == (3, 4)
    assert icdf_734.shape == (7, 3, 4) and quant.shape == (3, 4, 4)
    for i in range(3):
        for j in range(4):
            one = BarDistribution(dist.borders, dist.logits[i, j].clone())
            close = lambda got, want: torch.testing.assert_close(  # noqa: E731
                got, want, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
            )
            close(lp_34[i, j], one.log_prob(y_34[i, j]))
            close(lp_534[:, i, j], one.log_prob(y_534[:, i, j]))
            close(lp_s[i, j], one.log_prob(y_scalar))
            close(cdf_534[:, i, j], one.cdf(y_534[:, i, j]))
            close(icdf_734[:, i, j], one.icdf(q_711[:, 0, 0]))
            close(quant[i, j], one.icdf(levels))
            for name in ("mean", "variance", "median", "mode"):
                close(getattr(dist, name)[i, j], getattr(one, name))
            close(dist.entropy()[i, j], one.entropy())
            close(dist[i, j].log_prob(y_534[:, i, j]), one.log_prob(y_534[:, i, j]))


def test_expand_and_getitem() -> None:
    dist = make_dist(5, seed=1)
    wide = dist.expand((2, 3))
    assert wide.batch_shape == (2, 3)
    y = torch.tensor([-5.0, 0.3, 9.0], dtype=DTYPE)
    torch.testing.assert_close(wide.log_prob(y)[1], dist.log_prob(y), rtol=0, atol=FLOAT64_ATOL)
    batched = make_dist(5, seed=1, batch_shape=(4, 3))
    assert batched[:, 1:].batch_shape == (4, 2)
    torch.testing.assert_close(batched[2].mean, batched.mean[2], rtol=0, atol=FLOAT64_ATOL)


# ------------------------------------------------------------------------------ affine
def test_affine_transforms_density_cdf_quantiles_and_moments() -> None:
    dist = make_dist(7, seed=6, batch_shape=(2,))
    loc, scale = 1.3, 2.5
    moved = dist.affine(loc, scale)
    y = torch.from_numpy(probe_points(dist))[:, None]
    close = lambda got, want: torch.testing.assert_close(  # noqa: E731
        got, want, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL
    )
    close(moved.log_prob(loc + scale * y), dist.log_prob(y) - math.log(scale))
    close(moved.cdf(loc + scale * y), dist.cdf(y))
    q = torch.from_numpy(Q_GRID)[:, None]
    close(moved.icdf(q), loc + scale * dist.icdf(q))
    close(moved.mean, loc + scale * dist.mean)
    close(moved.variance, scale**2 * dist.variance)
    close(moved.entropy(), dist.entropy() + math.log(scale))
    close(moved.mode, loc + scale * dist.mode)
    for bad in (0.0, -1.0, [1.0, 2.0]):
        with pytest.raises(ValueError, match="positive scalar"):
            dist.affine(0.0, bad)
