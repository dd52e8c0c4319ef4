"""Exact GP oracle vs scikit-learn and closed-form linear algebra (float64)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from pfnkit.reference import (
    KERNELS,
    GaussianPredictive,
    GPHyperparameters,
    exact_gp_predictive,
    exact_gp_predictive_batch,
    fit_ml2,
    log_marginal_likelihood,
)
from tests.conftest import FLOAT64_ATOL

CROSS_IMPLEMENTATION_RTOL = 1e-6  # gpytorch vs sklearn / scipy / plain torch, all exact float64
GRADCHECK_ATOL = 1e-5  # autograd vs finite differences
HYPER_GRADCHECK_EPS = 1e-4  # finite-difference step in log-hyperparameters
HYPER_GRADCHECK_ATOL = 1e-5  # autograd vs those finite differences
ML2_LML_SLACK = 1e-3  # nats our ML-II optimum may trail sklearn's

SKLEARN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}


def _data(
    n_ctx: int, n_qry: int, n_features: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(n_ctx, n_features, generator=gen, dtype=torch.float64) * 2 - 1
    y_ctx = torch.randn(n_ctx, generator=gen, dtype=torch.float64)
    x_qry = torch.rand(n_qry, n_features, generator=gen, dtype=torch.float64) * 2 - 1
    return x_ctx, y_ctx, x_qry


def _hyper(n_features: int, kernel: str) -> GPHyperparameters:
    lengthscale = torch.linspace(0.4, 1.2, n_features, dtype=torch.float64)
    return GPHyperparameters(lengthscale=lengthscale, outputscale=1.7, noise=0.08, kernel=kernel)


def _sklearn_gp(hyper: GPHyperparameters, x: torch.Tensor, y: torch.Tensor):
    ls = hyper.lengthscale.numpy()
    if hyper.kernel == "rbf":
        base = RBF(length_scale=ls, length_scale_bounds="fixed")
    else:
        base = Matern(length_scale=ls, length_scale_bounds="fixed", nu=SKLEARN_NU[hyper.kernel])
    kernel = ConstantKernel(hyper.outputscale, "fixed") * base + WhiteKernel(hyper.noise, "fixed")
    return GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None).fit(x.numpy(), y.numpy())


def _closed_form(x_ctx, x_qry, hyper):
    """RBF gram matrices with plain torch: K_*N and K_NN + noise I."""

    def rbf(a, b):
        diff = (a[:, None, :] - b[None, :, :]) / hyper.lengthscale
        return hyper.outputscale * torch.exp(-0.5 * diff.pow(2).sum(-1))

    eye = torch.eye(x_ctx.shape[0], dtype=torch.float64)
    return rbf(x_qry, x_ctx), rbf(x_ctx, x_ctx) + hyper.noise * eye


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_features", [1, 3])
def test_predictive_matches_sklearn(kernel: str, n_features: int) -> None:
    x_ctx, y_ctx, x_qry = _data(25, 9, n_features, seed=n_features)
    hyper = _hyper(n_features, kernel)
    pred = exact_gp_predictive(x_ctx, y_ctx, x_qry, hyper)
    mean, std = _sklearn_gp(hyper, x_ctx, y_ctx).predict(x_qry.numpy(), return_std=True)
    assert pred.mean.dtype == torch.float64 and pred.mean.shape == (9,)
    np.testing.assert_allclose(
        pred.mean.numpy(), mean, rtol=CROSS_IMPLEMENTATION_RTOL, atol=FLOAT64_ATOL
    )
    np.testing.assert_allclose(pred.variance.numpy(), std**2, rtol=CROSS_IMPLEMENTATION_RTOL)
    assert (pred.variance > hyper.noise).all()  # noise is included


@pytest.mark.parametrize("kernel", KERNELS)
def test_log_marginal_likelihood_matches_sklearn(kernel: str) -> None:
    x_ctx, y_ctx, _ = _data(30, 1, 3, seed=7)
    hyper = _hyper(3, kernel)
    expected = _sklearn_gp(hyper, x_ctx, y_ctx).log_marginal_likelihood_value_
    actual = log_marginal_likelihood(x_ctx, y_ctx, hyper)
    assert actual.shape == () and actual.dtype == torch.float64
    np.testing.assert_allclose(actual.item(), expected, rtol=CROSS_IMPLEMENTATION_RTOL)


def test_scalar_lengthscale_broadcasts() -> None:
    x_ctx, y_ctx, x_qry = _data(10, 4, 2, seed=3)
    shared = GPHyperparameters(lengthscale=torch.tensor(0.5), outputscale=1.0, noise=0.1)
    per_dim = GPHyperparameters(lengthscale=torch.full((2,), 0.5), outputscale=1.0, noise=0.1)
    a = exact_gp_predictive(x_ctx, y_ctx, x_qry, shared)
    b = exact_gp_predictive(x_ctx, y_ctx, x_qry, per_dim)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_fit_ml2_reaches_sklearn_optimum(kernel: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, generator=gen, dtype=torch.float64) * 4
    y = torch.sin(2 * x[:, 0]) + 0.2 * torch.randn(40, generator=gen, dtype=torch.float64)
    base = RBF(1.0, (1e-3, 1e3)) if kernel == "rbf" else Matern(1.0, (1e-3, 1e3), nu=2.5)
    sk_kernel = ConstantKernel(1.0, (1e-3, 1e3)) * base + WhiteKernel(0.1, (1e-6, 1e1))
    sk = GaussianProcessRegressor(sk_kernel, alpha=0.0, n_restarts_optimizer=3, random_state=0)
    sk.fit(x.numpy(), y.numpy())

    fitted = fit_ml2(x, y, kernel=kernel)
    # Score our optimum with sklearn's own likelihood, an independent implementation.
    theta = np.log([fitted.outputscale, fitted.lengthscale.item(), fitted.noise])
    ours = sk.log_marginal_likelihood(theta)
    assert ours >= sk.log_marginal_likelihood_value_ - ML2_LML_SLACK
    np.testing.assert_allclose(
        log_marginal_likelihood(x, y, fitted).item(), ours, rtol=CROSS_IMPLEMENTATION_RTOL
    )
    assert 0.01 < fitted.noise < 0.1  # true noise variance 0.04


def test_fit_ml2_ard_switches_off_irrelevant_feature() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(30, 2, generator=gen, dtype=torch.float64) * 4
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(30, generator=gen, dtype=torch.float64)
    fitted = fit_ml2(x, y, steps=50, lengthscale_inits=(1.0,))
    assert fitted.lengthscale[1] > 10 * fitted.lengthscale[0]
    again = fit_ml2(x, y, steps=50, lengthscale_inits=(1.0,))
    assert again.to_dict() == fitted.to_dict()  # deterministic


def test_mean_gradient_wrt_y_is_closed_form_weights() -> None:
    x_ctx, y_ctx, x_qry = _data(12, 5, 2, seed=11)
    hyper = _hyper(2, "rbf")
    jac = torch.autograd.functional.jacobian(
        lambda y: exact_gp_predictive(x_ctx, y, x_qry, hyper).mean, y_ctx
    )
    k_qry_ctx, k_ctx_noisy = _closed_form(x_ctx, x_qry, hyper)
    weights = torch.linalg.solve(k_ctx_noisy, k_qry_ctx.T).T  # K_*N (K_NN + s2 I)^-1
    torch.testing.assert_close(jac, weights, rtol=CROSS_IMPLEMENTATION_RTOL, atol=FLOAT64_ATOL)


def test_lml_gradient_wrt_y_is_closed_form() -> None:
    x_ctx, y_ctx, _ = _data(12, 1, 2, seed=12)
    hyper = _hyper(2, "rbf")
    y = y_ctx.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_marginal_likelihood(x_ctx, y, hyper), y)
    _, k_ctx_noisy = _closed_form(x_ctx, x_ctx, hyper)
    expected = -torch.linalg.solve(k_ctx_noisy, y_ctx)
    torch.testing.assert_close(grad, expected, rtol=CROSS_IMPLEMENTATION_RTOL, atol=FLOAT64_ATOL)


@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_predictive_gradcheck_wrt_context(kernel: str) -> None:
    x_ctx, y_ctx, x_qry = _data(6, 3, 2, seed=5)
    hyper = _hyper(2, kernel)

    def mean_and_variance(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred = exact_gp_predictive(x, y, x_qry, hyper)
        return pred.mean, pred.variance

    inputs = (x_ctx.requires_grad_(True), y_ctx.requires_grad_(True))
    assert torch.autograd.gradcheck(mean_and_variance, inputs, atol=GRADCHECK_ATOL)


def test_batch_equals_loop_and_context_order_is_irrelevant() -> None:
    data = [_data(8, 4, 2, seed=s) for s in range(3)]
    x_ctx, y_ctx, x_qry = (torch.stack(t) for t in zip(*data, strict=True))
    hypers = [_hyper(2, k) for k in ("rbf", "matern12", "matern32")]
    batch = exact_gp_predictive_batch(x_ctx, y_ctx, x_qry, hypers)
    assert batch.mean.shape == (3, 4)
    for b in range(3):
        perm = torch.randperm(8, generator=torch.Generator().manual_seed(b))
        single = exact_gp_predictive(x_ctx[b, perm], y_ctx[b, perm], x_qry[b], hypers[b])
        torch.testing.assert_close(batch.mean[b], single.mean, rtol=0, atol=FLOAT64_ATOL)
        torch.testing.assert_close(batch.variance[b], single.variance, rtol=0, atol=FLOAT64_ATOL)


def test_gaussian_predictive_methods_match_scipy() -> None:
    mean = torch.tensor([0.0, 1.5, -2.0], dtype=torch.float64)
    variance = torch.tensor([1.0, 0.25, 4.0], dtype=torch.float64)
    pred = GaussianPredictive(mean=mean, variance=variance)
    y = torch.tensor([0.3, 1.0, 1.0], dtype=torch.float64)
    scale = variance.sqrt().numpy()
    expected = stats.norm.logpdf(y.numpy(), mean.numpy(), scale)
    np.testing.assert_allclose(pred.log_prob(y).numpy(), expected, rtol=CROSS_IMPLEMENTATION_RTOL)
    lower, upper = pred.interval(0.9)
    sk_lower, sk_upper = stats.norm.interval(0.9, mean.numpy(), scale)
    np.testing.assert_allclose(lower.numpy(), sk_lower, rtol=CROSS_IMPLEMENTATION_RTOL)
    np.testing.assert_allclose(upper.numpy(), sk_upper, rtol=CROSS_IMPLEMENTATION_RTOL)
    assert pred.to_distribution().batch_shape == (3,)


def test_hyperparameters_round_trip() -> None:
    hyper = _hyper(3, "matern32")
    back = GPHyperparameters.from_dict(hyper.to_dict())
    assert back.to_dict() == hyper.to_dict()


NAN = math.nan


@pytest.mark.parametrize(
    ("x_ctx", "y_ctx", "x_qry", "match"),
    [
        (torch.zeros(5), torch.zeros(5), torch.zeros(2, 1), "x_ctx must have shape"),
        (torch.zeros(5, 1), torch.zeros(4), torch.zeros(2, 1), "y_ctx must have shape"),
        (torch.zeros(0, 1), torch.zeros(0), torch.zeros(2, 1), "context is empty"),
        (torch.full((5, 1), NAN), torch.zeros(5), torch.zeros(2, 1), "x_ctx contains"),
        (torch.zeros(5, 1), torch.full((5,), math.inf), torch.zeros(2, 1), "y_ctx contains"),
        (torch.zeros(5, 1), torch.zeros(5), torch.zeros(2, 2), "x_qry must have shape"),
        (torch.zeros(5, 1), torch.zeros(5), torch.zeros(0, 1), "x_qry is empty"),
        (torch.zeros(5, 1), torch.zeros(5), torch.full((2, 1), NAN), "x_qry contains"),
    ],
)
def test_bad_data_raises(x_ctx, y_ctx, x_qry, match: str) -> None:
    hyper = GPHyperparameters(lengthscale=torch.tensor(1.0), outputscale=1.0, noise=0.1)
    with pytest.raises(ValueError, match=match):
        exact_gp_predictive(x_ctx.double(), y_ctx.double(), x_qry.double(), hyper)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lengthscale": torch.tensor([1.0, 0.0])}, "lengthscale must be finite and positive"),
        ({"lengthscale": torch.tensor([NAN])}, "lengthscale must be finite and positive"),
        ({"lengthscale": torch.ones(2, 2)}, "scalar or a"),
        ({"outputscale": -1.0}, "outputscale must be finite and positive"),
        ({"noise": 0.0}, "noise must be finite and positive"),
        ({"kernel": "periodic"}, "unknown kernel"),
    ],
)
def test_bad_hyperparameters_raise(kwargs: dict, match: str) -> None:
    base = {"lengthscale": torch.tensor(1.0), "outputscale": 1.0, "noise": 0.1}
    with pytest.raises(ValueError, match=match):
        GPHyperparameters(**{**base, **kwargs})


def test_mismatched_lengthscale_and_bad_level_raise() -> None:
    x_ctx, y_ctx, x_qry = _data(5, 2, 3, seed=0)
    with pytest.raises(ValueError, match="lengthscale has 2 entries but x has 3"):
        log_marginal_likelihood(x_ctx, y_ctx, _hyper(2, "rbf"))
    pred = exact_gp_predictive(x_ctx, y_ctx, x_qry, _hyper(3, "rbf"))
    with pytest.raises(ValueError, match="level"):
        pred.interval(1.5)
    with pytest.raises(ValueError, match="unknown kernel"):
        fit_ml2(x_ctx, y_ctx, kernel="linear")


def test_chunked_queries_match_one_call() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(20, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    xq = torch.rand(11, 2, generator=g, dtype=torch.float64)
    hyper = GPHyperparameters(lengthscale=torch.tensor([0.3, 0.6]), outputscale=1.2, noise=0.05)
    whole = exact_gp_predictive(x, y, xq, hyper)
    chunked = exact_gp_predictive(x, y, xq, hyper, query_chunk_size=3)
    torch.testing.assert_close(chunked.mean, whole.mean, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(chunked.variance, whole.variance, atol=FLOAT64_ATOL, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_lml_fn_equals_lml_and_is_differentiable_in_the_hyperparameters(kernel: str) -> None:
    from pfnkit.reference.exact_gp import log_marginal_likelihood_fn

    x_ctx, y_ctx, _ = _data(9, 1, 2, seed=3)
    lml = log_marginal_likelihood_fn(x_ctx, y_ctx, kernel=kernel)
    for log_theta in ([0.1, -0.4, 0.3, -2.0], [-1.0, 0.8, -0.5, -5.0]):
        theta = torch.tensor(log_theta, dtype=torch.float64).exp()
        hyper = GPHyperparameters(
            lengthscale=theta[:2], outputscale=float(theta[2]), noise=float(theta[3]), kernel=kernel
        )
        expected = log_marginal_likelihood(x_ctx, y_ctx, hyper)
        got = lml(theta[:2], theta[2], theta[3])
        torch.testing.assert_close(got, expected, rtol=0, atol=FLOAT64_ATOL)
    shared = lml(torch.tensor([0.7], dtype=torch.float64), theta[2], theta[3])
    hyper = GPHyperparameters(
        lengthscale=0.7, outputscale=float(theta[2]), noise=float(theta[3]), kernel=kernel
    )
    expected = log_marginal_likelihood(x_ctx, y_ctx, hyper)
    torch.testing.assert_close(shared, expected, rtol=0, atol=FLOAT64_ATOL)
    log_theta = torch.tensor([0.1, -0.4, 0.3, -2.0], dtype=torch.float64, requires_grad=True)
    # gpytorch's distances are not exactly zero on the diagonal, and Matérn-1/2 has a kink
    # there, so finite differences need a wider step than GRADCHECK_ATOL's default one
    assert torch.autograd.gradcheck(
        lambda t: lml(t[:2].exp(), t[2].exp(), t[3].exp()),
        (log_theta,),
        eps=HYPER_GRADCHECK_EPS,
        atol=HYPER_GRADCHECK_ATOL,
    )
    with pytest.raises(ValueError, match="lengthscale has 3 entries"):
        lml(torch.ones(3, dtype=torch.float64), theta[2], theta[3])


def test_fit_ml2_skips_a_restart_that_diverges_to_nan(monkeypatch) -> None:
    """A restart whose L-BFGS run ends in NaN (linear_operator's NanError) is skipped."""
    from linear_operator.utils.errors import NanError

    from pfnkit.reference import exact_gp

    gen = torch.Generator().manual_seed(0)
    x_N1 = torch.rand(15, 1, generator=gen, dtype=torch.float64)
    y_N = torch.sin(6 * x_N1[:, 0])
    expected = exact_gp.fit_ml2(x_N1, y_N, lengthscale_inits=(1.0,))
    optimise = exact_gp._optimise

    def diverge_from_small_inits(x, y, init, **kwargs):
        if float(init.lengthscale.max()) < 0.5 * float(x.std()):
            raise NanError("cholesky_cpu: 225 of 225 elements of the tensor are NaN.")
        return optimise(x, y, init, **kwargs)

    monkeypatch.setattr(exact_gp, "_optimise", diverge_from_small_inits)
    got = exact_gp.fit_ml2(x_N1, y_N, lengthscale_inits=(0.3, 1.0))
    torch.testing.assert_close(got.lengthscale, expected.lengthscale, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="every ML-II restart failed"):
        exact_gp.fit_ml2(x_N1, y_N, lengthscale_inits=(0.3,))
