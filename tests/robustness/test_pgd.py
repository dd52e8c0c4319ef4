"""The optimiser (pfnkit.robustness.pgd): balls, settings, and the divergence shortcut."""

from __future__ import annotations

import pytest
import torch

from pfnkit.robustness.pgd import (
    NORMS,
    AttackConfig,
    attack_eps_path,
    ball_norm,
    project_to_ball,
    random_in_ball,
)
from tests.conftest import FLOAT64_ATOL

DTYPE = torch.float64


@pytest.mark.parametrize("norm", NORMS)
def test_projection_and_random_start_stay_in_the_ball(norm: str) -> None:
    gen = torch.Generator().manual_seed(0)
    eps = 0.7
    u_BC = torch.randn(64, 9, generator=gen, dtype=DTYPE) * torch.logspace(-2, 1, 64)[:, None]
    projected = project_to_ball(u_BC, eps, norm)
    assert bool((ball_norm(projected, norm) <= eps + FLOAT64_ATOL).all())
    inside = ball_norm(u_BC, norm) <= eps
    assert inside.any() and (~inside).any()
    torch.testing.assert_close(projected[inside], u_BC[inside], rtol=0, atol=0)
    on_boundary = ball_norm(projected[~inside], norm)
    torch.testing.assert_close(on_boundary, torch.full_like(on_boundary, eps))
    start = random_in_ball((1000, 9), eps, norm, generator=gen)
    assert bool((ball_norm(start, norm) <= eps + FLOAT64_ATOL).all())
    assert float(ball_norm(start, norm).max()) > 0.8 * eps  # it fills the ball


def test_attack_config_and_eps_list_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown norm"):
        AttackConfig(norm="l1")
    with pytest.raises(ValueError, match="increasing order"):
        attack_eps_path(lambda u: u.sum(-1), (2, 3), [0.5, 0.1], AttackConfig(),
                        generator=torch.Generator())  # fmt: skip


def test_a_divergence_scores_the_zero_perturbation_zero_and_leaves_the_rest_alone() -> None:
    """`divergence=True` changes only the score of u = 0; every ε > 0 result is bit-identical.

    The objective is deliberately not 0 at u = 0, so that the shortcut is visible.
    """
    weights_C = torch.linspace(0.5, 2.0, 4, dtype=DTYPE)

    def objective(u_BC: torch.Tensor) -> torch.Tensor:
        return 1e-8 + ((u_BC * weights_C) ** 2).sum(-1)

    eps = [0.0, 0.1, 0.3]
    runs = {}
    ticks = {}
    for divergence in (False, True):
        count = []
        runs[divergence] = attack_eps_path(
            objective, (3, 4), eps, AttackConfig(steps=3), divergence=divergence,
            generator=torch.Generator().manual_seed(0), on_eval=lambda c=count: c.append(1),
        )  # fmt: skip
        ticks[divergence] = len(count)
    plain, shortcut = runs[False], runs[True]
    assert float(plain[0].kl_B.min()) > 0
    torch.testing.assert_close(shortcut[0].kl_B, torch.zeros(3, dtype=DTYPE), rtol=0, atol=0)
    torch.testing.assert_close(shortcut[0].u_BC, torch.zeros(3, 4, dtype=DTYPE), rtol=0, atol=0)
    for a, b in zip(plain[1:], shortcut[1:], strict=True):
        torch.testing.assert_close(b.kl_B, a.kl_B, rtol=0, atol=0)
        torch.testing.assert_close(b.u_BC, a.u_BC, rtol=0, atol=0)
    expected = sum(AttackConfig(steps=3).n_evaluations(e) for e in eps)
    assert ticks[False] == ticks[True] == expected  # progress bars count the same
