"""The Bayes-optimal GP predictive under hyperpriors: NUTS over the hyperparameters.

For one context set, NUTS samples the posterior of the GP's unconstrained hyperparameters
φ (log-lengthscales, log-outputscale, log-noise, log linear weights when the prior has a
linear part, or their logistic counterparts; see `GPHyperprior`):

    log p(φ | x, y) = log p(φ) + log p(y | x, φ) + const,

with the hyperprior density from the checkpoint card (`GPHyperprior`) and the exact
marginal likelihood in float64 (`cholesky_lml_fn` in `pfnkit.reference.gp_cholesky`: one
Cholesky factorisation in plain torch, which equals gpytorch's `log_marginal_likelihood_fn`
to rounding, a test checks, at a third of its cost per gradient on small contexts; it
includes the linear part Σ_j v_j x_j x'_j when there is one). The
posterior predictive at query points is the equal-weight mixture of the exact GP
predictives at a thinned set of draws, p(y* | x*, x, y) ≈ (1/K) Σ_k N(y*; μ_k, σ_k²),
scored with `mc_predictive_log_prob`: gpytorch's `exact_gp_predictive` for a stationary
GP, `cholesky_gp_predictive` when there is a linear part (gpytorch's LinearKernel has one
variance for all features, the prior one per feature). NUTS runs on φ whitened around its
mode (`laplace_whitening`, a linear map, so the draws stay exact), which cuts the leapfrog steps
per draw several-fold. A run is trusted only when `run_nuts`'s R-hat, ESS and time-cap
gates pass, evaluated on φ; untrusted runs are returned, flagged, never dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints

from pfnkit.data import check_finite
from pfnkit.reference.exact_gp import exact_gp_predictive
from pfnkit.reference.gp_cholesky import (
    LinearGPHyperparameters,
    cholesky_gp_predictive,
    cholesky_lml_fn,
)
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
        """The thinned draws in model units.

        Returns:
            lengthscale (K, d), outputscale (K,), noise (K,), and with a linear part also
            linear_variance (the v_j, K × d).
        """
        unpacked = [self.hyperprior.unpack(phi_P) for phi_P in self.draws_KP]
        drawn = {
            "lengthscale": torch.stack([u[0] for u in unpacked]),
            "outputscale": torch.stack([u[1] for u in unpacked]),
            "noise": torch.stack([u[2] for u in unpacked]),
        }
        if self.hyperprior.has_linear:
            drawn["linear_variance"] = torch.stack([u[3] for u in unpacked])
        return drawn

    def predictive(self, x_qry_MD: Tensor) -> GaussianMixturePredictive:
        """The posterior predictive of y at the query inputs (model units, used features)."""
        means, variances = [], []
        x_qry_MD = x_qry_MD.to(_DTYPE)
        for phi_P in self.draws_KP:
            hyper = self.hyperprior.to_gp_hyperparameters(phi_P)
            exact = (
                cholesky_gp_predictive
                if isinstance(hyper, LinearGPHyperparameters)
                else exact_gp_predictive
            )
            gp = exact(self.x_ctx_ND, self.y_ctx_N, x_qry_MD, hyper)
            means.append(gp.mean)
            variances.append(gp.variance)
        return GaussianMixturePredictive(torch.stack(means), torch.stack(variances))


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
            "prior_config"], d)``; its number of lengthscales must equal d. With a linear
            part, its d linear weights are sampled too.
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
