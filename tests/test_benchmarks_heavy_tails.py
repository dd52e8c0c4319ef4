"""benchmarks/heavy_tails.py: the smoke run, the exact references it scores, and Bayes optimality.

The study's own figures are printed, not asserted. What is asserted: the smoke run writes
every cell, view and file; the exact Student-t scores equal scipy's t density and, in the
Gaussian limit (α = β → ∞), the exact GP's scores (two oracles that share no code); and
(slow) each exact predictor, being Bayes-optimal on its own prior's tasks, has the lower
mean NLL there, beyond STANDARD_ERRORS paired standard errors.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from scipy import stats

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness.tp_exact import exact_student_t_predictor
from priors.gp import GPPrior, GPPriorConfig
from priors.student_t import StudentTPrior, StudentTPriorConfig
from tests.conftest import STANDARD_ERRORS
from tests.helpers import load_script, make_tiny_pfn

ROOT = Path(__file__).resolve().parents[1]
GP_LIMIT_ATOL = 1e-6  # α = β = 1e8: Student-t and Gaussian NLLs differ by O(1/α)
SCIPY_ATOL = 1e-10  # float64 identity: torch's Student-t log density against scipy's

study = load_script(ROOT / "benchmarks/heavy_tails.py", "heavy_tails")
scoring, tasks = (
    sys.modules["heavy_tails_scoring"],
    sys.modules["heavy_tails_tasks"],
)  # its siblings
GP_RBF_PRIOR = GPPriorConfig.from_dict(
    json.loads((ROOT / "checkpoints/gp-rbf.json").read_text())["prior_config"]
)


def _tiny_tp_checkpoint(folder: Path) -> Path:
    config = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    return save_checkpoint(
        folder / "tp-tiny", make_tiny_pfn(config), prior_name="tp",
        prior_config=StudentTPriorConfig().to_dict(), train_config={"n_ctx_max": 50},
        command="pytest fixture", reference="tp-exact",
    )  # fmt: skip


def test_heavy_tails_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, plot = tmp_path / "heavy.json", tmp_path / "heavy.png"
    argv = ["--smoke", "--tp-checkpoint", str(_tiny_tp_checkpoint(tmp_path)), "--json",
            str(out), "--plot", str(plot), "--markdown"]  # fmt: skip
    assert study.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| scenario | n |" in printed and "| verdict |" in printed
    report = json.loads(out.read_text())
    assert report["notes"] == []  # a checkpoint on the "tp" prior needs no stand-in
    cells = report["cells"]
    sizes = study.SMOKE.sizes
    assert [(c["scenario"], c["n_ctx"]) for c in cells] == [
        (s.name, n) for s in tasks.SCENARIOS for n in sizes
    ]
    for cell in cells:
        for scores in cell["predictors"].values():
            assert math.isfinite(scores["nll"]["mean"]) and scores["nll"]["se"] > 0
            assert 0 <= scores["coverage90"]["mean"] <= 1
        rate = {"gp-out5": 0.05, "gp-out10": 0.10}.get(cell["scenario"])
        assert (cell["outlier_fraction"] is None) == (rate is None)
    views = report["attacks"]["views"]
    assert [v["tasks"] for v in views] == ["TP tasks", "GP tasks", "GP tasks", "TP tasks"]
    assert all(r["ratio"] > 0 for v in views for r in v["results"])
    assert plot.stat().st_size > 0


def test_exact_tp_scores_are_scipys_t_and_the_gp_in_the_gaussian_limit() -> None:
    gp_prior = GPPrior(GP_RBF_PRIOR)
    hyper = GPHyperparameters(**gp_prior.fixed_gp_hyperparameters())
    batch = gp_prior.sample(4, 7, 9, generator=torch.Generator().manual_seed(0))
    limit = StudentTPrior(StudentTPriorConfig(scale_concentration=1e8, scale_rate=1e8))
    tp, gp = scoring.exact_tp_scores(limit, batch), scoring.exact_gp_scores(hyper, batch)
    torch.testing.assert_close(tp.nll_B, gp.nll_B, rtol=0, atol=GP_LIMIT_ATOL)
    torch.testing.assert_close(tp.coverage_B, gp.coverage_B, rtol=0, atol=0)
    prior = StudentTPrior()
    dist = exact_student_t_predictor(prior)(batch.x_ctx, batch.y_ctx, batch.x_qry)
    y = batch.y_qry.double()
    expected = -stats.t.logpdf(y.numpy(), dist.df.numpy(), dist.loc.numpy(), dist.scale.numpy())
    nll_B = torch.from_numpy(expected).mean(-1)
    torch.testing.assert_close(scoring.exact_tp_scores(prior, batch).nll_B, nll_B, rtol=0,
                               atol=SCIPY_ATOL)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "better", "n_tasks"),
    # σ² ~ InvGamma(2, 2) has no variance, so the NLL gap on Student-t tasks is heavy-tailed
    # and its standard error settles slowly: those tasks need many more draws.
    [("tp", "exact-tp", 2048), ("gp", "exact-gp", 512)],
)
def test_each_exact_predictor_wins_on_its_own_priors_tasks(
    scenario: str, better: str, n_tasks: int
) -> None:
    """Each exact predictor is Bayes-optimal on its own prior's tasks: its expected NLL is
    the lowest, so the paired gap must point its way by more than STANDARD_ERRORS se."""
    gp_prior = GPPrior(GP_RBF_PRIOR)
    index = [s.name for s in tasks.SCENARIOS].index(scenario)
    family = tasks.tp_family(StudentTPrior()) if scenario == "tp" else tasks.gp_family(gp_prior)
    batch = tasks.draw_cell(tasks.SCENARIOS[index], family, n_tasks, 20, 20,
                            tasks.cell_seed(0, index, 20))  # fmt: skip
    hyper = GPHyperparameters(**gp_prior.fixed_gp_hyperparameters())
    exact_tp = scoring.exact_tp_scores(StudentTPrior(), batch)
    exact_gp = scoring.exact_gp_scores(hyper, batch)
    diff = scoring.paired(exact_tp, exact_gp)  # TP minus GP
    sign = -1.0 if better == "exact-tp" else 1.0
    assert sign * diff["mean"] > STANDARD_ERRORS * diff["se"], diff


def test_cells_are_seeded_and_outliers_follow_the_stated_recipe() -> None:
    gp = tasks.gp_family(GPPrior(GP_RBF_PRIOR))
    index = [s.name for s in tasks.SCENARIOS].index("gp-out10")
    outlier, clean = tasks.SCENARIOS[index], tasks.SCENARIOS[index - 2]
    assert clean.name == "gp" and clean.outlier_rate == 0
    seed = tasks.cell_seed(0, index, 50)
    first, again = (tasks.draw_cell(outlier, gp, 64, 50, 5, seed) for _ in range(2))
    torch.testing.assert_close(first.y_ctx, again.y_ctx, rtol=0, atol=0)
    base = tasks.draw_cell(clean, gp, 64, 50, 5, seed)  # the same draw before the outliers
    torch.testing.assert_close(first.y_qry, base.y_qry, rtol=0, atol=0)
    hit = first.meta["outlier"].bool()
    shift = (first.y_ctx - base.y_ctx).double().abs() / gp.prior_sd
    assert bool((shift[~hit] == 0).all())
    assert bool((shift[hit] >= tasks.OUTLIER_MIN - 1e-5).all())
    assert bool((shift[hit] <= tasks.OUTLIER_MAX + 1e-5).all())
    rate, n = float(hit.double().mean()), hit.numel()  # Bernoulli(0.1) per context target
    assert abs(rate - 0.1) < STANDARD_ERRORS * math.sqrt(0.1 * 0.9 / n)
    extrap = tasks.draw_cell(tasks.SCENARIOS[index + 1], gp, 8, 5, 7, seed)
    assert float(extrap.x_ctx.max()) <= 0.5 <= float(extrap.x_qry.min())
