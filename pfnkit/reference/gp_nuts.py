"""The Bayes-optimal GP predictive under hyperpriors: NUTS over the hyperparameters.

For one context set, NUTS samples the posterior of the GP's unconstrained hyperparameters
φ (log-lengthscales, log-outputscale, log-noise, or their logistic counterparts; see
`GPHyperprior`):

    log p(φ | x, y) = log p(φ) + log p(y | x, φ) + const,

with the hyperprior density from the checkpoint card (`GPHyperprior`) and the exact
marginal likelihood in float64 (`cholesky_lml_fn`: one Cholesky factorisation in plain
torch, which equals gpytorch's `log_marginal_likelihood_fn` to rounding, a test checks, at a
third of its cost per gradient on small contexts). The
posterior predictive at query points is the equal-weight mixture of the exact GP
predictives at a thinned set of draws, p(y* | x*, x, y) ≈ (1/K) Σ_k N(y*; μ_k, σ_k²),
scored with `mc_predictive_log_prob`. NUTS runs on φ whitened around its mode
(`laplace_whitening`, a linear map, so the draws stay exact), which cuts the leapfrog steps
per draw several-fold. A run is trusted only when `run_nuts`'s R-hat, ESS and time-cap
gates pass, evaluated on φ; untrusted runs are returned, flagged, never dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints

from pfnkit.data import check_finite
from pfnkit.reference.exact_gp import KERNELS, exact_gp_predictive
from pfnkit.reference.gp_hyperprior import GPHyperprior
from pfnkit.reference.laplace import Whitening, laplace_whitening
from pfnkit.reference.mcmc import NUTSConfig, NUTSResult, mc_predictive_log_prob, run_nuts

__all__ = [
    "GPHyperPosterior",
    "GaussianMixturePredictive",
    "cholesky_lml_fn",
    "gp_hyperparameter_posterior",
]

logger = logging.getLogger(__name__)

_DTYPE = torch.float64
_MAX_START_TRIES = 100  # hyperprior draws tried per chain for a start with a finite density
_ICDF_ITERATIONS = 80  # bisection steps: the bracket shrinks by 2**-80
_ICDF_BRACKET_SDS = 12.0  # the bracket spans every component's mean ± this many sds


class GaussianMixturePredictive(Distribution):
    """Equal-weight mixture of K Gaussians at each of M points; batch shape (M,).

    Args:
        mean_KM: component means, shape (K, M).
        variance_KM: component variances, shape (K, M).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, mean_KM: Tensor, variance_KM: Tensor) -> None:
        if mean_KM.ndim != 2 or mean_KM.shape != variance_KM.shape or mean_KM.shape[0] == 0:
            raise ValueError(
                "mean and variance must both have shape (K, M) with K >= 1, got "
                f"{tuple(mean_KM.shape)} and {tuple(variance_KM.shape)}"
            )
        self.mean_KM = mean_KM
        self.sd_KM = variance_KM.sqrt()
        super().__init__(batch_shape=mean_KM.shape[1:], validate_args=False)

    @property
    def num_components(self) -> int:
        return self.mean_KM.shape[0]

    def log_prob(self, value: Tensor) -> Tensor:
        """log (1/K) Σ_k N(value; μ_k, σ_k²) via `mc_predictive_log_prob`; value shape (M,)."""
        # each "draw" handed to mc_predictive_log_prob is one component's (means, sds)
        params_KP = torch.cat([self.mean_KM, self.sd_KM], dim=-1)
        m = self.mean_KM.shape[1]
        return mc_predictive_log_prob(
            params_KP, lambda chunk: Normal(chunk[:, :m], chunk[:, m:]), value.to(_DTYPE)
        )

    def cdf(self, value: Tensor) -> Tensor:
        """Mixture CDF; value of shape (..., M) (or broadcastable to it)."""
        value = torch.as_tensor(value, dtype=_DTYPE).unsqueeze(-2)  # (..., 1, M) vs (K, M)
        return Normal(self.mean_KM, self.sd_KM).cdf(value).mean(dim=-2)

    def icdf(self, value: Tensor) -> Tensor:
        """Quantiles by bisection on the mixture CDF; value of shape (..., M) or broadcastable."""
        q = torch.as_tensor(value, dtype=_DTYPE)
        q = q.expand(torch.broadcast_shapes(q.shape, self.batch_shape))
        low = (self.mean_KM - _ICDF_BRACKET_SDS * self.sd_KM).min(dim=0).values.expand_as(q)
        high = (self.mean_KM + _ICDF_BRACKET_SDS * self.sd_KM).max(dim=0).values.expand_as(q)
        for _ in range(_ICDF_ITERATIONS):
            mid = 0.5 * (low + high)
            below = self.cdf(mid) < q
            low = torch.where(below, mid, low)
            high = torch.where(below, high, mid)
        return 0.5 * (low + high)

    @property
    def mean(self) -> Tensor:
        return self.mean_KM.mean(dim=0)

    @property
    def variance(self) -> Tensor:
        """Law of total variance: E[σ_k²] + Var[μ_k]."""
        second = (self.sd_KM**2 + self.mean_KM**2).mean(dim=0)
        return second - self.mean**2


