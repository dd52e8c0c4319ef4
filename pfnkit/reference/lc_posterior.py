"""NUTS over a parametric learning-curve posterior, and the posterior predictive it gives.

The reference for single-curve extrapolation (LC-PFN, Adriaensen et al., arXiv 2310.20447,
checks its PFN against MCMC the same way). A curve prior with a finite parameter vector θ
(mixture weights, each family's parameters, the noise σ; `priors.learning_curves_parametric`)
answers for itself through `CurvePosteriorPrior`: its ``log_joint`` is the NUTS target,
``param_supports`` lays θ out in blocks with a torch support each, and
``observation_distribution`` is y | θ at given inputs, with σ = θ's last entry. NUTS
(`pfnkit.reference.mcmc`) runs on an unconstrained u ∈ ℝ^U mapped block by block to θ
with torch's ``biject_to`` (stick-breaking for the simplex, logistic for an interval, exp
for a positive value; `SupportBijection`), except that σ's coordinate is log(σ / s(θ)),
s(θ) the context's residual scale (`NoiseRelativeBijection`: it removes the funnel between
σ and the curve's parameters), the log-Jacobian added to the density. The posterior
predictive at query inputs is the equal-weight mixture over the draws,

    p(y* | data) ≈ (1/K) Σ_k N(y*; curve(t* | θ_k), σ_k²),

a `GaussianMixturePredictive`. Chains start from distinct high-density prior draws (a
Gumbel top-C of the log-joint over a pool of them), and the run's R-hat and ESS gate is
placed on what the reference is used for: the noiseless curve at the query inputs and log σ
(a family whose weight is near zero leaves its parameters unidentified, so the gate does
not sit on θ itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Normal, Transform, biject_to, constraints
from torch.distributions.constraints import Constraint
from torch.nn import functional as F

from pfnkit.data import Batch, LogJointPrior
from pfnkit.reference.gp_nuts import GaussianMixturePredictive
from pfnkit.reference.mcmc import NUTSConfig, NUTSResult, run_nuts

__all__ = [
    "DEFAULT_LC_NUTS",
    "CurvePosterior",
    "CurvePosteriorPrior",
    "NoiseRelativeBijection",
    "SupportBijection",
    "curve_bijection",
    "curve_posterior",
    "require_curve_prior",
]

_DTYPE = torch.float64
START_POOL = 2048  # prior draws the chain starts are chosen from
PREDICTIVE_DRAWS = 400  # thinned draws in the predictive mixture
NOISE_FLOOR_DRAWS = 256  # prior draws whose median σ is s0 of `NoiseRelativeBijection`

# 2 chains x (300 warmup + 400 kept draws), dense mass, trees of at most 2**6 - 1 leapfrog
# steps (they mostly reach it: the mixture's weights and its families' parameters trade off
# along curved ridges), no second chain once a task has run for 15 minutes. Measured on a
# shared CPU core for a 10-epoch context of the lc-curve prior, with 300 kept draws: 173 s,
# 58k gradients, max R-hat 1.02 and min ESS 92 on the gated quantities.
DEFAULT_LC_NUTS = NUTSConfig(
    num_chains=2,
    warmup=300,
    num_samples=400,
    max_tree_depth=6,
    target_accept_prob=0.8,
    dense_mass=True,
    time_cap_seconds=900.0,
    r_hat_max=1.05,
    min_ess=100.0,
)


@runtime_checkable
class CurvePosteriorPrior(LogJointPrior, Protocol):
    """A curve prior with a finite θ, its supports, prior draws and y | θ = N(curve, σ²).

    θ's last entry is the noise standard deviation σ, the scale of `observation_distribution`.
    """

    def param_supports(self) -> list[tuple[int, Constraint]]:
        """θ's layout as consecutive (length, support) blocks."""
        ...

    def sample_params(self, n: int, generator: torch.Generator) -> Tensor:
        """n prior draws of θ, (n, P), float64."""
        ...

    def observation_distribution(self, params_SP: Tensor, x_MD: Tensor) -> Normal:
        """y at inputs x (M, D) given each of S draws, batch shape (S, M)."""
        ...


