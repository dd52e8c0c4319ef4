"""The "tp-exact" attack: a PFN on a Student-t-process prior against the exact Student-t predictive.

Both predictors see the same fresh tasks of the checkpoint's prior and the same attack on
their context, through the same run and plots as "gp-exact"
(`pfnkit.robustness.gp_exact.ExactContextAttack`); the oracle is the closed-form predictive
of the Student-t process (`pfnkit.reference.student_t.student_t_predictive`, Shah, Wilson &
Ghahramani, arXiv 1402.4306), built from the prior's own base kernel and scale prior
(``prior.kernel_matrix`` and ``prior.student_t_hyperparameters()``), so pfnkit never
imports `priors`.

torch has no KL divergence between two Student-t distributions, and none is closed form,
so the exact predictive is returned as `StudentTPredictive`, a `StudentT` whose KL is
registered here: KL(p ‖ q) = E_p[log p − log q] by the trapezoid rule on the substitution
z = sinh(s) of p's standardised variable, whose integrand decays exponentially in s for
every number of degrees of freedom. The rule is fixed (no adaptivity), so the KL is a
smooth, differentiable function of q's parameters, as the attack needs.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from rich.table import Table
from scipy import stats
from torch import Tensor
from torch.distributions import StudentT, register_kl

from pfnkit.data import Batch
from pfnkit.reference.student_t import student_t_predictive
from pfnkit.robustness.attacks import Predictor
from pfnkit.robustness.gp_exact import ExactContextAttack, require_pfn_on
from pfnkit.robustness.plots import Band, ExactPredictive
from pfnkit.robustness.registry import register_attack
from pfnkit.robustness.report import RobustnessReport
from pfnkit.robustness.tables import robustness_table

if TYPE_CHECKING:
    from pfnkit.checkpoint import Checkpoint

__all__ = [
    "KL_STEP",
    "StudentTPredictive",
    "StudentTProcessTasks",
    "TPExactAttack",
    "exact_student_t_band",
    "exact_student_t_predictor",
    "student_t_kl",
]

KL_STEP = 0.02  # trapezoid step in s (z = sinh s); the error decays like exp(-π² / KL_STEP)
_TAIL_MASS_LOG = 30.0  # the rule stops where p's tail mass is below about e^-30
_Z_GAUSSIAN_MAX = 12.0  # ... and never before |z| = 12 (a near-Gaussian p, large df)


class StudentTPredictive(StudentT):
    """A `StudentT` predictive whose KL divergence to another one `kl_divergence` knows."""


@register_kl(StudentTPredictive, StudentTPredictive)
def student_t_kl(p: StudentT, q: StudentT) -> Tensor:
    """KL(p ‖ q) of two Student-t distributions by quadrature, elementwise over the batch.

    With x = μ_p + σ_p z and z = sinh(s), KL = ∫ t_ν(z) [log p(x) − log q(x)] cosh(s) ds,
    taken by the trapezoid rule with step `KL_STEP` over |s| <= S, where S keeps p's
    truncated tail mass below about e^-30 for the smallest ν in the batch. The weights are
    normalised to sum to one, so KL(p ‖ p) is 0 up to rounding. Differentiable in both.
    """
    df = p.df.expand(p.batch_shape)
    nu_min = float(df.detach().min())
    limit = max(math.asinh(_Z_GAUSSIAN_MAX), _TAIL_MASS_LOG / nu_min + 1.0)
    steps = math.ceil(limit / KL_STEP)
    s_G = KL_STEP * torch.arange(-steps, steps + 1, dtype=p.loc.dtype, device=p.loc.device)
    z_G = torch.sinh(s_G).reshape(-1, *[1] * len(p.batch_shape))
    log_p_std = StudentT(df, torch.zeros_like(df), torch.ones_like(df)).log_prob(z_G)
    log_w = log_p_std + torch.log(torch.cosh(s_G)).reshape_as(z_G)
    weight = torch.softmax(log_w, dim=0)
    x = p.loc + p.scale * z_G
    log_ratio = (log_p_std - p.scale.log()) - q.log_prob(x)
    return (weight * log_ratio).sum(0)


@runtime_checkable
class StudentTProcessTasks(Protocol):
    """What the attack needs from a prior: its tasks, base kernel and scale prior."""

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch: ...

    def kernel_matrix(self, x1_BND: Tensor, x2_BMD: Tensor) -> Tensor:
        """The base kernel K(x1, x2), (B, N, M), float64: no noise, no scale."""
        ...

    def student_t_hyperparameters(self) -> dict[str, float]:
        """``concentration`` α, ``rate`` β of the scale prior and the ``noise`` variance."""
        ...


def exact_student_t_predictor(prior: StudentTProcessTasks) -> Predictor:
    """The exact Student-t-process predictive as a `Predictor` (float64).

    Differentiable in the context inputs and targets; the whole batch runs at once.
    """
    hyper = prior.student_t_hyperparameters()

    def predict(x_ctx_BND: Tensor, y_ctx_BN: Tensor, x_qry_BMD: Tensor) -> StudentTPredictive:
        x_ctx_BND, x_qry_BMD = x_ctx_BND.double(), x_qry_BMD.double()
        k_qry_BM = prior.kernel_matrix(x_qry_BMD, x_qry_BMD).diagonal(dim1=-2, dim2=-1)
        t = student_t_predictive(
            prior.kernel_matrix(x_ctx_BND, x_ctx_BND), prior.kernel_matrix(x_qry_BMD, x_ctx_BND),
            k_qry_BM, y_ctx_BN.double(), **hyper,
        )  # fmt: skip
        return StudentTPredictive(t.df, t.loc, t.scale)

    return predict


def student_t_prior(checkpoint: Checkpoint, prior: Any) -> StudentTProcessTasks:
    """`prior`, if the checkpoint is a PFN and the prior a Student-t process; else a refusal.

    Raises:
        UnsupportedCheckpointError: not a PFN, or a prior without the Student-t methods.
    """
    require_pfn_on(
        checkpoint, prior, StudentTProcessTasks, attack="tp-exact",
        prior_kind="a Student-t-process prior (one with `kernel_matrix` and "
        "`student_t_hyperparameters`, like tp-rbf's 'tp')",
    )  # fmt: skip
    return prior


def exact_student_t_band(
    exact: Predictor, x_ctx_BND: Tensor, y_ctx_BN: Tensor, grid_G: Tensor, level: float = 0.9
) -> Band:
    """Location and central `level` interval of the exact predictive on a grid (scipy's ppf)."""
    with torch.no_grad():
        dist = exact(x_ctx_BND, y_ctx_BN, grid_G.to(x_ctx_BND.dtype).reshape(1, -1, 1))
    df, loc, scale = (v.double()[0] for v in (dist.df.expand_as(dist.loc), dist.loc, dist.scale))
    half = torch.from_numpy(stats.t.ppf(0.5 + level / 2, df.cpu().numpy())).to(loc)
    return loc, loc - half * scale, loc + half * scale


class TPExactAttack(ExactContextAttack):
    """`RobustnessAttack` "tp-exact": context attacks on the PFN and on the exact Student-t."""

    name = "tp-exact"
    applies_to = "a PFN on a Student-t-process prior (tp-rbf)"

    def exact_predictive(self, checkpoint: Checkpoint, prior: Any) -> ExactPredictive:
        predict = exact_student_t_predictor(student_t_prior(checkpoint, prior))
        return ExactPredictive(
            "exact Student-t", predict, functools.partial(exact_student_t_band, predict)
        )

    def plot_range(self, prior: Any, task: Batch) -> tuple[float, float]:
        """The span of the task's inputs, context and query."""
        x_all = torch.cat([task.x_ctx, task.x_qry], dim=1).double()
        return float(x_all.min()), float(x_all.max())

    def tables(self, report: RobustnessReport) -> list[Table]:
        return [robustness_table(report, exact_name="exact Student-t process")]


register_attack(TPExactAttack())
