"""Meta-prior over Gaussian-mixture priors on θ, with Gaussian or logistic simulators.

Each task draws a Gaussian mixture prior over θ ∈ R^d, then θ from that mixture, then N
observations from a simulator given θ. This is the training distribution of the
Distribution Transformer (Whittle et al., arXiv 2502.02463), which maps a prior (the
mixture) and data to a posterior (another mixture).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pfnkit.data import Batch

__all__ = ["SIMULATORS", "GMMPrior", "GMMPriorConfig"]

SIMULATORS: tuple[str, ...] = ("gaussian", "logistic")
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, kw_only=True)
class GMMPriorConfig:
    """Tasks: a random GMM prior over θ ∈ R^d, θ drawn from it, and N simulated observations.

    Attributes:
        dim: dimension d of θ.
        k_min: fewest mixture components. K is drawn uniformly from [k_min, k_max] once per
            `GMMPrior.sample` call and shared by every task of that batch.
        k_max: most mixture components.
        concentration: symmetric Dirichlet concentration of the mixture weights. The
            weights are normalised Gamma(concentration) variates drawn from the passed
            generator (Marsaglia-Tsang rejection), kept in log space.
        mean_scale: component means are drawn from N(0, mean_scale² I).
        scale_min: component standard deviations (square roots of the covariance
            eigenvalues) are log-uniform in [scale_min, scale_max].
        scale_max: see scale_min.
        simulator: "gaussian" (x ~ N(θ, obs_cov), conjugate) or "logistic"
            (a ~ N(0, I_d), y ~ Bernoulli(sigmoid(aᵀθ)), non-conjugate).
        obs_cov: observation covariance of the "gaussian" simulator, a (d, d) symmetric
            positive definite matrix given as nested sequences; None means the identity.
            Stored as a tuple of tuples; `to_dict` writes nested lists.
    """

    dim: int = 2
    k_min: int = 1
    k_max: int = 4
    concentration: float = 1.0
    mean_scale: float = 2.0
    scale_min: float = 0.3
    scale_max: float = 3.0
    simulator: str = "gaussian"
    obs_cov: Sequence[Sequence[float]] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, got {self.dim}")
        if not 1 <= self.k_min <= self.k_max:
            raise ValueError(
                f"need 1 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}"
            )
        for name in ("concentration", "mean_scale"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value}")
            object.__setattr__(self, name, value)
        if not (0 < self.scale_min <= self.scale_max < math.inf):
            raise ValueError(
                f"need 0 < scale_min <= scale_max < inf, got {self.scale_min}, {self.scale_max}"
            )
        object.__setattr__(self, "scale_min", float(self.scale_min))
        object.__setattr__(self, "scale_max", float(self.scale_max))
        if self.simulator not in SIMULATORS:
            raise ValueError(f"unknown simulator {self.simulator!r}; choose from {SIMULATORS}")
        object.__setattr__(self, "obs_cov", _validated_obs_cov(self.obs_cov, self.dim))

    @property
    def obs_dim(self) -> int:
        """Length of one observation vector: d (gaussian) or d + 1 for (a, y) (logistic)."""
        return self.dim if self.simulator == "gaussian" else self.dim + 1

    @property
    def num_features(self) -> int:
        """Feature count D of `Batch.x_ctx`, equal to `obs_dim`."""
        return self.obs_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (obs_cov as nested lists)."""
        data = dataclasses.asdict(self)
        data["obs_cov"] = [list(row) for row in self.obs_cov]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GMMPriorConfig:
        """Inverse of `to_dict`."""
        return cls(**data)


def _validated_obs_cov(
    obs_cov: Sequence[Sequence[float]] | None, dim: int
) -> tuple[tuple[float, ...], ...]:
    """The observation covariance as a tuple of tuples, checked symmetric positive definite."""
    if obs_cov is None:
        return tuple(tuple(float(i == j) for j in range(dim)) for i in range(dim))
    try:
        cov = torch.as_tensor(obs_cov, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"obs_cov must be a (d, d) nested list of numbers: {err}") from err
    if tuple(cov.shape) != (dim, dim):
        raise ValueError(
            f"obs_cov must have shape ({dim}, {dim}) for dim={dim}, got {tuple(cov.shape)}"
        )
    if not torch.isfinite(cov).all():
        raise ValueError("obs_cov contains NaN or infinite entries")
    if not torch.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ValueError("obs_cov must be symmetric")
    if torch.linalg.cholesky_ex(cov).info != 0:
        raise ValueError("obs_cov must be positive definite; its Cholesky factorisation failed")
    return tuple(tuple(float(v) for v in row) for row in cov.tolist())