class SupportBijection:
    """ℝ^U → θ ∈ ℝ^P block by block: the transform torch's ``biject_to`` picks per support.

    Scalar supports are real (identity), greater_than(a) (a + exp u) or interval(a, b)
    (a + (b − a) sigmoid u), each kind done for all its entries at once; a simplex block of K
    entries is torch's `StickBreakingTransform` of K − 1 values. The log-Jacobian counts the
    simplex's first K − 1 entries, the coordinates its density is written in.
    """

    def __init__(self, blocks: Sequence[tuple[int, Constraint]]) -> None:
        kinds: dict[str, list[tuple[int, int, float, float]]] = {"real": [], "lower": [],
                                                                  "interval": []}  # fmt: skip
        # (input start, output start, K, stick-breaking transform) per simplex block
        self.simplexes: list[tuple[int, int, int, Transform]] = []
        u_at = theta_at = 0
        for size, support in blocks:
            if isinstance(support, type(constraints.simplex)):
                self.simplexes.append((u_at, theta_at, size, biject_to(support)))
                u_at, theta_at = u_at + size - 1, theta_at + size
                continue
            kind, low, high = _scalar_kind(support)
            for _ in range(size):
                kinds[kind].append((u_at, theta_at, low, high))
                u_at, theta_at = u_at + 1, theta_at + 1
        self.in_size, self.out_size = u_at, theta_at
        self.scalars = {
            kind: tuple(
                torch.tensor(column, dtype=dtype)
                for column, dtype in zip(
                    zip(*rows, strict=True), (torch.long, torch.long, _DTYPE, _DTYPE), strict=True
                )
            )  # fmt: skip
            for kind, rows in kinds.items()
            if rows
        }
        # θ positions in the order __call__ produces them; their inverse permutation
        produced = [i for _, (_, theta_index, _, _) in self.scalars.items()
                    for i in theta_index.tolist()]  # fmt: skip
        for _, theta_start, size, _ in self.simplexes:
            produced += list(range(theta_start, theta_start + size))
        self._unsort = torch.argsort(torch.tensor(produced))

    def __call__(self, u_SU: Tensor) -> tuple[Tensor, Tensor]:
        """θ (S, P) and log |det ∂θ/∂u| (S,)."""
        if u_SU.shape[-1] != self.in_size:
            raise ValueError(f"expected {self.in_size} unconstrained values, got {u_SU.shape[-1]}")
        parts, log_det_S = [], u_SU.new_zeros(u_SU.shape[:-1])
        for kind, (u_index, _, low, high) in self.scalars.items():
            u = u_SU[..., u_index]
            if kind == "real":
                parts.append(u)
            elif kind == "lower":
                parts.append(low.to(u) + u.exp())
                log_det_S = log_det_S + u.sum(-1)
            else:
                width = (high - low).to(u)
                parts.append(low.to(u) + width * torch.sigmoid(u))
                log_sig = F.logsigmoid(u) + F.logsigmoid(-u) + width.log()
                log_det_S = log_det_S + log_sig.sum(-1)
        for u_start, _, size, transform in self.simplexes:
            u_block = u_SU[..., u_start : u_start + size - 1]
            w_block = transform(u_block)
            parts.append(w_block)
            log_det_S = log_det_S + transform.log_abs_det_jacobian(u_block, w_block)
        return torch.cat(parts, dim=-1)[..., self._unsort], log_det_S

    def inverse(self, params_SP: Tensor) -> Tensor:
        """u (S, U) of θ (S, P)."""
        u_SU = params_SP.new_zeros((*params_SP.shape[:-1], self.in_size))
        for kind, (u_index, theta_index, low, high) in self.scalars.items():
            theta = params_SP[..., theta_index]
            if kind == "real":
                u_SU[..., u_index] = theta
            elif kind == "lower":
                u_SU[..., u_index] = (theta - low.to(theta)).log()
            else:
                u_SU[..., u_index] = torch.logit((theta - low.to(theta)) / (high - low).to(theta))
        for u_start, theta_start, size, transform in self.simplexes:
            w_block = params_SP[..., theta_start : theta_start + size]
            u_SU[..., u_start : u_start + size - 1] = transform.inv(w_block)
        return u_SU


