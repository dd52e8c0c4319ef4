"""The "tp-exact" attack against scipy quadrature, the exact GP in the Gaussian limit, and the CLI.

The Student-t KL is checked against `scipy.integrate.quad` and finite differences; the whole
attack on the exact Student-t predictive is checked against the "gp-exact" machinery
(gpytorch's exact GP, closed-form Gaussian KL) where the two must agree: as α = β → ∞ the
scale σ² concentrates at 1 and the Student-t process is the GP.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.table import Table
from scipy import integrate, stats
from torch import nn
from torch.distributions import kl_divergence

import cli
from pfnkit.checkpoint import Checkpoint, save_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness import (
    ATTACKS,
    AttackConfig,
    RobustnessOptions,
    UnsupportedCheckpointError,
    run_attack,
)
from pfnkit.robustness.attacks import attack_context, data_scale, exact_gp_predictor
from pfnkit.robustness.pgd import ball_norm
from pfnkit.robustness.tables import robustness_table
from pfnkit.robustness.tp_exact import StudentTPredictive, exact_student_t_predictor
from priors.gp import GPPrior, GPPriorConfig
from priors.student_t import StudentTPrior, StudentTPriorConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_dt, make_tiny_pfn

QUADRATURE_ATOL = 1e-9  # the trapezoid KL against scipy's adaptive quadrature
GP_LIMIT_RTOL = 1e-5  # α = β = 1e8: the Student-t attack's KL is the GP's up to O(1/α)
GRADCHECK_ATOL = 1e-6  # autograd against central finite differences (float64)
DTYPE = torch.float64
LENGTHSCALE = 0.3
OPTIONS = RobustnessOptions(eps=(0.0, 0.1, 0.3), tasks=3, n_ctx=6, n_qry=5,
                            attack=AttackConfig(steps=3), seed=0)  # fmt: skip


def _t(df: float, loc: float, scale: float) -> StudentTPredictive:
    return StudentTPredictive(*(torch.tensor([v], dtype=DTYPE) for v in (df, loc, scale)))


# ---------------------------------------------------------------- the Student-t KL
KL_CASES = [  # (df, loc, scale) of p, then of q
    ((4.0, 0.0, 1.0), (4.0, 0.3, 1.5)),  # the tp-rbf prior's df with no context
    ((9.0, 0.2, 0.5), (9.0, -0.1, 0.4)),
    ((1.5, 0.0, 1.0), (3.0, 1.0, 2.0)),  # unequal df, p with no variance
    ((60.0, 0.0, 1.0), (60.0, 0.1, 1.1)),
    ((4.0, 0.0, 1.0), (4.0, 0.0, 0.05)),  # q far narrower than p
]


@pytest.mark.parametrize(("p_args", "q_args"), KL_CASES)
def test_student_t_kl_matches_scipy_quadrature(p_args: tuple, q_args: tuple) -> None:
    p, q = _t(*p_args), _t(*q_args)

    def integrand(x: float) -> float:
        log_p = stats.t.logpdf(x, p_args[0], p_args[1], p_args[2])
        return math.exp(log_p) * (log_p - stats.t.logpdf(x, *q_args))

    expected, _ = integrate.quad(integrand, -math.inf, math.inf, epsabs=1e-13, epsrel=1e-12,
                                 limit=500)  # fmt: skip
    assert abs(float(kl_divergence(p, q)) - expected) < QUADRATURE_ATOL
    assert abs(float(kl_divergence(p, p))) < FLOAT64_ATOL


def test_student_t_kl_gradients_match_finite_differences() -> None:
    df = torch.tensor([5.0, 12.0], dtype=DTYPE)
    p = StudentTPredictive(df, torch.tensor([0.0, 0.5], dtype=DTYPE), torch.tensor([1.0, 0.3]))
    loc = torch.tensor([0.4, 0.2], dtype=DTYPE, requires_grad=True)
    log_scale = torch.tensor([0.3, -0.5], dtype=DTYPE, requires_grad=True)

    def kl(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        return kl_divergence(p, StudentTPredictive(df, loc, log_scale.exp()))

    assert torch.autograd.gradcheck(kl, (loc, log_scale), atol=GRADCHECK_ATOL)


# ------------------------------------------------------------------ the attack itself
def _limit_prior() -> StudentTPrior:
    """A Student-t process whose scale is 1 up to O(1/α): the GP of `HYPER`."""
    return StudentTPrior(StudentTPriorConfig(lengthscale=LENGTHSCALE, noise=0.01,
                                             scale_concentration=1e8, scale_rate=1e8))  # fmt: skip


HYPER = GPHyperparameters(lengthscale=LENGTHSCALE, outputscale=1.0, noise=0.01)


def _context(seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    x_ctx = torch.rand(3, 8, 1, generator=gen, dtype=DTYPE)
    y_ctx = torch.sin(6 * x_ctx[..., 0]) + 0.1 * torch.randn(3, 8, generator=gen, dtype=DTYPE)
    return x_ctx, y_ctx, torch.rand(3, 10, 1, generator=gen, dtype=DTYPE)


@pytest.mark.parametrize(("target", "norm"), [("y", "l2"), ("x", "linf"), ("xy", "l2")])
def test_in_the_gaussian_limit_the_attack_is_the_exact_gp_attack(target: str, norm: str) -> None:
    x_ctx, y_ctx, x_qry = _context(seed=1)
    eps, config = [0.0, 0.2, 0.5], AttackConfig(norm=norm, steps=8)
    kls = []
    for predictor in (exact_student_t_predictor(_limit_prior()), exact_gp_predictor(HYPER)):
        attacks = attack_context(
            predictor,
            x_ctx,
            y_ctx,
            x_qry,
            eps,
            target=target,
            config=config,
            generator=torch.Generator().manual_seed(0),
        )
        kls.append(torch.stack([a.kl_B for a in attacks]))
    tp_kl_EB, gp_kl_EB = kls
    assert float(tp_kl_EB[0].abs().max()) == 0.0 and bool((gp_kl_EB[1:] > 0).all())
    torch.testing.assert_close(tp_kl_EB, gp_kl_EB, rtol=GP_LIMIT_RTOL, atol=FLOAT64_ATOL)


def test_the_student_t_attack_beats_random_perturbations_of_the_same_norm() -> None:
    x_ctx, y_ctx, x_qry = _context(seed=4)
    predictor, eps = exact_student_t_predictor(StudentTPrior()), 0.5
    (attack,) = attack_context(predictor, x_ctx, y_ctx, x_qry, [eps],
                               config=AttackConfig(steps=15),
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert bool((ball_norm((attack.y_ctx_BN - y_ctx) / data_scale(y_ctx), "l2")
                 <= eps * (1 + 1e-9)).all())  # fmt: skip
    clean = predictor(x_ctx, y_ctx, x_qry)
    gen = torch.Generator().manual_seed(1)
    for _ in range(16):
        u = torch.randn(y_ctx.shape, generator=gen, dtype=DTYPE)
        moved = y_ctx + data_scale(y_ctx) * eps * u / u.norm(dim=1, keepdim=True)
        random_kl_B = kl_divergence(clean, predictor(x_ctx, moved, x_qry)).mean(-1)
        assert bool((attack.kl_B >= random_kl_B).all()), (attack.kl_B, random_kl_B)


# ------------------------------------------------------------------ the front door
class ExactTPStandIn(nn.Module):
    """A "PFN" that is the exact Student-t predictive itself: its gap must vanish."""

    def __init__(self, prior: StudentTPrior) -> None:
        super().__init__()
        self.predict = exact_student_t_predictor(prior)
        self.anchor = nn.Parameter(torch.zeros((), dtype=DTYPE))  # sets the dtype

    def forward(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_qry: torch.Tensor) -> Any:
        return self.predict(x_ctx, y_ctx, x_qry)


def tp_stand_in() -> tuple[Checkpoint, Any]:
    """The "tp-exact" stand-in (checkpoint, prior) for the attack contract test."""
    prior = StudentTPrior(StudentTPriorConfig(lengthscale=LENGTHSCALE))
    card = {"model_kind": "pfn", "prior_name": "tp", "reference": "tp-exact"}
    return Checkpoint("exact-tp", ExactTPStandIn(prior), card), prior


def test_an_exact_stand_in_has_no_gap_and_a_growing_kl() -> None:
    checkpoint, prior = tp_stand_in()
    report = run_attack(checkpoint, prior, options=OPTIONS)
    assert report.reference == "tp-exact" and report.passed
    for result in report.results:
        torch.testing.assert_close(torch.tensor(result.model_kl), torch.tensor(result.exact_kl),
                                   rtol=0, atol=FLOAT64_ATOL)  # fmt: skip
    kl_EB = torch.tensor([r.exact_kl for r in report.results])
    assert bool((kl_EB[0] == 0).all()) and bool((kl_EB[1:] >= kl_EB[:-1]).all())
    assert bool((kl_EB[-1] > 0).all())
    (table,) = ATTACKS["tp-exact"].tables(report)
    assert isinstance(table, Table) and "vs exact Student-t process:" in str(table.title)
    assert "exact GP" not in str(table.title)
    default = robustness_table(report)  # the builder's own default names the GP
    assert "vs exact GP:" in str(default.title)


def test_tp_exact_refuses_gp_priors_and_posterior_models() -> None:
    checkpoint, _ = tp_stand_in()
    with pytest.raises(UnsupportedCheckpointError, match="'tp-exact' attacks a PFN trained on"):
        run_attack(checkpoint, GPPrior(GPPriorConfig()), reference="tp-exact", options=OPTIONS)
    dt = Checkpoint("dt", make_tiny_dt(), {"model_kind": "dt", "prior_name": "gmm"})
    with pytest.raises(UnsupportedCheckpointError, match="is a 'dt' model"):
        run_attack(dt, StudentTPrior(), reference="tp-exact", options=OPTIONS)


def test_cli_attacks_a_student_t_pfn_against_its_exact_predictive(tmp_path: Path) -> None:
    model = make_tiny_pfn(PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                    n_bars=20))  # fmt: skip
    card = save_checkpoint(
        tmp_path / "tp-tiny", model, prior_name="tp", prior_config=StudentTPriorConfig().to_dict(),
        train_config={"n_ctx_max": 50}, command="test", reference="tp-exact",
    )  # fmt: skip
    out = tmp_path / "robust.json"
    argv = ["robustness", "--checkpoint", str(card), "--eps", "0,0.1,0.3", "--tasks", "2",
            "--steps", "2", "--n-ctx", "5", "--n-qry", "4", "--json", str(out), "--plots",
            str(tmp_path / "plots"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["reference"] == "tp-exact"
    results = report["results"]
    assert results[0]["ratio"] is None and results[2]["exact_mean"] >= results[1]["exact_mean"] > 0
    assert results[1]["ratio"] > 0 and math.isfinite(results[2]["ratio"])
    assert (tmp_path / "plots" / "attack_y_l2.png").stat().st_size > 0