def _log_gamma_variates(shape: tuple[int, ...], alpha: float, generator: torch.Generator) -> Tensor:
    """log of Gamma(alpha, 1) draws, float64, from `generator` only.

    Marsaglia & Tsang's (2000) squeeze-rejection method for alpha >= 1, vectorised: every
    round redraws all still-rejected entries (acceptance is above 95%). For alpha < 1 it
    uses the boost Gamma(alpha) = Gamma(alpha + 1) · U^(1/alpha), kept in log space so small
    alphas do not underflow to zero.
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    log_g = torch.empty(shape, dtype=torch.float64)
    pending = torch.ones(shape, dtype=torch.bool)
    while bool(pending.any()):
        n = int(pending.sum())
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        v_safe = v.clamp_min(1e-300)
        accept = (v > 0) & (u.log() < 0.5 * z**2 + d - d * v_safe + d * v_safe.log())
        idx = pending.nonzero(as_tuple=True)
        log_g[tuple(i[accept] for i in idx)] = math.log(d) + v_safe[accept].log()
        pending[tuple(i[accept] for i in idx)] = False
    if boost:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        log_g = log_g + u.clamp_min(torch.finfo(torch.float64).tiny).log() / alpha
    return log_g


def _random_rotations(batch: int, dim: int, generator: torch.Generator) -> Tensor:
    """Haar-distributed orthogonal matrices (batch, dim, dim): QR of a Gaussian, sign-fixed."""
    g = torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2)


def _lower_cholesky_of_product(a_BDD: Tensor) -> Tensor:
    """Lower Cholesky factor L of A Aᵀ, via QR of Aᵀ (no Cholesky of A Aᵀ, so no squaring)."""
    _, r = torch.linalg.qr(a_BDD.transpose(-1, -2))
    sign = torch.sign(r.diagonal(dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (sign.unsqueeze(-1) * r).transpose(-1, -2)


def _mvn_log_density(x: Tensor, loc: Tensor, scale_tril: Tensor) -> Tensor:
    """log N(x; loc, L Lᵀ) over the last axis, broadcasting the leading axes."""
    diff = (x - loc).unsqueeze(-1)
    z = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)
    log_det = scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * z.pow(2).sum(-1) - log_det - 0.5 * x.shape[-1] * _LOG_2PI


class GMMPrior:
    """Batched sampler of GMM-prior tasks with a log-joint for MCMC references.

    `sample` returns a `Batch` laid out for the Distribution Transformer:

    - ``x_ctx`` (B, N, obs_dim): the observations. "gaussian": x_i ∈ R^d.
      "logistic": (a_i, y_i) ∈ R^(d+1), the design row then the 0/1 label.
    - ``y_ctx`` (B, N): zeros, unused (the labels live in ``x_ctx``).
    - ``x_qry`` (B, 0, obs_dim) and ``y_qry`` (B, 0): empty; ``n_qry`` is ignored.
    - ``meta``: "theta" (B, d) the true parameter, "prior_logits" (B, K) log mixture
      weights (normalised), "prior_means" (B, K, d), "prior_scale_tril" (B, K, d, d) lower
      Cholesky factors of the component covariances.
    """

    def __init__(self, config: GMMPriorConfig | None = None) -> None:
        self.config = config or GMMPriorConfig()
        self._obs_chol_DD = torch.linalg.cholesky(
            torch.tensor(self.config.obs_cov, dtype=torch.float64)
        )

    def sample_gmm(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Per-task mixture priors, float64, with one K for the whole batch.

        Returns:
            "prior_logits" (B, K), "prior_means" (B, K, d), "prior_scale_tril" (B, K, d, d).
        """
        cfg = self.config
        n_comp = int(torch.randint(cfg.k_min, cfg.k_max + 1, (1,), generator=generator))
        # Dirichlet weights as normalised Gamma draws; the log-sum-exp keeps them in log space.
        log_gamma_BK = _log_gamma_variates((batch_size, n_comp), cfg.concentration, generator)
        logits_BK = log_gamma_BK - torch.logsumexp(log_gamma_BK, dim=-1, keepdim=True)
        means_BKD = cfg.mean_scale * torch.randn(
            batch_size, n_comp, cfg.dim, generator=generator, dtype=torch.float64
        )
        log_lo, log_hi = math.log(cfg.scale_min), math.log(cfg.scale_max)
        u_BKD = torch.rand(batch_size, n_comp, cfg.dim, generator=generator, dtype=torch.float64)
        scales_BKD = torch.exp(log_lo + (log_hi - log_lo) * u_BKD)
        rot_TDD = _random_rotations(batch_size * n_comp, cfg.dim, generator)
        # Σ = R diag(s²) Rᵀ = A Aᵀ with A = R diag(s).
        a_TDD = rot_TDD * scales_BKD.reshape(-1, 1, cfg.dim)
        scale_tril_BKDD = _lower_cholesky_of_product(a_TDD).reshape(
            batch_size, n_comp, cfg.dim, cfg.dim
        )
        return {
            "prior_logits": logits_BK,
            "prior_means": means_BKD,
            "prior_scale_tril": scale_tril_BKDD,
        }

    def _simulate(self, theta_BD: Tensor, n_obs: int, generator: torch.Generator) -> Tensor:
        """Observations (B, N, obs_dim) in float64 given θ."""
        cfg = self.config
        batch_size = theta_BD.shape[0]
        noise_BND = torch.randn(
            batch_size, n_obs, cfg.dim, generator=generator, dtype=torch.float64
        )
        if cfg.simulator == "gaussian":
            return theta_BD.unsqueeze(1) + noise_BND @ self._obs_chol_DD.T
        design_BND = noise_BND
        logit_BN = (design_BND * theta_BD.unsqueeze(1)).sum(-1)
        u_BN = torch.rand(batch_size, n_obs, generator=generator, dtype=torch.float64)
        label_BN = (u_BN < torch.sigmoid(logit_BN)).to(torch.float64)
        return torch.cat([design_BND, label_BN.unsqueeze(-1)], dim=-1)

    def model_sizes(self, kind: str) -> dict[str, int]:
        """A Distribution Transformer's θ dimension, observation length and component count."""
        if kind != "dt":
            raise ValueError(
                f"a GMM prior trains a Distribution Transformer ([model] kind = 'dt'), not {kind!r}"
            )
        cfg = self.config
        return {"dim": cfg.dim, "obs_dim": cfg.obs_dim, "k_max": cfg.k_max}

    def card_data_mapping(self, declared: dict[str, str] | None) -> dict[str, str] | None:
        """`declared` unchanged: a GMM prior has no tabular data mapping to check."""
        return declared

    def sample(
        self,
        batch_size: int,
        n_ctx: int,
        n_qry: int = 0,
        *,
        generator: torch.Generator,
        dtype: torch.dtype = torch.float32,
    ) -> Batch:
        """Draw `batch_size` tasks with `n_ctx` observations each (N = 0 is allowed).

        Args:
            batch_size: number of tasks B.
            n_ctx: observations per task N.
            n_qry: ignored; the batch has no query points.
            generator: the only source of randomness.
            dtype: floating dtype of every returned tensor (sampling runs in float64).
        """
        if batch_size < 1 or n_ctx < 0:
            raise ValueError(f"need batch_size >= 1 and n_ctx >= 0, got {batch_size}, {n_ctx}")
        cfg = self.config
        gmm = self.sample_gmm(batch_size, generator)
        comp_B = torch.multinomial(gmm["prior_logits"].exp(), 1, generator=generator).squeeze(-1)
        rows = torch.arange(batch_size)
        z_BD1 = torch.randn(batch_size, cfg.dim, 1, generator=generator, dtype=torch.float64)
        theta_BD = gmm["prior_means"][rows, comp_B] + (
            gmm["prior_scale_tril"][rows, comp_B] @ z_BD1
        ).squeeze(-1)
        obs_BND = self._simulate(theta_BD, n_ctx, generator)
        meta = {"theta": theta_BD, **gmm}
        return Batch(
            x_ctx=obs_BND.to(dtype),
            y_ctx=torch.zeros(batch_size, n_ctx, dtype=dtype),
            x_qry=torch.zeros(batch_size, 0, cfg.obs_dim, dtype=dtype),
            y_qry=torch.zeros(batch_size, 0, dtype=dtype),
            meta={k: v.to(dtype) for k, v in meta.items()},
        )

    def log_likelihood(self, theta_BD: Tensor, x_ctx_BND: Tensor) -> Tensor:
        """log p(x_1..N | θ) summed over observations, differentiable in θ.

        Runs in the dtype of ``theta_BD`` (use float64 for MCMC). Leading axes broadcast:
        θ (..., d) against observations (..., N, obs_dim).

        Returns:
            Shape (B,) (the broadcast leading shape); zeros when N = 0.
        """
        cfg = self.config
        if theta_BD.shape[-1] != cfg.dim or x_ctx_BND.shape[-1] != cfg.obs_dim:
            raise ValueError(
                f"expected theta (..., {cfg.dim}) and x_ctx (..., N, {cfg.obs_dim}), got "
                f"{tuple(theta_BD.shape)} and {tuple(x_ctx_BND.shape)}"
            )
        x_ctx_BND = x_ctx_BND.to(theta_BD)
        if cfg.simulator == "gaussian":
            chol_DD = self._obs_chol_DD.to(theta_BD)
            per_obs = _mvn_log_density(x_ctx_BND, theta_BD.unsqueeze(-2), chol_DD)
            return per_obs.sum(-1)
        design_BND, label_BN = x_ctx_BND[..., : cfg.dim], x_ctx_BND[..., cfg.dim]
        logit_BN = (design_BND * theta_BD.unsqueeze(-2)).sum(-1)
        # log sigmoid(l) for y = 1 and log sigmoid(-l) for y = 0.
        return (label_BN * logit_BN - F.softplus(logit_BN)).sum(-1)

    def log_prior(self, theta_BD: Tensor, meta: Mapping[str, Tensor]) -> Tensor:
        """log p(θ) under each task's mixture prior in ``meta`` (as `sample` returns it).

        Runs in the dtype of ``theta_BD``; differentiable in θ. θ may carry extra leading
        sample axes before the batch axis: shape (..., B, d) gives (..., B).
        """
        logits_BK = torch.log_softmax(meta["prior_logits"].to(theta_BD), dim=-1)
        means_BKD = meta["prior_means"].to(theta_BD)
        scale_tril_BKDD = meta["prior_scale_tril"].to(theta_BD)
        if theta_BD.shape[-1] != means_BKD.shape[-1]:
            raise ValueError(
                f"theta has {theta_BD.shape[-1]} dimensions but the prior has {means_BKD.shape[-1]}"
            )
        log_comp_BK = _mvn_log_density(theta_BD.unsqueeze(-2), means_BKD, scale_tril_BKDD)
        return torch.logsumexp(logits_BK + log_comp_BK, dim=-1)

    def log_joint(self, params_SP: Tensor, task: Batch) -> Tensor:
        """log p(θ) + log p(x_ctx | θ) for S draws θ of one task (`pfnkit.data.LogJointPrior`).

        Args:
            params_SP: S draws of θ, shape (S, d); the dtype sets the precision.
            task: a one-task batch (as `sample` returns it) with its mixture prior in meta.

        Returns:
            Shape (S,); differentiable in ``params_SP``.
        """
        if task.batch_size != 1 or params_SP.ndim != 2:
            raise ValueError(
                f"log_joint takes θ (S, d) and a one-task batch, got θ {tuple(params_SP.shape)} "
                f"and {task.batch_size} tasks; use batch.task(i) for task i"
            )
        theta_S1D = params_SP[:, None]
        log_lik_S1 = self.log_likelihood(theta_S1D, task.x_ctx)
        return (log_lik_S1 + self.log_prior(theta_S1D, task.meta))[:, 0]

    @property
    def is_conjugate(self) -> bool:
        """True for the "gaussian" simulator, whose exact posterior is a GMM again."""
        return self.config.simulator == "gaussian"

    @property
    def obs_cov(self) -> Tensor:
        """(d, d) observation covariance of the "gaussian" simulator, float64."""
        if not self.is_conjugate:
            raise ValueError(
                f"obs_cov belongs to the 'gaussian' simulator; this prior's simulator is "
                f"{self.config.simulator!r}"
            )
        return torch.tensor(self.config.obs_cov, dtype=torch.float64)