class NoiseRelativeBijection:
    """`SupportBijection` with σ (θ's last entry) measured against the context's residuals.

    The last unconstrained coordinate is v = log(σ / s(θ)), s(θ)² = mean residual² of the
    noiseless curve on the context + s0², instead of log σ. σ's conditional posterior sits
    near s(θ), so in v it no longer moves with every change of the curve's parameters (the
    funnel between σ and θ that slows NUTS). θ does not depend on v, so the Jacobian is
    triangular and its log-determinant gains log s(θ).
    """

    def __init__(
        self, base: SupportBijection, observation: Callable[[Tensor, Tensor], Normal],
        x_ctx_ND: Tensor, y_ctx_N: Tensor, floor: float,
    ) -> None:  # fmt: skip
        self.base, self.observation, self.floor = base, observation, floor
        self.x_ctx_ND, self.y_ctx_N = x_ctx_ND, y_ctx_N
        self.in_size, self.out_size = base.in_size, base.out_size

    def _scale(self, params_SP: Tensor) -> Tensor:
        """s(θ), shape (S, 1)."""
        if self.y_ctx_N.numel() == 0:
            return params_SP.new_full((params_SP.shape[0], 1), self.floor)
        residual_SN = self.y_ctx_N - self.observation(params_SP, self.x_ctx_ND).loc
        return (residual_SN.square().mean(-1, keepdim=True) + self.floor**2).sqrt()

    def __call__(self, u_SU: Tensor) -> tuple[Tensor, Tensor]:
        """θ (S, P) and log |det ∂θ/∂u| (S,)."""
        theta_SP, log_det_S = self.base(u_SU)
        scale_S1 = self._scale(theta_SP)
        theta_SP = torch.cat([theta_SP[:, :-1], theta_SP[:, -1:] * scale_S1], dim=-1)
        return theta_SP, log_det_S + scale_S1[:, 0].log()

    def inverse(self, params_SP: Tensor) -> Tensor:
        """u (S, U) of θ (S, P)."""
        relative_S1 = params_SP[:, -1:] / self._scale(params_SP)
        return self.base.inverse(torch.cat([params_SP[:, :-1], relative_S1], dim=-1))


@dataclass(frozen=True)
class CurvePosterior:
    """NUTS draws of one curve's θ and their posterior predictive.

    Attributes:
        run: the NUTS run (draws in the unconstrained space), with its gate.
        params_SP: thinned draws of θ (S, P) that form the predictive mixture.
        observation: y | θ at inputs, the prior's ``observation_distribution``.
    """

    run: NUTSResult
    params_SP: Tensor
    observation: Callable[[Tensor, Tensor], Normal]

    @property
    def trusted(self) -> bool:
        return self.run.trusted

    def predictive(self, x_MD: Tensor) -> GaussianMixturePredictive:
        """(1/S) Σ_s N(curve(x | θ_s), σ_s²) at M inputs, batch shape (M,)."""
        obs = self.observation(self.params_SP, x_MD.to(_DTYPE))
        return GaussianMixturePredictive(obs.loc, obs.scale.square())


def _scalar_kind(support: Constraint) -> tuple[str, float, float]:
    """("real" | "lower" | "interval", lower bound, upper bound) of a scalar support."""
    if support is constraints.real:
        return "real", 0.0, 0.0
    if isinstance(support, type(constraints.positive)):  # greater_than(a)
        return "lower", float(support.lower_bound), 0.0
    if isinstance(support, type(constraints.interval(0.0, 1.0))):
        return "interval", float(support.lower_bound), float(support.upper_bound)
    raise ValueError(
        f"no bijection for the support {support}; a curve prior's parameters must be real, "
        "bounded below, on an interval or on a simplex"
    )


