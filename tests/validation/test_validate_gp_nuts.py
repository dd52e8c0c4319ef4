"""GP-hyperprior validation against NUTS and ML-II, in the library and through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import cli
from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.reference.gp_cholesky import cholesky_gp_predictive
from pfnkit.reference.gp_hyperprior import GPHyperprior
from pfnkit.reference.gp_linear_ml2 import fit_ml2_linear
from pfnkit.reference.gp_nuts import gp_hyperparameter_posterior
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.validation.gp_nuts import (
    CellResult,
    GPNutsValidationConfig,
    TaskScores,
    validate_gp_against_nuts,
)
from pfnkit.validation.plots import plot_nll_by_context
from pfnkit.validation.tables import gp_nuts_tables
from priors.gp import GPPrior, GPPriorConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_pfn

GENERAL = GPPriorConfig.general_purpose(num_features=3)
LINEAR = GPPriorConfig.from_dict(
    {**GENERAL.to_dict(), "linear_weight": {"family": "lognormal", "a": -1.5, "b": 1.5}}
)
TINY_NUTS = NUTSConfig(num_chains=2, warmup=8, num_samples=8, max_tree_depth=3)


@pytest.fixture
def hyper_checkpoint(tmp_path: Path) -> Path:
    """An untrained 3-feature PFN whose card carries the general GP hyperprior."""
    config = PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=20)
    card = save_checkpoint(
        tmp_path / "gp3-tiny",
        make_tiny_pfn(config),
        prior_name="gp",
        prior_config=GENERAL.to_dict(),
        train_config={"n_ctx_max": 50},
        command="pytest fixture",
        reference="gp-nuts",
        data_mapping={
            "x": "standardize",
            "y": "standardize",
            "features": "pad",
            "pad_rescale": "sqrt",
        },  # fmt: skip
    )
    return card.with_suffix(".safetensors")


def test_reports_every_cell_and_task_with_the_nuts_gate(tmp_path: Path) -> None:
    config = GPNutsValidationConfig(n_ctx_sizes=(2, 4), dims=(1, 3), n_tasks=2, nuts_tasks=1,
                                    n_qry=5, predictive_draws=4, nuts=TINY_NUTS)  # fmt: skip
    model = make_tiny_pfn(PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                    n_bars=20))  # fmt: skip
    report = validate_gp_against_nuts(
        model, GPPrior(GENERAL), GENERAL.to_dict(), config=config, checkpoint="tiny",
        tolerances={"nll_gap_mean": 0.05},
    )  # fmt: skip
    assert [(c.d, c.n_ctx) for c in report.cells] == [(1, 2), (1, 4), (3, 2), (3, 4)]
    assert len(report.tasks) == 8 and [t.nuts_run for t in report.tasks] == [True, False] * 4
    ran = [t for t in report.tasks if t.nuts_run]
    assert all(t.max_r_hat > 1.0 for t in ran)
    assert all(math.isnan(t.nuts_nll) and not t.trusted for t in report.tasks if not t.nuts_run)
    for cell, pair in zip(report.cells, zip(*[iter(report.tasks)] * 2, strict=True), strict=True):
        assert math.isfinite(cell.pfn_nll) and math.isfinite(cell.nuts_nll)
        assert 0.0 <= cell.nuts_coverage <= 1.0 and cell.speed_ratio > 0
        assert cell.n_tasks == 2 and cell.nuts_tasks == 1 and cell.nuts_nll == pair[0].nuts_nll
        loop = sum(t.pfn_nll - t.ml2_nll for t in pair) / 2
        assert cell.ml2_gap == pytest.approx(loop, abs=1e-12)
    small = [c.ml2_gap for c in report.cells if c.n_ctx <= 2]
    assert report.ml2_gap(2) == pytest.approx(sum(small) / len(small), abs=1e-12)
    untrusted = [t for t in ran if not t.trusted]
    assert untrusted and all(t.reason for t in untrusted)  # 8 draws cannot reach ESS 100
    assert not report.passed  # a tolerance is set, and no cell has a trusted NUTS run
    checks = {c.name: c for c in report.checks()}
    assert checks["nll_gap_mean"].value is None and not checks["nll_gap_mean"].passed
    assert not checks["nll_gap_max"].gated  # the card sets no nll_gap_max
    data = json.loads(json.dumps(report.to_dict()))
    assert data["config"]["nuts"] == TINY_NUTS.to_dict() and len(data["tasks"]) == 8
    assert GPNutsValidationConfig.from_dict(data["config"]) == config
    assert plot_nll_by_context(report.to_dict(), tmp_path / "nll.png").stat().st_size > 0
    main, checks_table = gp_nuts_tables(data)  # from JSON, as from the report
    assert main.row_count == 4 and checks_table.row_count == 2


def test_cell_averages_use_trusted_tasks_for_the_gap() -> None:
    def task(i: int, trusted: bool, ml2_error: str = "", nuts_run: bool = True) -> TaskScores:
        return TaskScores(n_ctx=5, d=1, index=i, pfn_nll=1.0 + i,
                          nuts_nll=1.0 if nuts_run else math.nan,
                          ml2_nll=math.nan if ml2_error else 2.0, pfn_coverage=0.9,
                          nuts_coverage=0.8 if nuts_run else math.nan, ml2_coverage=0.7,
                          pfn_seconds=0.01, nuts_seconds=10.0 if nuts_run else math.nan,
                          ml2_seconds=1.0, trusted=trusted, reason="" if trusted else "R-hat",
                          max_r_hat=1.0, min_ess=200.0, divergences=0, ml2_error=ml2_error,
                          nuts_run=nuts_run)  # fmt: skip

    tasks = [task(0, True), task(1, False, "failed"), task(2, True), task(3, False, nuts_run=False)]
    cell = CellResult.from_tasks(tasks)
    assert cell.gap == pytest.approx(1.0) and cell.trusted_fraction == pytest.approx(2 / 3)
    assert cell.pfn_nll == pytest.approx(2.5) and cell.ml2_nll == pytest.approx(2.0)
    assert cell.nuts_nll == pytest.approx(1.0) and cell.nuts_coverage == pytest.approx(0.8)
    assert cell.ml2_gap == pytest.approx((-1.0 + 1.0 + 2.0) / 3)  # PFN - ML-II, tasks 0, 2, 3
    assert cell.n_tasks == 4 and cell.nuts_tasks == 3
    assert cell.ml2_failures == 1 and cell.speed_ratio == pytest.approx(10.0 / 0.01)


def test_cli_validate_dispatches_a_hyperprior_card_to_nuts(hyper_checkpoint, tmp_path) -> None:
    out = tmp_path / "report.json"
    argv = ["validate", "--checkpoint", str(hyper_checkpoint), "--tasks", "1", "--sizes", "3",
            "--dims", "1,3", "--n-qry", "4", "--nuts-warmup", "6", "--nuts-samples", "6",
            "--json", str(out), "--plots", str(tmp_path / "plots"), "--no-progress"]  # fmt: skip
    assert cli.main([*argv, "--write-card"]) == 0  # the card has no tolerances
    report = json.loads(out.read_text())
    assert report["reference"] == "nuts" and len(report["cells"]) == 2
    recorded = json.loads(hyper_checkpoint.with_suffix(".json").read_text())["validation"]
    assert recorded["n_tasks"] == 1 and recorded["command"].startswith("python cli.py validate")
    assert "tasks" not in recorded and recorded["cells"] == report["cells"]  # no per-task list
    assert report["config"]["nuts"]["warmup"] == 6 and report["config"]["n_tasks"] == 1
    assert report["config"]["nuts_tasks"] == 1  # the default (4) capped at --tasks
    assert (tmp_path / "plots" / "nll_by_context.png").exists()
    with pytest.raises(SystemExit, match="trained on d in"):
        cli.main([*argv[:-1], "--dims", "5"])


def test_cli_refuses_nuts_for_fixed_hyperparameters(tiny_checkpoint) -> None:
    argv = ["validate", "--checkpoint", str(tiny_checkpoint), "--reference", "gp-nuts"]
    with pytest.raises(SystemExit, match="fixes every hyperparameter"):
        cli.main(argv)


def test_config_rejects_more_nuts_tasks_than_tasks() -> None:
    with pytest.raises(ValueError, match="nuts_tasks must lie in"):
        GPNutsValidationConfig(n_tasks=2, nuts_tasks=3)


def test_pretrain_card_mapping_follows_the_prior_rescale() -> None:
    prior = GPPrior(GENERAL)
    pad = {"x": "standardize", "y": "standardize", "features": "pad"}
    assert cli._card_data_mapping(prior, pad) == {**pad, "pad_rescale": "sqrt"}
    with pytest.raises(SystemExit, match="pad_rescale"):
        cli._card_data_mapping(prior, {**pad, "pad_rescale": "none"})
    with pytest.raises(SystemExit, match='features = "pad"'):
        cli._card_data_mapping(prior, {"x": "standardize"})
    assert cli._card_data_mapping(GPPrior(GPPriorConfig()), None) is None


@pytest.mark.slow
def test_scores_do_not_depend_on_the_number_of_workers() -> None:
    config = GPNutsValidationConfig(n_ctx_sizes=(3,), dims=(1, 2), n_tasks=3, nuts_tasks=2,
                                    n_qry=4, predictive_draws=4, nuts=TINY_NUTS)  # fmt: skip
    model = make_tiny_pfn(PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                    n_bars=20))  # fmt: skip
    one, two = (
        validate_gp_against_nuts(
            model, GPPrior(GENERAL), GENERAL.to_dict(), config=config, workers=w
        )  # fmt: skip
        for w in (1, 2)
    )
    fields = ("pfn_nll", "nuts_nll", "ml2_nll", "trusted", "max_r_hat", "nuts_run")
    for a, b in zip(one.tasks, two.tasks, strict=True):
        # repr: exact floats, and NaN (no NUTS run) equal to NaN
        assert [repr(getattr(a, f)) for f in fields] == [repr(getattr(b, f)) for f in fields]


def test_a_linear_part_reaches_the_task_draws_nuts_and_ml2() -> None:
    config = GPNutsValidationConfig(n_ctx_sizes=(6,), dims=(2,), n_tasks=2, nuts_tasks=1,
                                    n_qry=5, predictive_draws=4, nuts=TINY_NUTS)  # fmt: skip
    model = make_tiny_pfn(PFNConfig(num_features=3, d_model=32, n_heads=4, n_layers=2, d_ff=64,
                                    n_bars=20))  # fmt: skip
    report = validate_gp_against_nuts(model, GPPrior(LINEAR), LINEAR.to_dict(), config=config)
    # the same tasks and seeds by hand (loop equivalent): the first cell's first draws
    batch = GPPrior(LINEAR).sample(2, 6, 5, generator=torch.Generator().manual_seed(config.seed),
                                   num_used_features=2)  # fmt: skip
    assert torch.all(batch.meta["linear_variance"][:, :2] > 0)
    hyperprior = GPHyperprior.from_prior_config(LINEAR.to_dict(), 2)
    assert hyperprior.has_linear and hyperprior.num_parameters == 6
    for i, scores in enumerate(report.tasks):
        x_ND, y_N = batch.x_ctx[i, :, :2].double(), batch.y_ctx[i].double()
        x_qry_MD, y_M = batch.x_qry[i, :, :2].double(), batch.y_qry[i].double()
        ml2 = cholesky_gp_predictive(x_ND, y_N, x_qry_MD, fit_ml2_linear(x_ND, y_N))
        assert scores.ml2_nll == pytest.approx(float(-ml2.log_prob(y_M).mean()), abs=FLOAT64_ATOL)
        if scores.nuts_run:
            post = gp_hyperparameter_posterior(
                x_ND, y_N, hyperprior, TINY_NUTS, seed=config.seed + 1 + i, predictive_draws=4
            )
            expected = float(-post.predictive(x_qry_MD).log_prob(y_M).mean())
            assert scores.nuts_nll == pytest.approx(expected, abs=FLOAT64_ATOL)
    assert [t.nuts_run for t in report.tasks] == [True, False]
