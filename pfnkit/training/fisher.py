"""Fisher-information penalty on the data: the trace of E‖∇_D log q(target | D)‖².

Glöckler, Deistler & Macke (arXiv 2305.14984) defend amortized posteriors against
adversarial data by penalising the trace of the Fisher information of q(· | D) with
respect to the data D. The trace is E_{t ~ q(·|D)} ‖∇_D log q(t | D)‖². This module gives
an unbiased estimate that needs only one input gradient per batch, however many targets
and samples it averages over: a Rademacher-signed sum (Hutchinson's trick) of the
per-sample log densities, whose squared gradient norm has the wanted sum as expectation
because the cross terms have mean zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["fisher_trace_estimate"]


def fisher_trace_estimate(
    log_prob_B: Tensor, data: Sequence[Tensor], *, generator: torch.Generator | None = None
) -> Tensor:
    """Per-task estimate of the mean squared data-gradient norm of the log densities.

    Args:
        log_prob_B: log q(t_j | D_b), batch-first, shape (B, ...): every trailing entry is
            one (target, sample) pair of task b, with t_j drawn from q(· | D_b) and
            detached, so that the mean over entries estimates the Fisher trace.
        data: the tensors D that require grad and that `log_prob_B` was computed from,
            each batch-first (task b's entries depend only on row b).
        generator: source of the Rademacher signs.

    Returns:
        (B,) estimate of mean_j ‖∇_{D_b} log q(t_j | D_b)‖², differentiable with respect
        to the parameters that produced `log_prob_B` (the graph is kept).
    """
    if log_prob_B.ndim < 1 or log_prob_B.shape[0] == 0:
        raise ValueError(f"log_prob_B must be batch-first and non-empty, got {log_prob_B.shape}")
    if not data or not all(t.requires_grad for t in data):
        raise ValueError("every data tensor must require grad (call .requires_grad_() first)")
    signs = torch.randint(0, 2, log_prob_B.shape, generator=generator, device=log_prob_B.device).to(
        log_prob_B.dtype
    )
    signs = 2 * signs - 1
    grads = torch.autograd.grad((signs * log_prob_B).sum(), list(data), create_graph=True)
    per_task_B = sum(g.pow(2).flatten(1).sum(1) for g in grads)
    entries_per_task = log_prob_B[0].numel()
    return per_task_B / entries_per_task
