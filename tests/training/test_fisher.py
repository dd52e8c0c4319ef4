"""The Fisher-trace estimator against per-sample gradient loops and a closed form."""

from __future__ import annotations

import torch

from pfnkit.training.fisher import fisher_trace_estimate
from tests.conftest import FLOAT64_ATOL

HUTCHINSON_RTOL = 0.05  # statistical: relative error of a 4000-draw Hutchinson average


def _loop_fisher(data_BN: torch.Tensor, targets_BJ: torch.Tensor, weights_N: torch.Tensor):
    """mean_j ‖∇_D log N(t_j; w·D, 1)‖² per task, one autograd call per entry."""
    out = []
    for b in range(data_BN.shape[0]):
        norms = []
        for t in targets_BJ[b]:
            d = data_BN[b].clone().requires_grad_(True)
            lp = torch.distributions.Normal(weights_N @ d, 1.0).log_prob(t)
            (g,) = torch.autograd.grad(lp, d)
            norms.append(g.pow(2).sum())
        out.append(torch.stack(norms).mean())
    return torch.stack(out)


def _log_prob(data_BN: torch.Tensor, targets_BJ: torch.Tensor, weights_N: torch.Tensor):
    mean_B1 = (data_BN @ weights_N).unsqueeze(-1)
    return torch.distributions.Normal(mean_B1, 1.0).log_prob(targets_BJ)


def test_single_entry_per_task_is_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    data_BN = torch.randn(5, 7, dtype=torch.float64, generator=gen).requires_grad_(True)
    weights_N = torch.randn(7, dtype=torch.float64, generator=gen)
    targets_BJ = torch.randn(5, 1, dtype=torch.float64, generator=gen)
    estimate = fisher_trace_estimate(_log_prob(data_BN, targets_BJ, weights_N), [data_BN])
    expected = _loop_fisher(data_BN.detach(), targets_BJ, weights_N)
    torch.testing.assert_close(estimate, expected, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL)


def test_hutchinson_average_matches_the_loop_and_the_closed_form() -> None:
    gen = torch.Generator().manual_seed(1)
    data_BN = torch.randn(3, 4, dtype=torch.float64, generator=gen).requires_grad_(True)
    weights_N = torch.randn(4, dtype=torch.float64, generator=gen)
    targets_BJ = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    log_prob = _log_prob(data_BN, targets_BJ, weights_N)
    draws = torch.stack(
        [fisher_trace_estimate(log_prob, [data_BN], generator=gen).detach() for _ in range(4000)]
    )
    expected = _loop_fisher(data_BN.detach(), targets_BJ, weights_N)
    torch.testing.assert_close(draws.mean(0), expected, rtol=HUTCHINSON_RTOL, atol=0)
    # closed form: ∇_D log N(t; w·D, 1) = (t - w·D) w
    resid_BJ = targets_BJ - (data_BN.detach() @ weights_N).unsqueeze(-1)
    closed = resid_BJ.pow(2).mean(1) * weights_N.pow(2).sum()
    torch.testing.assert_close(expected, closed, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL)


def test_estimate_is_differentiable_in_the_model_parameters() -> None:
    gen = torch.Generator().manual_seed(2)
    weights_N = torch.randn(4, dtype=torch.float64, generator=gen).requires_grad_(True)
    data_BN = torch.randn(2, 4, dtype=torch.float64, generator=gen).requires_grad_(True)
    targets_BJ = torch.randn(2, 1, dtype=torch.float64, generator=gen)
    fisher = fisher_trace_estimate(_log_prob(data_BN, targets_BJ, weights_N), [data_BN])
    (grad,) = torch.autograd.grad(fisher.sum(), weights_N)
    resid_B = targets_BJ[:, 0] - data_BN.detach() @ weights_N.detach()
    # d/dw of Σ_b r_b² ‖w‖², with r_b = t_b - w·D_b
    expected = (resid_B.pow(2).sum() * 2 * weights_N.detach()) - 2 * (
        (resid_B * weights_N.detach().pow(2).sum()).unsqueeze(-1) * data_BN.detach()
    ).sum(0)
    torch.testing.assert_close(grad, expected, atol=FLOAT64_ATOL, rtol=FLOAT64_ATOL)
