"""NUTS on a log density over a flat unconstrained vector, gated on R-hat and ESS.

This is the sampling oracle for posteriors without a closed form (GP hyperparameters, a
small Bayesian neural network, logistic regression under a mixture prior). It wraps
pyro's No-U-Turn sampler (Hoffman & Gelman, arXiv 1111.4246) driven by a
``potential_fn``, so it never sees a model or a prior object: the caller passes a
callable that maps a float64 vector θ of shape (P,) to a scalar log density
(up to a constant). Parameters with constrained support must be mapped to ℝ by the
caller, Jacobian included.

Chains run one after another in this process (pyro's multi-chain mode forks worker
processes, which deadlocks after torch has started its thread pools). Each chain draws
from its own seed derived from ``seed``, inside `torch.random.fork_rng`, so the caller's
global random states (torch CPU and the input's CUDA device, numpy, Python) are unchanged.

A run is *trusted* only if it passes the convergence gate on R-hat, ESS and the time cap;
`pfnkit.reference.mcmc_gate` holds the gate (`NUTSConfig`, `NUTSResult`) and says why
``gate_fn`` may move it from the parameters to the predictions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
from pyro.infer.mcmc import MCMC, NUTS
from torch import Tensor
from torch.distributions import Distribution

from pfnkit.reference.mcmc_gate import NUTSConfig, NUTSResult, convergence_diagnostics

# NUTSConfig and NUTSResult live in pfnkit.reference.mcmc_gate; they are re-exported here.
__all__ = ["NUTSConfig", "NUTSResult", "mc_predictive_log_prob", "run_nuts"]

logger = logging.getLogger(__name__)

_DTYPE = torch.float64
_SITE = "theta"  # the single pyro sample site holding the flat parameter vector
_MAX_SEED = 2**32  # numpy's legacy global seed must fit in 32 bits


@contextlib.contextmanager
def _isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generators pyro draws from, restoring them on exit.

    Like `pyro.set_rng_seed`, but only the CPU generator and, for CUDA inputs, that one
    device's generator are touched, so other devices' random states stay the caller's.
    """
    cuda_devices = [torch.device(device).index or 0] if device.type == "cuda" else []
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 (pyro may use the legacy global state)
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.default_generator.manual_seed(seed)
            for index in cuda_devices:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)  # noqa: NPY002
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002


def _chain_seeds(seed: int, num_chains: int) -> list[int]:
    """One 32-bit seed per chain; chain c's seed does not depend on num_chains."""
    gen = torch.Generator().manual_seed(seed)
    seeds = torch.randint(0, _MAX_SEED, (max(num_chains, 1),), generator=gen, dtype=torch.int64)
    return [int(s) for s in seeds[:num_chains]]


def _checked_initial(initial: Tensor, num_chains: int) -> Tensor:
    """The chain starts (C, P) as float64, after checking their shape and finiteness."""
    if initial.ndim != 2 or initial.shape[0] != num_chains:
        raise ValueError(
            f"initial must have shape (num_chains={num_chains}, P), "
            f"got {tuple(initial.shape)}; pass one start per chain"
        )
    if not torch.isfinite(initial).all():
        raise ValueError("initial contains NaN or infinite values; pass finite starts")
    return initial.detach().to(_DTYPE)


def _checked_log_density(
    log_density: Callable[[Tensor], Tensor], initial_CP: Tensor, jit_compile: bool
) -> Callable[[Tensor], Tensor]:
    """Validate the log density at every start, and trace it when asked."""
    for c, theta in enumerate(initial_CP):
        value = log_density(theta)
        if not isinstance(value, Tensor) or value.ndim != 0:
            raise ValueError(
                "log_density must return a scalar (0-d) tensor for a (P,) input; "
                f"got {type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}"
            )
        if not torch.isfinite(value):
            raise ValueError(
                f"log_density is {float(value)} at initial[{c}]; start every chain where "
                "the log density is finite"
            )
    if not jit_compile:
        return log_density
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        return torch.jit.trace(log_density, (initial_CP[0].clone(),), check_trace=False)


class _Chain(NamedTuple):
    """Outcome of one chain: kept draws (S, P), divergences, post-warmup acceptance rate."""

    draws_SP: Tensor
    divergences: int
    acceptance: float


def _run_chain(
    log_density: Callable[[Tensor], Tensor], start_P: Tensor, config: NUTSConfig
) -> _Chain:
    """One NUTS chain from ``start_P``."""

    def potential_fn(params: dict[str, Tensor]) -> Tensor:
        return -log_density(params[_SITE])

    kernel = NUTS(
        potential_fn=potential_fn,
        full_mass=config.dense_mass,
        target_accept_prob=config.target_accept_prob,
        max_tree_depth=config.max_tree_depth,
    )
    mcmc = MCMC(
        kernel,
        num_samples=config.num_samples,
        warmup_steps=config.warmup,
        initial_params={_SITE: start_P.clone()},
        num_chains=1,
        disable_progbar=True,
    )
    mcmc.run()
    diagnostics = mcmc.diagnostics()
    return _Chain(
        draws_SP=mcmc.get_samples()[_SITE].reshape(config.num_samples, -1),
        divergences=len(diagnostics["divergences"]["chain 0"]),
        acceptance=float(diagnostics["acceptance rate"]["chain 0"]),
    )