@dataclass(frozen=True, kw_only=True)
class GPHyperPosterior:
    """NUTS draws of one context set's GP hyperparameters, and their predictive.

    Attributes:
        hyperprior: the hyperprior (and kernel) the posterior is under.
        nuts: the full run: draws (C, S, P), R-hat, ESS, divergences, time.
        draws_KP: the thinned draws of φ used for the predictive, shape (K, P).
        x_ctx_ND: the context inputs (model units, used features only), float64.
        y_ctx_N: the context targets, float64.
    """

    hyperprior: GPHyperprior
    nuts: NUTSResult
    draws_KP: Tensor
    x_ctx_ND: Tensor
    y_ctx_N: Tensor

    @property
    def trusted(self) -> bool:
        return self.nuts.trusted

    @property
    def reason(self) -> str:
        return self.nuts.reason

    def hyperparameters(self) -> dict[str, Tensor]:
        """The thinned draws in model units: lengthscale (K, d), outputscale (K,), noise (K,)."""
        unpacked = [self.hyperprior.unpack(phi_P) for phi_P in self.draws_KP]
        return {
            "lengthscale": torch.stack([u[0] for u in unpacked]),
            "outputscale": torch.stack([u[1] for u in unpacked]),
            "noise": torch.stack([u[2] for u in unpacked]),
        }

    def predictive(self, x_qry_MD: Tensor) -> GaussianMixturePredictive:
        """The posterior predictive of y at the query inputs (model units, used features)."""
        means, variances = [], []
        x_qry_MD = x_qry_MD.to(_DTYPE)
        for phi_P in self.draws_KP:
            gp = exact_gp_predictive(
                self.x_ctx_ND, self.y_ctx_N, x_qry_MD, self.hyperprior.to_gp_hyperparameters(phi_P)
            )
            means.append(gp.mean)
            variances.append(gp.variance)
        return GaussianMixturePredictive(torch.stack(means), torch.stack(variances))


def _kernel_of_distance(kernel: str, r: Tensor) -> Tensor:
    """k(r) / outputscale for the scaled distance r = |(x - x') / lengthscale|."""
    if kernel == "rbf":
        return torch.exp(-0.5 * r * r)
    if kernel == "matern12":
        return torch.exp(-r)
    if kernel == "matern32":
        s = math.sqrt(3.0) * r
        return (1.0 + s) * torch.exp(-s)
    s = math.sqrt(5.0) * r  # matern52
    return (1.0 + s + s * s / 3.0) * torch.exp(-s)


def cholesky_lml_fn(
    x_ctx_ND: Tensor, y_ctx_N: Tensor, *, kernel: str
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The exact GP log marginal likelihood as a plain-torch function of the hyperparameters.

    Same contract as `exact_gp.log_marginal_likelihood_fn` (zero mean, a scaled ARD kernel,
    Gaussian noise; lengthscales (D,) or (1,), 0-d outputscale and noise; the total
    ``log p(y | x, θ)``), but one Cholesky factorisation with no gpytorch model in between:
    NUTS calls it thousands of times per task. It returns -inf where the covariance is not
    numerically positive definite, which NUTS treats as a divergence.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {KERNELS}")
    check_finite("x_ctx", x_ctx_ND)
    check_finite("y_ctx", y_ctx_N)
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    n_points, n_features = x_ctx_ND.shape
    diff_NND = x_ctx_ND[:, None, :] - x_ctx_ND[None, :, :]
    eye_NN = torch.eye(n_points, dtype=_DTYPE)
    constant = 0.5 * n_points * math.log(2.0 * math.pi)

    def lml(lengthscale_D: Tensor, outputscale: Tensor, noise: Tensor) -> Tensor:
        if lengthscale_D.numel() not in (1, n_features):
            raise ValueError(
                f"lengthscale has {lengthscale_D.numel()} entries but x has {n_features} "
                "features; pass one per feature or a single shared value"
            )
        squared_NN = (diff_NND / lengthscale_D.to(_DTYPE).reshape(-1)).pow(2).sum(-1)
        # the diagonal's distance is exactly 0; clamping keeps sqrt's gradient finite there
        r_NN = squared_NN.clamp_min(1e-300).sqrt()
        cov_NN = outputscale.to(_DTYPE) * _kernel_of_distance(kernel, r_NN)
        cov_NN = cov_NN + noise.to(_DTYPE) * eye_NN
        chol_NN, info = torch.linalg.cholesky_ex(cov_NN)
        if int(info) != 0:
            return lengthscale_D.sum() * 0.0 - math.inf
        alpha_N = torch.cholesky_solve(y_ctx_N[:, None], chol_NN)[:, 0]
        return -0.5 * (y_ctx_N @ alpha_N) - chol_NN.diagonal().log().sum() - constant

    return lml


def _log_posterior(
    x_ctx_ND: Tensor, y_ctx_N: Tensor, hyperprior: GPHyperprior
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], bool]]:
    """The unnormalised log posterior of φ, and a check that it is finite at a point."""
    lml = cholesky_lml_fn(x_ctx_ND, y_ctx_N, kernel=hyperprior.kernel)

    def log_density(phi_P: Tensor) -> Tensor:
        return hyperprior.log_prob(phi_P) + lml(*hyperprior.unpack(phi_P))

    def finite_at(phi_P: Tensor) -> bool:
        with torch.no_grad():
            return bool(torch.isfinite(log_density(phi_P)))

    return log_density, finite_at


