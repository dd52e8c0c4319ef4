"""The convergence gate of a NUTS run: its budget and thresholds, draws and diagnostics.

A run is *trusted* only if every gated quantity's split R-hat is below ``r_hat_max``, its
effective sample size reaches ``min_ess``, and no chain was skipped by the time cap. The
gated quantities are the parameters themselves unless the caller passes ``gate_fn``: a
posterior whose parameters are not identifiable (a neural network's hidden units can be
permuted and, for odd activations, sign-flipped without changing the function) has
chains that sit in equivalent modes, so the parameters' R-hat stays large while every
prediction has converged; there the gate belongs on the predictions.

Both diagnostics are pyro's classic estimators on the raw draws (split Gelman-Rubin and
Geyer's initial-monotone ESS; Gelman et al., *BDA3*, ch. 11), not the
rank-normalised variants of Vehtari et al. (arXiv 1903.08008).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro.ops.stats import effective_sample_size, split_gelman_rubin
from torch import Tensor

__all__ = ["NUTSConfig", "NUTSResult", "convergence_diagnostics"]

_MIN_SAMPLES = 4  # split R-hat halves each chain; each half needs at least two draws


@dataclass(frozen=True, kw_only=True)
class NUTSConfig:
    """Budget and convergence gates of a NUTS run.

    Attributes:
        num_chains: independent chains, run one after another; one start each.
        warmup: adaptation steps per chain (step size and diagonal or dense mass
            matrix), discarded.
        num_samples: kept draws per chain.
        max_tree_depth: NUTS doubles its trajectory at most this often, i.e. at most
            ``2**max_tree_depth`` leapfrog steps per draw.
        target_accept_prob: dual-averaging target for the step size; raise it (e.g.
            0.95) when divergences appear.
        dense_mass: adapt a dense mass matrix instead of a diagonal one; helps on
            strongly correlated posteriors, costs O(P²) per step.
        jit_compile: trace the log density with `torch.jit.trace` before sampling. The
            callable must then be traceable: no Python control flow on tensor values.
        time_cap_seconds: if set, no further chain starts once this much wall time has
            passed, and the run is untrusted. It is checked between chains: the first
            chain always runs and a chain in progress always finishes.
        r_hat_max: every gated quantity's split R-hat (each parameter's, unless
            `run_nuts` gets a ``gate_fn``) must lie strictly below this.
        min_ess: every gated quantity's effective sample size (all chains together)
            must reach this. To ask for a fraction f of all draws, pass
            ``f * num_chains * num_samples``.
    """

    num_chains: int = 4
    warmup: int = 500
    num_samples: int = 1000
    max_tree_depth: int = 10
    target_accept_prob: float = 0.8
    dense_mass: bool = False
    jit_compile: bool = False
    time_cap_seconds: float | None = None
    r_hat_max: float = 1.01
    min_ess: float = 100.0

    def __post_init__(self) -> None:
        if self.num_chains < 1:
            raise ValueError(f"num_chains must be at least 1, got {self.num_chains}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be non-negative, got {self.warmup}")
        if self.num_samples < _MIN_SAMPLES:
            raise ValueError(
                f"num_samples must be at least {_MIN_SAMPLES} for split R-hat, "
                f"got {self.num_samples}"
            )
        if self.max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be at least 1, got {self.max_tree_depth}")
        if not 0.0 < self.target_accept_prob < 1.0:
            raise ValueError(
                f"target_accept_prob must lie strictly between 0 and 1, "
                f"got {self.target_accept_prob}"
            )
        if self.time_cap_seconds is not None and not self.time_cap_seconds > 0:
            raise ValueError(
                f"time_cap_seconds must be positive or None, got {self.time_cap_seconds}"
            )
        if not self.r_hat_max > 1.0:
            raise ValueError(f"r_hat_max must exceed 1 (e.g. 1.01), got {self.r_hat_max}")
        if not self.min_ess >= 0:
            raise ValueError(f"min_ess must be non-negative, got {self.min_ess}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NUTSConfig:
        """Inverse of `to_dict`."""
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class NUTSResult:
    """Draws and diagnostics of a NUTS run.

    Attributes:
        samples: kept draws, shape (C, S, P) for C completed chains, float64.
        r_hat: split R-hat per gated quantity, shape (Q,); Q = P when gated on the
            parameters.
        ess: effective sample size per gated quantity over all chains, shape (Q,).
        divergences: divergent transitions after warmup, summed over chains.
        acceptance_rates: post-warmup acceptance rate of each completed chain.
        wall_seconds: wall time of the whole run, tracing and ``gate_fn`` included.
        time_cap_hit: True if the time cap stopped the run before all chains ran.
        seed: the seed the run was started with.
        config: the configuration (budget and gates) the run used.
        gated_on: what R-hat and ESS were computed on: "parameters", or the
            ``gate_fn`` description.
    """

    samples: Tensor
    r_hat: Tensor
    ess: Tensor
    divergences: int
    acceptance_rates: tuple[float, ...]
    wall_seconds: float
    time_cap_hit: bool
    seed: int
    config: NUTSConfig
    gated_on: str = "parameters"

    @property
    def num_chains_completed(self) -> int:
        """Chains that ran to the end (fewer than requested if the time cap hit)."""
        return self.samples.shape[0]

    @property
    def max_r_hat(self) -> float:
        """Worst split R-hat over gated quantities; NaN propagates (and fails the gate)."""
        return float(self.r_hat.max())

    @property
    def min_ess(self) -> float:
        """Smallest effective sample size over gated quantities."""
        return float(self.ess.min())

    @property
    def reason(self) -> str:
        """Why the run is untrusted, one clause per failed gate; empty when trusted."""
        problems = []
        gates = self.config
        if not self.max_r_hat < gates.r_hat_max:
            problems.append(f"max R-hat {self.max_r_hat:.4g} is not below {gates.r_hat_max}")
        if not self.min_ess >= gates.min_ess:
            problems.append(f"min ESS {self.min_ess:.1f} is below {gates.min_ess}")
        if self.time_cap_hit:
            problems.append(
                f"time cap of {gates.time_cap_seconds} s hit after "
                f"{self.num_chains_completed} of {gates.num_chains} chains"
            )
        if not problems:
            return ""
        return "; ".join(problems) + " (run longer chains, more warmup, or better starts)"

    @property
    def trusted(self) -> bool:
        """True when R-hat, ESS and the time cap all pass."""
        return not self.reason

    def flat_samples(self) -> Tensor:
        """All draws with chains concatenated, shape (C·S, P)."""
        return self.samples.reshape(-1, self.samples.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        """Diagnostics and budget as plain data for JSON (the draws are left out)."""
        return {
            "trusted": self.trusted,
            "reason": self.reason,
            "max_r_hat": self.max_r_hat,
            "min_ess": self.min_ess,
            "r_hat": self.r_hat.tolist(),
            "ess": self.ess.tolist(),
            "divergences": self.divergences,
            "acceptance_rates": list(self.acceptance_rates),
            "num_chains_completed": self.num_chains_completed,
            "num_parameters": self.samples.shape[-1],
            "wall_seconds": self.wall_seconds,
            "time_cap_hit": self.time_cap_hit,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "gated_on": self.gated_on,
        }


def convergence_diagnostics(
    samples_CSP: Tensor, gate_fn: Callable[[Tensor], Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """Split R-hat and ESS (all chains together), shape (Q,) each, of the gated quantities.

    Args:
        samples_CSP: draws of C chains, S each, of P parameters, float64.
        gate_fn: maps draws (N, P) to the quantities (N, Q) that gate the run (see
            `run_nuts`); None gates on the parameters (Q = P).
    """
    gated_CSQ = samples_CSP
    if gate_fn is not None:
        num_chains, num_samples, num_params = samples_CSP.shape
        with torch.no_grad():
            gated_NQ = gate_fn(samples_CSP.reshape(-1, num_params))
        if gated_NQ.ndim != 2 or gated_NQ.shape[0] != num_chains * num_samples:
            raise ValueError(
                f"gate_fn must map draws (N, P) to (N, Q); got {tuple(gated_NQ.shape)} "
                f"for N = {num_chains * num_samples}"
            )
        gated_CSQ = gated_NQ.reshape(num_chains, num_samples, -1).to(torch.float64)
    r_hat = split_gelman_rubin(gated_CSQ, chain_dim=0, sample_dim=1)
    return r_hat, effective_sample_size(gated_CSQ, chain_dim=0, sample_dim=1)