def _run_chains(
    log_density: Callable[[Tensor], Tensor],
    initial_CP: Tensor,
    config: NUTSConfig,
    seed: int,
    started: float,
) -> list[_Chain]:
    """Run the chains one after another until done or past the time cap."""
    chains: list[_Chain] = []
    cap = config.time_cap_seconds
    for c, chain_seed in enumerate(_chain_seeds(seed, config.num_chains)):
        elapsed = time.perf_counter() - started
        if c > 0 and cap is not None and elapsed > cap:  # the first chain always runs
            logger.warning(
                "NUTS time cap of %.1f s hit after %d of %d chains (%.1f s); run untrusted",
                cap,
                c,
                config.num_chains,
                elapsed,
            )
            break
        with _isolated_rng(chain_seed, initial_CP.device):
            chain = _run_chain(log_density, initial_CP[c], config)
        chains.append(chain)
        logger.info(
            "NUTS chain %d/%d: %d divergences, acceptance %.3f, %.1f s elapsed",
            c + 1,
            config.num_chains,
            chain.divergences,
            chain.acceptance,
            time.perf_counter() - started,
        )
    return chains


def run_nuts(
    log_density: Callable[[Tensor], Tensor],
    initial: Tensor,
    config: NUTSConfig,
    *,
    seed: int,
    gate_fn: Callable[[Tensor], Tensor] | None = None,
    gate_description: str = "derived quantities",
) -> NUTSResult:
    """Sample ``exp(log_density)`` with NUTS, one chain per row of ``initial``.

    Args:
        log_density: maps θ of shape (P,), float64, to a 0-d tensor: the unnormalised log
            density of the target over unconstrained ℝ^P. It must be differentiable with
            autograd and finite at every start.
        initial: chain starts, shape (C, P) with C = ``config.num_chains``; cast to float64.
            Spread them out (e.g. draws from the prior) so R-hat can detect poor mixing.
        config: budget and convergence gates.
        seed: run seed. Chain c uses a seed derived from (seed, c); the same seed gives
            the same draws. The caller's global torch, numpy and Python random states are
            restored afterwards.
        gate_fn: maps draws (N, P) to quantities (N, Q) whose R-hat and ESS gate the run,
            e.g. predictions at fixed inputs for a non-identifiable model; None gates on
            the parameters.
        gate_description: what ``gate_fn`` computes, recorded as ``gated_on``.

    Returns:
        `NUTSResult` with draws (C, S, P), diagnostics, and ``trusted``/``reason``.

    Raises:
        ValueError: if ``initial`` is not (num_chains, P), holds non-finite values, or the
            log density is not a finite scalar at a start.
    """
    initial_CP = _checked_initial(initial, config.num_chains)
    started = time.perf_counter()
    with _isolated_rng(seed, initial_CP.device):
        target = _checked_log_density(log_density, initial_CP, config.jit_compile)
    chains = _run_chains(target, initial_CP, config, seed, started)
    samples_CSP = torch.stack([chain.draws_SP for chain in chains])
    r_hat, ess = convergence_diagnostics(samples_CSP, gate_fn)
    return NUTSResult(
        samples=samples_CSP,
        r_hat=r_hat,
        ess=ess,
        divergences=sum(chain.divergences for chain in chains),
        acceptance_rates=tuple(chain.acceptance for chain in chains),
        wall_seconds=time.perf_counter() - started,
        time_cap_hit=len(chains) < config.num_chains,
        seed=seed,
        config=config,
        gated_on="parameters" if gate_fn is None else gate_description,
    )


def mc_predictive_log_prob(
    samples: Tensor,
    predictive_fn: Callable[[Tensor], Distribution],
    targets: Tensor,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Log density of targets under the Monte Carlo posterior predictive.

    With K posterior draws θ_k, the predictive is the equal-weight mixture
    p(y | data) ≈ (1/K) Σ_k p(y | θ_k), evaluated stably as
    ``logsumexp_k log p(y | θ_k) - log K``.

    Args:
        samples: posterior draws, shape (K, P), e.g. `NUTSResult.flat_samples()`.
        predictive_fn: maps a chunk of draws (k, P) to a `torch.distributions.Distribution`
            whose ``batch_shape`` starts with k, e.g. ``Categorical`` with batch_shape
            (k, M) over M query points.
        targets: values whose log density is wanted; broadcast against the
            distribution's batch and event shape without the leading k, e.g. (M,).
        chunk_size: draws per call of ``predictive_fn`` to bound memory; all at once
            when None.

    Returns:
        ``log p(targets | data)``, shaped like one draw's ``log_prob(targets)``, e.g. (M,).
    """
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must have shape (K, P) with K ≥ 1, got {tuple(samples.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
    num_draws = samples.shape[0]
    log_probs = []
    for chunk_kP in samples.split(chunk_size or num_draws):
        log_prob_k = predictive_fn(chunk_kP).log_prob(targets)
        if log_prob_k.ndim == 0 or log_prob_k.shape[0] != chunk_kP.shape[0]:
            raise ValueError(
                f"predictive_fn returned log_prob of shape {tuple(log_prob_k.shape)} for "
                f"{chunk_kP.shape[0]} draws; its batch_shape must start with the number of draws"
            )
        log_probs.append(log_prob_k)
    return torch.cat(log_probs).logsumexp(dim=0) - math.log(num_draws)
