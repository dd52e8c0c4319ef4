"""The freeze-thaw GP oracle (block form) against dense joint-Gaussian conditioning in numpy.

The independent computation builds the full (N + M) × (N + M) covariance of the joint GP
over (configuration, epoch) rows with scikit-learn's kernels and a hand-written
exponential-decay kernel, then conditions with numpy's linear algebra and scores the
marginal likelihood with scipy. It shares no code with `pfnkit.reference.freeze_thaw`.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.gaussian_process import kernels as sk

from pfnkit.reference.freeze_thaw import (
    FreezeThawHyperparameters,
    epoch_kernel,
    freeze_thaw_log_marginal_likelihood,
    freeze_thaw_predictive,
    freeze_thaw_predictive_batch,
)
from tests.conftest import FLOAT64_ATOL

QUADRATURE_RTOL = 1e-8  # scipy quad of the Gamma mixture of exponentials
DENSE_RTOL = 1e-8  # block form vs dense solve: float64, different factorisations of one matrix
EXTRAPOLATION_ATOL = 1e-3  # a noiseless curve's value beyond what was seen (σ_n = σ_g = 1e-4)

HYPERS = [
    FreezeThawHyperparameters(
        mean=0.4,
        lengthscale=0.5,
        outputscale=0.02,
        curve_scale=0.03,
        alpha=1.0,
        beta=0.1,
        noise=1e-4,
    ),  # fmt: skip
    FreezeThawHyperparameters(
        mean=-1.0,
        lengthscale=[0.2, 0.9, 0.4],
        outputscale=1.5,
        curve_scale=0.5,
        alpha=2.5,
        beta=0.7,
        noise=0.05,
        kernel="rbf",
    ),  # fmt: skip
    FreezeThawHyperparameters(
        mean=0.0,
        lengthscale=0.3,
        outputscale=0.3,
        curve_scale=1.0,
        alpha=0.5,
        beta=2.0,
        noise=1e-3,
        kernel="matern12",
    ),  # fmt: skip
    FreezeThawHyperparameters(
        mean=0.1,
        lengthscale=0.4,
        outputscale=0.02,
        curve_scale=0.01,
        alpha=1.0,
        beta=0.05,
        noise=1e-4,
        amplitude_mean=0.6,
        amplitude_var=0.09,
    ),  # fmt: skip
    FreezeThawHyperparameters(
        mean=0.3,
        lengthscale=[0.3, 0.6],
        outputscale=0.1,
        curve_scale=0.2,
        alpha=2.0,
        beta=0.3,
        noise=1e-2,
        kernel="matern32",
        amplitude_mean=-0.4,
        amplitude_var=0.5,
    ),  # fmt: skip
]


def _sk_config_kernel(hyper: FreezeThawHyperparameters, d: int) -> sk.Kernel:
    ls = np.broadcast_to(hyper.lengthscale.numpy(), (d,)).copy()
    nu = {"rbf": None, "matern12": 0.5, "matern32": 1.5, "matern52": 2.5}[hyper.kernel]
    base = sk.RBF(ls) if nu is None else sk.Matern(ls, nu=nu)
    return sk.ConstantKernel(hyper.outputscale) * base


def _dense_cov(a: np.ndarray, b: np.ndarray, hyper: FreezeThawHyperparameters) -> np.ndarray:
    """σ_f² k_x(x, x') + [x = x'] (σ_g² (β / (s + s' + β))^α + s_a² φ(s) φ(s')) for rows
    (config..., s), with φ(s) = E[e^{-λs}] = ∫ e^{-λs} Gamma(λ | α, β) dλ by quadrature."""
    d = a.shape[1] - 1
    k_x = _sk_config_kernel(hyper, d)(a[:, :d], b[:, :d])
    same = np.all(a[:, None, :d] == b[None, :, :d], axis=-1)
    s_sum = a[:, None, d] + b[None, :, d]
    k_t = hyper.curve_scale * (hyper.beta / (s_sum + hyper.beta)) ** hyper.alpha
    amplitude = hyper.amplitude_var * np.outer(_basis(a[:, d], hyper), _basis(b[:, d], hyper))
    return k_x + same * (k_t + amplitude)


def _basis(s: np.ndarray, hyper: FreezeThawHyperparameters) -> np.ndarray:
    """φ(s) = E[e^{-λs}] for λ ~ Gamma(α, rate β), by scipy quadrature (no closed form used)."""

    if hyper.amplitude_mean == 0 and hyper.amplitude_var == 0:
        return np.zeros(len(s))  # the paper's model: φ is never used
    return np.array([_basis_at(hyper.alpha, hyper.beta, float(v)) for v in s])


@functools.cache
def _basis_at(alpha: float, beta: float, s: float) -> float:
    from scipy import integrate

    gamma = stats.gamma(a=alpha, scale=1.0 / beta)
    integrand = lambda lam: np.exp(-lam * s) * gamma.pdf(lam)  # noqa: E731
    return integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-12)[0]


def _dense_mean(rows: np.ndarray, hyper: FreezeThawHyperparameters) -> np.ndarray:
    return hyper.mean + hyper.amplitude_mean * _basis(rows[:, -1], hyper)


def _task(seed: int, d: int, n_configs: int = 6, max_epoch: int = 12) -> tuple[np.ndarray, ...]:
    """Curves observed up to random epochs (some not at all), shuffled; queries everywhere."""
    rng = np.random.default_rng(seed)
    configs = rng.uniform(0, 1, (n_configs, d))
    ctx, qry = [], []
    for c in range(n_configs):
        seen = int(rng.integers(0, max_epoch))
        for t in range(1, max_epoch + 1):
            (ctx if t <= seen else qry).append([*configs[c], t / max_epoch])
    ctx, qry = np.array(ctx), np.array(qry)
    qry = np.concatenate([qry, ctx[:3]])  # also already-observed cells
    y = 0.5 + 0.3 * rng.standard_normal(len(ctx))
    perm = rng.permutation(len(ctx))
    return ctx[perm], y[perm], qry


def _dense_predictive(ctx, y, qry, hyper, observed=True) -> tuple[np.ndarray, np.ndarray]:
    k_cc = _dense_cov(ctx, ctx, hyper) + hyper.noise * np.eye(len(ctx))
    k_qc = _dense_cov(qry, ctx, hyper)
    k_qq = np.diag(_dense_cov(qry, qry, hyper)) + (hyper.noise if observed else 0.0)
    mean = _dense_mean(qry, hyper) + k_qc @ np.linalg.solve(k_cc, y - _dense_mean(ctx, hyper))
    var = k_qq - np.einsum("mn,nm->m", k_qc, np.linalg.solve(k_cc, k_qc.T))
    return mean, var


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("observed", [True, False])
@pytest.mark.parametrize("index", range(len(HYPERS)))
def test_block_form_matches_dense_conditioning(index: int, observed: bool) -> None:
    hyper = HYPERS[index]
    d = hyper.lengthscale.numel() if hyper.lengthscale.numel() > 1 else 2
    ctx, y, qry = _task(index, d)
    pred = freeze_thaw_predictive(_t(ctx), _t(y), _t(qry), hyper, observed=observed)
    mean, var = _dense_predictive(ctx, y, qry, hyper, observed)
    np.testing.assert_allclose(pred.mean.numpy(), mean, rtol=DENSE_RTOL, atol=DENSE_RTOL)
    np.testing.assert_allclose(pred.variance.numpy(), var, rtol=DENSE_RTOL, atol=DENSE_RTOL)


@pytest.mark.parametrize("index", range(len(HYPERS)))
def test_log_marginal_likelihood_matches_scipy(index: int) -> None:
    hyper = HYPERS[index]
    d = hyper.lengthscale.numel() if hyper.lengthscale.numel() > 1 else 2
    ctx, y, _ = _task(10 + index, d)
    cov = _dense_cov(ctx, ctx, hyper) + hyper.noise * np.eye(len(ctx))
    expected = stats.multivariate_normal(_dense_mean(ctx, hyper), cov).logpdf(y)
    got = float(freeze_thaw_log_marginal_likelihood(_t(ctx), _t(y), hyper))
    assert got == pytest.approx(expected, rel=DENSE_RTOL)


def test_empty_context_gives_the_prior() -> None:
    hyper = HYPERS[0]
    qry = torch.tensor([[0.2, 0.3, 0.5], [0.9, 0.1, 1.0]], dtype=torch.float64)
    pred = freeze_thaw_predictive(
        torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0), qry, hyper
    )
    s = qry[:, -1]
    expected_var = hyper.outputscale + epoch_kernel(s, s, hyper) + hyper.noise
    torch.testing.assert_close(pred.mean, torch.full((2,), hyper.mean, dtype=torch.float64))
    torch.testing.assert_close(pred.variance, expected_var, atol=FLOAT64_ATOL, rtol=0)
    zero = torch.zeros(0, 3, dtype=torch.float64)
    lml = freeze_thaw_log_marginal_likelihood(zero, torch.zeros(0, dtype=torch.float64), hyper)
    assert float(lml) == 0.0


def test_epoch_kernel_is_the_gamma_mixture_of_exponentials() -> None:
    """k_t(s, s') = E_λ[e^{-λ s} e^{-λ s'}], λ ~ Gamma(α, rate β), by quadrature."""
    from scipy import integrate

    hyper = HYPERS[1]
    gamma = stats.gamma(a=hyper.alpha, scale=1.0 / hyper.beta)
    for s1, s2 in [(0.1, 0.1), (0.3, 0.9), (1.0, 1.0)]:

        def integrand(lam: float, total: float = s1 + s2) -> float:
            return np.exp(-lam * total) * gamma.pdf(lam)

        value, _ = integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-12)
        s1_t, s2_t = torch.tensor(s1, dtype=torch.float64), torch.tensor(s2, dtype=torch.float64)
        got = float(epoch_kernel(s1_t, s2_t, hyper)) / hyper.curve_scale
        assert got == pytest.approx(value, rel=QUADRATURE_RTOL)


def test_batch_equals_loop_and_context_order_is_irrelevant() -> None:
    hyper = HYPERS[0]
    tasks = [_task(20 + i, 2) for i in range(3)]
    n = min(len(c) for c, _, _ in tasks)
    m = min(len(q) for _, _, q in tasks)
    x_ctx = torch.stack([_t(c[:n]) for c, _, _ in tasks])
    y_ctx = torch.stack([_t(y[:n]) for _, y, _ in tasks])
    x_qry = torch.stack([_t(q[:m]) for _, _, q in tasks])
    batch = freeze_thaw_predictive_batch(x_ctx, y_ctx, x_qry, hyper)
    for i in range(3):
        one = freeze_thaw_predictive(x_ctx[i], y_ctx[i], x_qry[i], hyper)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(i))
        shuffled = freeze_thaw_predictive(x_ctx[i, perm], y_ctx[i, perm], x_qry[i], hyper)
        for pred in (one, shuffled):
            torch.testing.assert_close(batch.mean[i], pred.mean, atol=FLOAT64_ATOL, rtol=0)
            torch.testing.assert_close(batch.variance[i], pred.variance, atol=FLOAT64_ATOL, rtol=0)


def test_a_long_curve_pins_its_own_asymptote() -> None:
    """A curve f + a φ(s) seen on s <= 0.5 is extrapolated to s = 1 and to its asymptote f.

    With curve noise σ_g² and observation noise tiny, the curve is the model's mean shape
    with a known asymptote f and amplitude a (both away from their prior means), so its
    value at s = 1 is f + a φ(1) and far beyond it f; φ comes from scipy quadrature here.
    """
    hyper = FreezeThawHyperparameters(mean=0.4, lengthscale=0.5, outputscale=0.02,
                                      curve_scale=1e-8, alpha=1.5, beta=0.3, noise=1e-8,
                                      amplitude_mean=0.6, amplitude_var=0.09)  # fmt: skip
    f, a = 0.12, 0.45
    s = np.arange(1, 51) / 100  # epoch fractions 0.01..0.5: the second half is never seen
    y = f + a * _basis(s, hyper)
    x_ctx = np.stack([np.full_like(s, 0.5), np.full_like(s, 0.5), s], axis=-1)
    qry = np.array([[0.5, 0.5, 1.0], [0.5, 0.5, 1e4], [0.5, 0.5, 0.02], [0.1, 0.9, 1.0]])
    pred = freeze_thaw_predictive(_t(x_ctx), _t(y), _t(qry), hyper)
    at_one = f + a * _basis_at(hyper.alpha, hyper.beta, 1.0)
    assert abs(float(pred.mean[0]) - at_one) < EXTRAPOLATION_ATOL
    assert abs(float(pred.mean[1]) - f) < EXTRAPOLATION_ATOL
    prior = freeze_thaw_predictive(_t(x_ctx[:0]), _t(y[:0]), _t(qry[:1]), hyper)
    assert abs(float(prior.mean[0]) - at_one) > 10 * EXTRAPOLATION_ATOL  # the data did it
    assert float(pred.variance[2]) < 2 * hyper.noise  # an observed cell: noise only, nearly
    assert float(pred.variance[3]) > float(pred.variance[0])  # an unseen config is uncertain


def test_bad_inputs_are_refused() -> None:
    hyper = HYPERS[1]  # three lengthscales
    ctx, y, qry = _task(0, 2)
    with pytest.raises(ValueError, match="lengthscales"):
        freeze_thaw_predictive(_t(ctx), _t(y), _t(qry), hyper)
    with pytest.raises(ValueError, match="epoch fraction"):
        freeze_thaw_predictive(_t(ctx[:, 0]), _t(y), _t(qry), HYPERS[0])
    bad = ctx.copy()
    bad[0, -1] = -0.5
    with pytest.raises(ValueError, match=">= 0"):
        freeze_thaw_predictive(_t(bad), _t(y), _t(qry), HYPERS[0])
    y_nan = y.copy()
    y_nan[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        freeze_thaw_predictive(_t(ctx), _t(y_nan), _t(qry), HYPERS[0])
    with pytest.raises(ValueError, match="positive"):
        FreezeThawHyperparameters(mean=0.0, lengthscale=0.5, outputscale=1.0, curve_scale=1.0,
                                  alpha=-1.0, beta=1.0, noise=0.1)  # fmt: skip
    with pytest.raises(ValueError, match="amplitude_var"):
        FreezeThawHyperparameters(mean=0.0, lengthscale=0.5, outputscale=1.0, curve_scale=1.0,
                                  alpha=1.0, beta=1.0, noise=0.1, amplitude_var=-0.1)  # fmt: skip
    for hyper in (HYPERS[1], HYPERS[3]):
        round_trip = FreezeThawHyperparameters.from_dict(hyper.to_dict())
        assert round_trip.to_dict() == hyper.to_dict()
