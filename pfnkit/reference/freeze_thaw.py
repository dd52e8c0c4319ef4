"""The exact posterior of the freeze-thaw GP over learning curves, in the paper's block form.

The model of Swersky, Snoek & Adams, "Freeze-Thaw Bayesian Optimization" (arXiv 1406.3896):
configurations x have asymptotes f(x) ~ GP(μ, σ_f² k_x) (a stationary kernel), and the
curve of configuration x at epoch fraction s ∈ (0, 1] is

    y_x(s) = f(x) + a_x φ(s) + g_x(s) + ε,   g_x ~ GP(0, σ_g² k_t),   ε ~ N(0, σ_n²),

with an independent g_x per configuration and the paper's exponential-decay kernel

    k_t(s, s') = ∫₀^∞ e^{-λs} e^{-λs'} Gamma(λ | α, β) dλ = β^α / (s + s' + β)^α,

a mixture of decaying exponentials, so k_t(s, s) → 0 and every curve converges to its
asymptote. The term a_x φ(s), with φ(s) = (β / (s + β))^α = E[e^{-λs}] the expected decay
and a per-curve amplitude a_x ~ N(m_a, s_a²), is an addition to the paper: with m_a > 0 a
curve starts above its asymptote and falls towards it, as validation errors do, which the
zero-mean g_x alone cannot express (m_a = s_a² = 0 is the paper's model). It keeps the
model Gaussian: the curve's mean is μ + m_a φ(s) and its kernel gains s_a² φ(s) φ(s').
Jointly, y is a GP over (x, s) with mean μ + m_a φ(s) and kernel
σ_f² k_x(x, x') + δ_{x=x'} (σ_g² k_t(s, s') + s_a² φ(s) φ(s')) plus noise. Inputs are
(N, D + 1) rows: D configuration features and, last, the epoch fraction s; two rows belong
to the same curve when their configuration features are equal.

The solve follows the paper's block structure (its Section 3 and appendix) instead of
factorising the N × N joint covariance. With Ω_c = σ_g² k_t(s_c, s_c) + s_a² φφᵀ + σ_n² I
for the T_c observations of curve c, each curve is equivalent, as evidence about its asymptote, to
one pseudo-observation z_c = 1ᵀΩ_c⁻¹y_c / λ_c of f_c with noise variance 1/λ_c, where
λ_c = 1ᵀΩ_c⁻¹1. So f | y is an ordinary GP posterior with heteroscedastic noise, costing
O(C³ + Σ_c T_c³) for C curves, and a later epoch s* of an observed curve c has

    E[y*]   = a m_c + k_*ᵀ Ω_c⁻¹ y_c,                a = 1 − k_*ᵀ Ω_c⁻¹ 1,
    Var[y*] = k(s*, s*) − k_*ᵀ Ω_c⁻¹ k_* + a² v_c (+ σ_n²),

with y_c and y* taken relative to the curve mean m_a φ(s), k the curve kernel
σ_g² k_t + s_a² φφ, and (m_c, v_c) the posterior mean and variance of f_c; an unseen
configuration gets f's posterior plus the prior of its curve. Everything runs in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gpytorch
import torch
from torch import Tensor

from pfnkit.data import check_finite
from pfnkit.reference.exact_gp_posterior import GaussianPredictive

__all__ = [
    "FREEZE_THAW_KERNELS",
    "FreezeThawHyperparameters",
    "curve_mean",
    "decay_basis",
    "epoch_kernel",
    "freeze_thaw_log_marginal_likelihood",
    "freeze_thaw_predictive",
    "freeze_thaw_predictive_batch",
]

FREEZE_THAW_KERNELS = ("rbf", "matern12", "matern32", "matern52")
_MATERN_NU = {"matern12": 0.5, "matern32": 1.5, "matern52": 2.5}
_DTYPE = torch.float64
_POSITIVE = ("outputscale", "curve_scale", "alpha", "beta", "noise")
_AMPLITUDE = ("amplitude_mean", "amplitude_var")


@dataclass(frozen=True, kw_only=True)
class FreezeThawHyperparameters:
    """Fixed hyperparameters of the freeze-thaw GP.

    Attributes:
        mean: prior mean μ of every asymptote f(x).
        lengthscale: lengthscales of k_x, a scalar or one per configuration feature.
        outputscale: σ_f², the prior variance of an asymptote.
        curve_scale: σ_g², the variance scale of a curve around its asymptote.
        alpha: shape α of the Gamma mixture over decay rates (in 1 / epoch fraction).
        beta: rate β of that Gamma mixture, in epoch-fraction units.
        noise: σ_n², the observation noise variance.
        kernel: k_x, one of "rbf", "matern12", "matern32", "matern52".
        amplitude_mean: m_a, prior mean of a curve's amplitude a_x along φ(s) (0: the paper).
        amplitude_var: s_a² >= 0, prior variance of that amplitude (0: the paper).
    """

    mean: float
    lengthscale: Tensor | float | Sequence[float]
    outputscale: float
    curve_scale: float
    alpha: float
    beta: float
    noise: float
    kernel: str = "matern52"
    amplitude_mean: float = 0.0
    amplitude_var: float = 0.0

    def __post_init__(self) -> None:
        if self.kernel not in FREEZE_THAW_KERNELS:
            raise ValueError(f"unknown kernel {self.kernel!r}; choose from {FREEZE_THAW_KERNELS}")
        lengthscale = torch.as_tensor(self.lengthscale, dtype=_DTYPE).detach().reshape(-1)
        if lengthscale.numel() == 0 or not bool(
            (torch.isfinite(lengthscale) & (lengthscale > 0)).all()
        ):
            raise ValueError(f"lengthscale must be finite and positive, got {lengthscale.tolist()}")
        object.__setattr__(self, "lengthscale", lengthscale)
        for name in ("mean", *_POSITIVE):
            value = float(getattr(self, name))
            if not math.isfinite(value) or (name != "mean" and value <= 0):
                raise ValueError(
                    f"{name} must be finite{'' if name == 'mean' else ' and positive'}, got {value}"
                )
            object.__setattr__(self, name, value)
        for name in _AMPLITUDE:
            value = float(getattr(self, name))
            if not math.isfinite(value) or (name == "amplitude_var" and value < 0):
                raise ValueError(f"{name} must be finite (and the variance >= 0), got {value}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (lists and floats) for JSON."""
        data = {name: getattr(self, name) for name in ("mean", *_POSITIVE, *_AMPLITUDE, "kernel")}
        return {**data, "lengthscale": self.lengthscale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FreezeThawHyperparameters:
        """Inverse of `to_dict`."""
        return cls(**data)


def config_kernel(x1_ND: Tensor, x2_MD: Tensor, hyper: FreezeThawHyperparameters) -> Tensor:
    """σ_f² k_x(x1, x2), shape (N, M), through gpytorch's stationary kernels."""
    d = x1_ND.shape[-1]
    if hyper.lengthscale.numel() not in (1, d):
        raise ValueError(
            f"got {hyper.lengthscale.numel()} lengthscales for {d} configuration features"
        )
    if hyper.kernel == "rbf":
        base = gpytorch.kernels.RBFKernel(ard_num_dims=d)
    else:
        base = gpytorch.kernels.MaternKernel(nu=_MATERN_NU[hyper.kernel], ard_num_dims=d)
    base = base.to(_DTYPE)
    base.lengthscale = hyper.lengthscale.expand(d).reshape(1, d)
    with torch.no_grad():
        k_NM = base(x1_ND, x2_MD).to_dense()
    return hyper.outputscale * k_NM


def decay_basis(s: Tensor, hyper: FreezeThawHyperparameters) -> Tensor:
    """φ(s) = (β / (s + β))^α = E[e^{-λs}] for λ ~ Gamma(α, β), elementwise."""
    return (hyper.beta / (s + hyper.beta)) ** hyper.alpha


def epoch_kernel(s1: Tensor, s2: Tensor, hyper: FreezeThawHyperparameters) -> Tensor:
    """σ_g² β^α / (s1 + s2 + β)^α + s_a² φ(s1) φ(s2), elementwise over broadcast fractions."""
    decay = hyper.curve_scale * (hyper.beta / (s1 + s2 + hyper.beta)) ** hyper.alpha
    if hyper.amplitude_var == 0:
        return decay
    return decay + hyper.amplitude_var * decay_basis(s1, hyper) * decay_basis(s2, hyper)


def curve_mean(s: Tensor, hyper: FreezeThawHyperparameters) -> Tensor:
    """m_a φ(s): a curve's prior mean relative to its asymptote, elementwise."""
    return hyper.amplitude_mean * decay_basis(s, hyper)


@dataclass(frozen=True)
class _Curves:
    """The context grouped into C curves padded to T observations (mask marks real ones)."""

    configs_CD: Tensor
    s_CT: Tensor
    y_CT: Tensor
    mask_CT: Tensor


@dataclass(frozen=True)
class _Fit:
    """The factorised context: per-curve Cholesky factors and the asymptotes' GP."""

    curves: _Curves
    chol_CTT: Tensor  # Cholesky factors of the padded Ω_c (identity on padding)
    omega_y_CT: Tensor  # Ω_c⁻¹ y_c
    omega_one_CT: Tensor  # Ω_c⁻¹ 1
    precision_C: Tensor  # λ_c = 1ᵀ Ω_c⁻¹ 1
    pseudo_C: Tensor  # z_c = 1ᵀ Ω_c⁻¹ y_c / λ_c
    chol_A_CC: Tensor  # Cholesky factor of K_x + diag(1/λ)
    weights_C: Tensor  # (K_x + diag(1/λ))⁻¹ (z − μ)


def _check_rows(name: str, x_NE: Tensor) -> Tensor:
    if x_NE.ndim != 2 or x_NE.shape[1] < 2:
        raise ValueError(
            f"{name} must be (N, D + 1): D >= 1 configuration features and the epoch fraction "
            f"last; got shape {tuple(x_NE.shape)}"
        )
    check_finite(name, x_NE)
    if bool((x_NE[:, -1] < 0).any()):
        raise ValueError(f"{name}'s last column is the epoch fraction and must be >= 0")
    return x_NE.to(_DTYPE)


def _group(x_ctx_NE: Tensor, y_ctx_N: Tensor) -> _Curves:
    """Group context rows by equal configuration features into padded curves."""
    if x_ctx_NE.shape[0] == 0:
        empty = torch.zeros(0, 0, dtype=_DTYPE)
        return _Curves(x_ctx_NE[:, :-1], empty, empty, empty.bool())
    configs_CD, curve_N = torch.unique(x_ctx_NE[:, :-1], dim=0, return_inverse=True)
    n_curves = configs_CD.shape[0]
    order_N = torch.argsort(curve_N, stable=True)
    counts_C = torch.bincount(curve_N, minlength=n_curves)
    starts_C = torch.cumsum(counts_C, 0) - counts_C
    sorted_curve_N = curve_N[order_N]
    slot_N = torch.arange(len(order_N)) - starts_C[sorted_curve_N]
    t_max = int(counts_C.max()) if n_curves else 0
    s_CT = torch.zeros(n_curves, t_max, dtype=_DTYPE)
    y_CT = torch.zeros(n_curves, t_max, dtype=_DTYPE)
    mask_CT = torch.zeros(n_curves, t_max, dtype=torch.bool)
    s_CT[sorted_curve_N, slot_N] = x_ctx_NE[order_N, -1]
    y_CT[sorted_curve_N, slot_N] = y_ctx_N[order_N]
    mask_CT[sorted_curve_N, slot_N] = True
    return _Curves(configs_CD, s_CT, y_CT, mask_CT)


def _fit(x_ctx_NE: Tensor, y_ctx_N: Tensor, hyper: FreezeThawHyperparameters) -> _Fit:
    x_ctx_NE = _check_rows("x_ctx", x_ctx_NE)
    if y_ctx_N.shape != x_ctx_NE.shape[:1]:
        raise ValueError(
            f"y_ctx must have shape ({x_ctx_NE.shape[0]},), got {tuple(y_ctx_N.shape)}"
        )
    check_finite("y_ctx", y_ctx_N)
    y_rel_N = y_ctx_N.to(_DTYPE) - curve_mean(x_ctx_NE[:, -1], hyper)
    curves = _group(x_ctx_NE, y_rel_N)
    mask_CT = curves.mask_CT.to(_DTYPE)
    pair_CTT = mask_CT[:, :, None] * mask_CT[:, None, :]
    k_CTT = epoch_kernel(curves.s_CT[:, :, None], curves.s_CT[:, None, :], hyper) * pair_CTT
    diag_CT = hyper.noise * mask_CT + (1.0 - mask_CT)  # identity on the padding
    chol_CTT = torch.linalg.cholesky(k_CTT + torch.diag_embed(diag_CT))
    omega_y_CT = torch.cholesky_solve(curves.y_CT[..., None], chol_CTT)[..., 0]
    omega_one_CT = torch.cholesky_solve(mask_CT[..., None], chol_CTT)[..., 0] * mask_CT
    precision_C = (omega_one_CT * mask_CT).sum(-1)
    pseudo_C = (omega_y_CT * mask_CT).sum(-1) / precision_C
    k_CC = config_kernel(curves.configs_CD, curves.configs_CD, hyper)
    chol_A_CC = torch.linalg.cholesky(k_CC + torch.diag(1.0 / precision_C))
    weights_C = torch.cholesky_solve((pseudo_C - hyper.mean)[:, None], chol_A_CC)[:, 0]
    return _Fit(curves, chol_CTT, omega_y_CT, omega_one_CT, precision_C, pseudo_C, chol_A_CC,
                weights_C)  # fmt: skip


def _asymptote_posterior(
    fit: _Fit, x_cfg_MD: Tensor, hyper: FreezeThawHyperparameters
) -> tuple[Tensor, Tensor]:
    """Posterior mean and variance of f at M configurations, each (M,)."""
    prior_var_M = torch.full((x_cfg_MD.shape[0],), hyper.outputscale, dtype=_DTYPE)
    if fit.curves.configs_CD.shape[0] == 0:
        return torch.full_like(prior_var_M, hyper.mean), prior_var_M
    k_MC = config_kernel(x_cfg_MD, fit.curves.configs_CD, hyper)
    mean_M = hyper.mean + k_MC @ fit.weights_C
    white_CM = torch.linalg.solve_triangular(fit.chol_A_CC, k_MC.T, upper=False)
    return mean_M, (prior_var_M - (white_CM**2).sum(0)).clamp_min(0.0)


def _predict(
    fit: _Fit, x_qry_ME: Tensor, hyper: FreezeThawHyperparameters, observed: bool
) -> GaussianPredictive:
    x_cfg_MD, s_M = x_qry_ME[:, :-1], x_qry_ME[:, -1]
    f_mean_M, f_var_M = _asymptote_posterior(fit, x_cfg_MD, hyper)
    mean_M = f_mean_M.clone()
    var_M = epoch_kernel(s_M, s_M, hyper) + f_var_M
    configs_CD = fit.curves.configs_CD
    if configs_CD.shape[0] > 0:
        same_MC = (x_cfg_MD[:, None, :] == configs_CD[None, :, :]).all(-1)
        seen_M = same_MC.any(-1)
        q, c = seen_M.nonzero()[:, 0], same_MC[seen_M].to(torch.int64).argmax(-1)
        mask_QT = fit.curves.mask_CT[c].to(_DTYPE)
        k_QT = epoch_kernel(s_M[q, None], fit.curves.s_CT[c], hyper) * mask_QT
        w_QT = torch.cholesky_solve(k_QT[..., None], fit.chol_CTT[c])[..., 0] * mask_QT
        shrink_Q = 1.0 - (k_QT * fit.omega_one_CT[c]).sum(-1)
        mean_M[q] = shrink_Q * f_mean_M[q] + (k_QT * fit.omega_y_CT[c]).sum(-1)
        curve_var_Q = epoch_kernel(s_M[q], s_M[q], hyper) - (k_QT * w_QT).sum(-1)
        var_M[q] = curve_var_Q.clamp_min(0.0) + shrink_Q**2 * f_var_M[q]
    mean_M = mean_M + curve_mean(s_M, hyper)
    if observed:
        var_M = var_M + hyper.noise
    return GaussianPredictive(mean=mean_M, variance=var_M)


def freeze_thaw_predictive(
    x_ctx_NE: Tensor,
    y_ctx_N: Tensor,
    x_qry_ME: Tensor,
    hyper: FreezeThawHyperparameters,
    *,
    observed: bool = True,
) -> GaussianPredictive:
    """The exact freeze-thaw GP predictive at M (configuration, epoch fraction) queries.

    Args:
        x_ctx_NE: context rows, shape (N, D + 1): configuration features, then the epoch
            fraction s (>= 0). Rows with equal configuration features form one curve.
        y_ctx_N: observed curve values, shape (N,).
        x_qry_ME: query rows, shape (M, D + 1), same layout; a query whose configuration
            equals a context curve's continues that curve, any other starts a new one.
        hyper: the GP's hyperparameters.
        observed: predict a noisy value y* (default) or the noiseless f(x) + g_x(s).

    Returns:
        Independent Gaussian marginals per query point, float64.
    """
    fit = _fit(x_ctx_NE, y_ctx_N, hyper)
    x_qry_ME = _check_rows("x_qry", x_qry_ME)
    if x_qry_ME.shape[1] != fit.curves.configs_CD.shape[1] + 1 and fit.curves.configs_CD.numel():
        raise ValueError(f"x_qry has {x_qry_ME.shape[1]} columns but x_ctx has {x_ctx_NE.shape[1]}")
    return _predict(fit, x_qry_ME, hyper, observed)


def freeze_thaw_predictive_batch(
    x_ctx_BNE: Tensor,
    y_ctx_BN: Tensor,
    x_qry_BME: Tensor,
    hyper: FreezeThawHyperparameters | Sequence[FreezeThawHyperparameters],
    *,
    observed: bool = True,
) -> GaussianPredictive:
    """`freeze_thaw_predictive` for B tasks (one loop over tasks); mean and variance (B, M).

    Args:
        x_ctx_BNE: context rows (B, N, D + 1).
        y_ctx_BN: context values (B, N).
        x_qry_BME: query rows (B, M, D + 1).
        hyper: one set of hyperparameters for every task, or one per task.
        observed: predict noisy values (default) or noiseless curves.
    """
    b = x_ctx_BNE.shape[0]
    hypers = [hyper] * b if isinstance(hyper, FreezeThawHyperparameters) else list(hyper)
    if len(hypers) != b:
        raise ValueError(f"got {len(hypers)} hyperparameter sets for {b} tasks")
    preds = [
        freeze_thaw_predictive(
            x_ctx_BNE[i], y_ctx_BN[i], x_qry_BME[i], hypers[i], observed=observed
        )
        for i in range(b)
    ]
    return GaussianPredictive(
        mean=torch.stack([p.mean for p in preds]), variance=torch.stack([p.variance for p in preds])
    )


def freeze_thaw_log_marginal_likelihood(
    x_ctx_NE: Tensor, y_ctx_N: Tensor, hyper: FreezeThawHyperparameters
) -> Tensor:
    """log p(y_ctx) under the freeze-thaw GP (a total, float64 scalar), in block form.

    Integrating f out curve by curve gives log N(z | μ, K_x + Λ⁻¹) plus, per curve,
    ½ log(2π/λ_c) − ½ (y_cᵀΩ_c⁻¹y_c − λ_c z_c²) − (T_c/2) log 2π − ½ log|Ω_c|.
    """
    fit = _fit(x_ctx_NE, y_ctx_N, hyper)
    n_curves = fit.precision_C.shape[0]
    if n_curves == 0:
        return torch.zeros((), dtype=_DTYPE)
    log_2pi = math.log(2 * math.pi)
    resid_C = fit.pseudo_C - hyper.mean
    white_C = torch.linalg.solve_triangular(fit.chol_A_CC, resid_C[:, None], upper=False)[:, 0]
    log_det_A = 2 * fit.chol_A_CC.diagonal().log().sum()
    asymptotes = -0.5 * ((white_C**2).sum() + log_det_A + n_curves * log_2pi)
    counts_C = fit.curves.mask_CT.sum(-1).to(_DTYPE)
    quad_C = (fit.curves.y_CT * fit.omega_y_CT).sum(-1) - fit.precision_C * fit.pseudo_C**2
    log_det_C = 2 * fit.chol_CTT.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    per_curve_C = 0.5 * (log_2pi - fit.precision_C.log()) - 0.5 * quad_C
    per_curve_C = per_curve_C - 0.5 * counts_C * log_2pi - 0.5 * log_det_C
    return asymptotes + per_curve_C.sum()
