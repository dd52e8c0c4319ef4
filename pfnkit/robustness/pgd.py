"""Projected gradient ascent on data perturbations in L2 and L∞ balls, monotone in ε.

The adversarial attack of Glöckler, Deistler & Macke (arXiv 2305.14984) on amortized
posteriors looks, within a ball of radius ε, for the perturbation δ of the observed data
that maximises KL(q(·|D) ‖ q(·|D+δ)). This module is the optimiser alone: projected
gradient ascent (Madry et al., arXiv 1706.06083) with a random start. It works on
standardised perturbations ``u_BC`` (B tasks, C attacked coordinates each) and on an
objective that returns one value per task; `pfnkit.robustness.attacks` turns u into data units
and supplies the KL objectives.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "NORMS",
    "AttackConfig",
    "AttackResult",
    "Objective",
    "attack_eps_path",
    "ball_norm",
    "pgd_attack",
    "project_to_ball",
    "random_in_ball",
]

NORMS: tuple[str, ...] = ("l2", "linf")
_TINY = 1e-30  # keeps a zero norm from dividing by zero

Objective = Callable[[Tensor], Tensor]
"""Maps perturbations (B, C) to one value per task (B,); task b may depend only on row b."""


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """Settings of the projected gradient ascent.

    Attributes:
        norm: "l2" (one ball over all attacked coordinates of a task) or "linf".
        steps: gradient steps after the start point.
        step_size: step length as a fraction of ε; None uses 2.5 / steps, so that the
            steps together can cross the ball (arXiv 1706.06083).
        random_start: start from a uniform draw in the ball. A KL divergence has zero
            gradient at δ = 0, so an attack that starts there never moves.
        restarts: independent random starts; each task keeps its best. The worst case
            over an L∞ ball is a vertex, and one ascent may end at a locally best one.
    """

    norm: str = "l2"
    steps: int = 20
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {NORMS}")
        if self.steps < 0:
            raise ValueError(f"steps must be non-negative, got {self.steps}")
        if self.restarts < 1 or (self.restarts > 1 and not self.random_start):
            raise ValueError(
                f"restarts must be >= 1, and > 1 only with random_start; got {self.restarts}"
            )
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(
                f"step_size must be positive (a fraction of eps), got {self.step_size}"
            )

    @property
    def relative_step(self) -> float:
        """Step length as a fraction of ε."""
        if self.step_size is not None:
            return self.step_size
        return 2.5 / max(self.steps, 1)

    def n_evaluations(self, eps: float) -> int:
        """Objective evaluations one `pgd_attack` at radius ``eps`` makes."""
        return 1 if eps == 0 else self.restarts * (self.steps + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackConfig:
        return cls(**data)


@dataclass(frozen=True)
class AttackResult:
    """The best perturbation found for each task at one radius.

    Attributes:
        eps: radius of the ball, in the units of u.
        u_BC: best perturbation per task, shape (B, C), inside the ball; detached.
        kl_B: objective at ``u_BC``, shape (B,), float64.
    """

    eps: float
    u_BC: Tensor
    kl_B: Tensor


def ball_norm(u_BC: Tensor, norm: str) -> Tensor:
    """Per-task norm (B,) of perturbations (B, C): Euclidean for "l2", max-abs for "linf"."""
    if norm == "l2":
        return torch.linalg.vector_norm(u_BC, dim=-1)
    if norm == "linf":
        return u_BC.abs().amax(dim=-1) if u_BC.shape[-1] else u_BC.new_zeros(u_BC.shape[0])
    raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")


def project_to_ball(u_BC: Tensor, eps: float, norm: str) -> Tensor:
    """Euclidean projection of each task's perturbation onto its ball of radius ``eps``."""
    if norm == "linf":
        return u_BC.clamp(-eps, eps)
    length_B1 = ball_norm(u_BC, norm).unsqueeze(-1)
    return u_BC * (eps / length_B1.clamp_min(_TINY)).clamp(max=1.0)


