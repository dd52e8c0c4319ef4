"""NUTS posterior predictive of a parametric classifier whose weights are not identifiable.

For a Bayesian neural network with weights θ, the Bayes-optimal class probabilities at a
query x are E[p(y | x, θ) | data], estimated by the mean over NUTS draws of θ. The network's
hidden units can be permuted, and a tanh unit's signs flipped, without changing the
function, so chains in equivalent modes disagree on every weight while agreeing on every
prediction. `nuts_class_predictive` therefore gates the run (`run_nuts`'s ``gate_fn``) on
function-level summaries that see no query label: the log-joint (Stan's ``lp__``) and each
class's predicted probability averaged over the query points, at the config's R-hat and
ESS thresholds. It also reports two finer diagnostics:

* the worst R-hat of any single query point's class probabilities. At a few hundred draws
  per chain the maximum over 100 points of R-hat's own sampling noise exceeds 0.01, so
  callers gate it with a looser threshold;
* the spread between chains of the NLL computed from each chain alone, a direct estimate
  of the reference's Monte Carlo error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.ops.stats import split_gelman_rubin
from torch import Tensor
from torch.distributions import Bernoulli, Categorical, Distribution

from pfnkit.reference.mcmc import NUTSConfig, NUTSResult, run_nuts

__all__ = ["GATED_ON", "NUTSClassPredictive", "class_probabilities", "nuts_class_predictive"]

GATED_ON = "log-joint and mean class probabilities over the query points"

# log p(θ) + log p(y | x, θ) of one task: θ (N, P) -> (N,), or (P,) -> 0-d
LogJoint = Callable[[Tensor], Tensor]
# p(y | x_query, θ) for draws θ (N, P): Bernoulli or Categorical with batch shape (N, M)
Predictive = Callable[[Tensor], Distribution]


def class_probabilities(dist: Distribution) -> Tensor:
    """Class probabilities (..., C) of a Bernoulli (C = 2) or Categorical predictive."""
    if isinstance(dist, Bernoulli):
        return torch.stack([1 - dist.probs, dist.probs], dim=-1)
    if isinstance(dist, Categorical):
        return dist.probs
    raise TypeError(f"expected a Bernoulli or Categorical predictive, got {type(dist).__name__}")


@dataclass(frozen=True, kw_only=True)
class NUTSClassPredictive:
    """Per-draw class probabilities at the query points, and the run that drew them.

    Attributes:
        probs_by_chain: p(y = c | x_m, θ) for each chain, draw, query point and class,
            shape (chains, draws, M, C), float64.
        run: the NUTS run, gated on `GATED_ON`.
    """

    probs_by_chain: Tensor
    run: NUTSResult

    @property
    def probs_MC(self) -> Tensor:
        """Posterior predictive class probabilities: the mean over every draw, (M, C)."""
        return self.probs_by_chain.mean(dim=(0, 1))

    def nll(self, y_M: Tensor) -> float:
        """Mean over query points of -log p(y_m | data) under the posterior predictive."""
        return _nll(self.probs_MC, y_M)

    def chain_nll_spread(self, y_M: Tensor) -> float:
        """Max - min over chains of the NLL from that chain's draws alone."""
        nlls = [_nll(chain_SMC.mean(0), y_M) for chain_SMC in self.probs_by_chain]
        return max(nlls) - min(nlls)

    @property
    def max_point_r_hat(self) -> float:
        """Worst split R-hat of one query point's class probability.

        A probability that no draw moves (saturated at 0 or 1 in float64) has no variance
        between or within chains; its R-hat is 0/0 and counts as converged (1.0).
        """
        chains, draws = self.probs_by_chain.shape[:2]
        values_CSQ = self.probs_by_chain.reshape(chains, draws, -1)
        r_hat_Q = split_gelman_rubin(values_CSQ, chain_dim=0, sample_dim=1)
        return float(torch.nan_to_num(r_hat_Q, nan=1.0).max())


def _nll(probs_MC: Tensor, y_M: Tensor) -> float:
    picked_M = probs_MC.gather(-1, y_M.long().unsqueeze(-1)).squeeze(-1)
    return -float(picked_M.clamp_min(torch.finfo(probs_MC.dtype).tiny).log().mean())


def nuts_class_predictive(
    log_joint: LogJoint,
    predictive: Predictive,
    starts_CP: Tensor,
    config: NUTSConfig,
    *,
    seed: int,
) -> NUTSClassPredictive:
    """Run NUTS on one task's weights and return the per-draw query class probabilities.

    Args:
        log_joint: log p(θ) + log p(context | θ); differentiable, float64.
        predictive: class distribution at the query points for a batch of draws.
        starts_CP: one start per chain, e.g. independent draws from the prior.
        config: budget and gates; R-hat and ESS apply to `GATED_ON`.
        seed: run seed (`run_nuts`).
    """

    def summaries(theta_NP: Tensor) -> Tensor:  # (N, 1 + C)
        mean_probs_NC = class_probabilities(predictive(theta_NP)).mean(dim=1)
        return torch.cat([log_joint(theta_NP)[:, None], mean_probs_NC], dim=1)

    run = run_nuts(
        log_joint, starts_CP, config, seed=seed, gate_fn=summaries, gate_description=GATED_ON
    )
    chains, draws, _ = run.samples.shape
    with torch.no_grad():
        probs_NMC = class_probabilities(predictive(run.flat_samples()))
    probs = probs_NMC.reshape(chains, draws, *probs_NMC.shape[1:])
    if not torch.isfinite(probs).all():
        raise ValueError("the predictive returned non-finite class probabilities")
    return NUTSClassPredictive(probs_by_chain=probs, run=run)