def _starts(
    hyperprior: GPHyperprior,
    num_chains: int,
    finite_at: Callable[[Tensor], bool],
    generator: torch.Generator,
) -> Tensor:
    """One start per chain, drawn from the hyperprior where the posterior is finite."""
    starts = []
    for _ in range(num_chains):
        for _ in range(_MAX_START_TRIES):
            phi_P = hyperprior.sample_unconstrained(1, generator)[0]
            if finite_at(phi_P):
                starts.append(phi_P)
                break
        else:
            raise RuntimeError(
                f"no start with a finite log posterior in {_MAX_START_TRIES} hyperprior "
                "draws; check that the data are finite and the hyperprior is sensible"
            )
    return torch.stack(starts)


def _in_theta(run: NUTSResult, whitening: Whitening) -> NUTSResult:
    """The run with its draws mapped back to φ and R-hat and ESS recomputed there."""
    samples_CSP = whitening.to_theta(run.samples)
    return dataclasses.replace(
        run,
        samples=samples_CSP,
        r_hat=split_gelman_rubin(samples_CSP, chain_dim=0, sample_dim=1),
        ess=effective_sample_size(samples_CSP, chain_dim=0, sample_dim=1),
    )


def _thin(samples_SP: Tensor, count: int) -> Tensor:
    """`count` evenly spaced rows (all of them when there are fewer)."""
    total = samples_SP.shape[0]
    if total <= count:
        return samples_SP
    index = torch.linspace(0, total - 1, count, dtype=_DTYPE).round().long()
    return samples_SP[index]


def gp_hyperparameter_posterior(
    x_ctx_ND: Tensor,
    y_ctx_N: Tensor,
    hyperprior: GPHyperprior,
    config: NUTSConfig,
    *,
    seed: int,
    predictive_draws: int = 100,
) -> GPHyperPosterior:
    """Sample the GP hyperparameters of one context set with NUTS.

    Args:
        x_ctx_ND: context inputs in the model's units, used features only, shape (N, d).
        y_ctx_N: context targets, shape (N,).
        hyperprior: from the card, e.g. ``GPHyperprior.from_prior_config(card[
            "prior_config"], d)``; its number of lengthscales must equal d.
        config: NUTS budget and gates (R-hat, ESS, time cap).
        seed: seeds the chain starts (hyperprior draws) and the chains.
        predictive_draws: evenly spaced draws kept for the predictive mixture.

    Returns:
        The posterior; check ``trusted`` (and ``reason``) before relying on it.
    """
    if x_ctx_ND.ndim != 2 or x_ctx_ND.shape[1] != hyperprior.num_features:
        raise ValueError(
            f"x_ctx must have shape (N, {hyperprior.num_features}) to match the hyperprior's "
            f"lengthscales, got {tuple(x_ctx_ND.shape)}"
        )
    if hyperprior.num_parameters == 0:
        raise ValueError(
            "every hyperparameter is fixed, so there is nothing to sample; use "
            "exact_gp_predictive at the fixed values"
        )
    if predictive_draws < 1:
        raise ValueError(f"predictive_draws must be positive, got {predictive_draws}")
    check_finite("x_ctx", x_ctx_ND)
    check_finite("y_ctx", y_ctx_N)
    x_ctx_ND, y_ctx_N = x_ctx_ND.to(_DTYPE).detach(), y_ctx_N.to(_DTYPE).detach()
    log_density, finite_at = _log_posterior(x_ctx_ND, y_ctx_N, hyperprior)
    generator = torch.Generator().manual_seed(seed)
    initial_CP = _starts(hyperprior, config.num_chains, finite_at, generator)
    whitening = laplace_whitening(log_density, initial_CP)
    run = run_nuts(whitening.wrap(log_density), whitening.to_z(initial_CP), config, seed=seed)
    result = _in_theta(run, whitening)
    if not result.trusted:
        logger.info("GP hyperparameter NUTS run untrusted: %s", result.reason)
    return GPHyperPosterior(
        hyperprior=hyperprior,
        nuts=result,
        draws_KP=_thin(result.flat_samples(), predictive_draws),
        x_ctx_ND=x_ctx_ND,
        y_ctx_N=y_ctx_N,
    )