def curve_bijection(
    prior: CurvePosteriorPrior, task: Batch, generator: torch.Generator
) -> NoiseRelativeBijection:
    """The unconstrained parametrisation of a task's θ that NUTS and SMC sample in.

    s0 of `NoiseRelativeBijection` is the median σ of `NOISE_FLOOR_DRAWS` prior draws
    from `generator`; `task` is a float64 one-task batch whose context is conditioned on.
    """
    floor = float(prior.sample_params(NOISE_FLOOR_DRAWS, generator)[:, -1].median())
    return NoiseRelativeBijection(
        SupportBijection(prior.param_supports()), prior.observation_distribution,
        task.x_ctx[0], task.y_ctx[0], floor,
    )  # fmt: skip


def _starts(
    prior: CurvePosteriorPrior, task: Batch, bijection: NoiseRelativeBijection, count: int,
    generator: torch.Generator,
) -> Tensor:  # fmt: skip
    """`count` distinct unconstrained starts: Gumbel top-k of the log-joint over prior draws."""
    pool_SP = prior.sample_params(START_POOL, generator).to(_DTYPE)
    with torch.no_grad():
        log_joint_S = prior.log_joint(pool_SP, task)
    uniform_S = torch.rand(START_POOL, generator=generator, dtype=_DTYPE).clamp_min(1e-300)
    keys_S = log_joint_S - torch.log(-torch.log(uniform_S))  # + Gumbel noise
    return bijection.inverse(pool_SP[keys_S.topk(count).indices])


def _thin(samples_SP: Tensor, count: int) -> Tensor:
    """`count` evenly spaced rows (all of them when there are fewer)."""
    if samples_SP.shape[0] <= count:
        return samples_SP
    return samples_SP[torch.linspace(0, samples_SP.shape[0] - 1, count).round().long()]


def curve_posterior(
    prior: CurvePosteriorPrior,
    task: Batch,
    *,
    nuts: NUTSConfig = DEFAULT_LC_NUTS,
    seed: int = 0,
    gate_x_MD: Tensor | None = None,
    predictive_draws: int = PREDICTIVE_DRAWS,
) -> CurvePosterior:
    """NUTS over θ given one task's context, gated on the curve at `gate_x_MD` and log σ.

    Args:
        prior: the curve prior (its log-joint, supports, draws and y | θ).
        task: a one-task batch; only its context is conditioned on.
        nuts: the NUTS budget and gate.
        seed: seed of the starts and of the chains.
        gate_x_MD: inputs whose noiseless curve values (with log σ) gate the run; the
            task's distinct query inputs when None.
        predictive_draws: thinned draws kept for the predictive mixture.
    """
    task = task.to(_DTYPE)
    generator = torch.Generator().manual_seed(seed)
    bijection = curve_bijection(prior, task, generator)
    gate_x_MD = torch.unique(task.x_qry[0], dim=0) if gate_x_MD is None else gate_x_MD.to(_DTYPE)

    def log_density(u_U: Tensor) -> Tensor:
        theta_1P, log_det_1 = bijection(u_U[None])
        return (prior.log_joint(theta_1P, task) + log_det_1)[0]

    def gate(u_NU: Tensor) -> Tensor:
        obs = prior.observation_distribution(bijection(u_NU)[0], gate_x_MD)
        return torch.cat([obs.loc, obs.scale[:, :1].log()], dim=-1)

    starts = _starts(prior, task, bijection, nuts.num_chains, generator)
    run = run_nuts(log_density, starts, nuts, seed=seed, gate_fn=gate,
                   gate_description="curve at the query inputs and log sigma")  # fmt: skip
    params_SP = bijection(_thin(run.flat_samples(), predictive_draws))[0]
    return CurvePosterior(run=run, params_SP=params_SP, observation=prior.observation_distribution)


def require_curve_prior(prior: Any, user: str) -> CurvePosteriorPrior:
    """`prior`, if it is a `CurvePosteriorPrior`; else a ValueError naming `user`."""
    if not isinstance(prior, CurvePosteriorPrior):
        raise ValueError(
            f"{user} samples a parametric learning-curve posterior and needs a prior "
            "with log_joint, param_supports, sample_params and observation_distribution "
            f"(such as 'lc-parametric'), not {type(prior).__name__}"
        )
    return prior