def random_in_ball(
    shape: tuple[int, int],
    eps: float,
    norm: str,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform draws from the ball of radius ``eps``, one per task: shape (B, C)."""
    n_tasks, n_coords = shape
    if norm == "linf":
        u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
        return (2 * u - 1) * eps
    if norm != "l2":
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    direction_BC = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    direction_BC = direction_BC / ball_norm(direction_BC, "l2").clamp_min(_TINY).unsqueeze(-1)
    radius_B = torch.rand(n_tasks, generator=generator, dtype=dtype, device=device)
    return direction_BC * eps * radius_B.pow(1.0 / max(n_coords, 1)).unsqueeze(-1)


def _ascent_direction(grad_BC: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit norm: the sign for L∞, the normalised gradient for L2."""
    if norm == "linf":
        return grad_BC.sign()
    return grad_BC / ball_norm(grad_BC, "l2").clamp_min(_TINY).unsqueeze(-1)


def _evaluate(objective: Objective, u_BC: Tensor, eps: float, with_grad: bool) -> Tensor:
    """The objective at ``u_BC`` (a leaf that requires grad when ``with_grad``), checked."""
    with torch.set_grad_enabled(with_grad):
        kl_B = objective(u_BC)
    if kl_B.shape != u_BC.shape[:1]:
        raise ValueError(
            f"the objective must return one value per task, shape ({u_BC.shape[0]},); "
            f"got {tuple(kl_B.shape)}"
        )
    if not bool(torch.isfinite(kl_B).all()):
        bad = torch.nonzero(~torch.isfinite(kl_B)).flatten().tolist()
        raise FloatingPointError(
            f"the attack objective is NaN or infinite for tasks {bad} at eps={eps}; the "
            "perturbed data may leave the model's valid range: lower eps or check the data"
        )
    if with_grad and not kl_B.requires_grad:
        raise ValueError(
            "the objective does not depend differentiably on the perturbation; build it "
            "from the perturbed data without detaching or torch.no_grad()"
        )
    return kl_B


def _ascend(
    objective: Objective, u_BC: Tensor, eps: float, config: AttackConfig, tick: Callable
) -> tuple[Tensor, Tensor]:
    """Projected ascent from ``u_BC``; the best iterate per task and its value (float64)."""
    best_u_BC = u_BC
    best_kl_B = torch.full(u_BC.shape[:1], -math.inf, dtype=torch.float64, device=u_BC.device)
    alpha = config.relative_step * eps
    for step in range(config.steps + 1):
        last = step == config.steps
        u_BC = u_BC.detach().requires_grad_(not last)
        kl_B = _evaluate(objective, u_BC, eps, with_grad=not last)
        tick()
        value_B = kl_B.detach().double()
        better_B = value_B > best_kl_B
        best_kl_B = torch.where(better_B, value_B, best_kl_B)
        best_u_BC = torch.where(better_B.unsqueeze(-1), u_BC.detach(), best_u_BC)
        if last:
            break
        (grad_BC,) = torch.autograd.grad(kl_B.sum(), u_BC)
        step_BC = alpha * _ascent_direction(grad_BC, config.norm)
        u_BC = project_to_ball(u_BC.detach() + step_BC, eps, config.norm)
    return best_u_BC, best_kl_B


def pgd_attack(
    objective: Objective,
    shape: tuple[int, int],
    eps: float,
    config: AttackConfig,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    on_eval: Callable[[], None] | None = None,
    divergence: bool = False,
) -> AttackResult:
    """Maximise ``objective`` over each task's ball of radius ``eps`` by projected ascent.

    Every iterate is evaluated, and each task keeps the best one it has seen over all
    restarts, so the result is never worse than a start point.

    Args:
        objective: (B, C) perturbations -> (B,) values to maximise, differentiable.
        shape: (B, C), tasks and attacked coordinates per task.
        eps: radius >= 0; at 0 the only perturbation is zero and no step is taken.
        config: norm, steps, step size, start and restarts.
        generator: the only source of randomness (the random starts).
        dtype: dtype of the perturbations the objective receives.
        device: their device.
        on_eval: called after every objective evaluation (progress bars).
        divergence: the objective is a divergence from the clean data, 0 at u = 0 by
            definition. The zero perturbation (ε = 0, or no step and no random start) then
            scores exactly 0 without an evaluation (``on_eval`` is still called once): a
            float32 model can round differently when the same data come in another memory
            layout, and that noise (~1e-8) is not a KL.

    Returns:
        The best perturbation per task and its objective value.
    """
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    tick = on_eval or (lambda: None)
    zero_BC = torch.zeros(shape, dtype=dtype, device=device)
    if eps == 0 or (config.steps == 0 and not config.random_start):
        if divergence:
            kl_B = torch.zeros(shape[:1], dtype=torch.float64, device=zero_BC.device)
        else:
            kl_B = _evaluate(objective, zero_BC, eps, with_grad=False)
        tick()
        return AttackResult(eps, zero_BC, kl_B.detach().double())
    best_u_BC = zero_BC
    best_kl_B = torch.full(shape[:1], -math.inf, dtype=torch.float64, device=zero_BC.device)
    for _ in range(config.restarts):
        start_BC = zero_BC
        if config.random_start:
            start_BC = random_in_ball(
                shape, eps, config.norm, generator=generator, dtype=dtype, device=device
            )
        u_BC, kl_B = _ascend(objective, start_BC, eps, config, tick)
        better_B = kl_B > best_kl_B
        best_kl_B = torch.where(better_B, kl_B, best_kl_B)
        best_u_BC = torch.where(better_B.unsqueeze(-1), u_BC, best_u_BC)
    return AttackResult(eps, best_u_BC, best_kl_B)


def attack_eps_path(
    objective: Objective,
    shape: tuple[int, int],
    eps_values: Sequence[float],
    config: AttackConfig,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    on_eval: Callable[[], None] | None = None,
    divergence: bool = False,
) -> list[AttackResult]:
    """`pgd_attack` at each radius; every task's best value never decreases with ε.

    The best perturbation found at the previous (smaller) radius also lies in the larger
    ball, so each radius keeps whichever of the two is better, task by task. The previous
    value is reused, not recomputed: the objective must be deterministic (fix any Monte
    Carlo samples across calls).

    Args:
        eps_values: radii in non-decreasing order, each >= 0.
        (the rest as in `pgd_attack`)

    Returns:
        One result per radius, in the order given.
    """
    eps_list = [float(e) for e in eps_values]
    if not eps_list:
        raise ValueError("pass at least one eps value")
    if any(not (math.isfinite(e) and e >= 0) for e in eps_list):
        raise ValueError(f"eps values must be finite and non-negative, got {eps_list}")
    if any(b < a for a, b in zip(eps_list, eps_list[1:], strict=False)):
        raise ValueError(f"eps values must be in increasing order, got {eps_list}; sort them")
    results: list[AttackResult] = []
    for eps in eps_list:
        result = pgd_attack(
            objective,
            shape,
            eps,
            config,
            generator=generator,
            dtype=dtype,
            device=device,
            on_eval=on_eval,
            divergence=divergence,
        )
        if results:
            previous = results[-1]
            keep_B = previous.kl_B > result.kl_B
            result = AttackResult(
                eps,
                torch.where(keep_B.unsqueeze(-1), previous.u_BC, result.u_BC),
                torch.where(keep_B, previous.kl_B, result.kl_B),
            )
        results.append(result)
    return results
