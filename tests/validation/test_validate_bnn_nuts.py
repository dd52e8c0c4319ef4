"""BNN-classifier validation against NUTS: an exact stand-in passes, a data-blind model fails."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.distributions import Categorical

import cli
from pfnkit.checkpoint import Checkpoint, save_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.reference.mcmc import NUTSConfig
from pfnkit.validation import VALIDATORS, ValidationOptions
from pfnkit.validation.bnn_nuts import validate_classifier_against_nuts
from pfnkit.validation.bnn_nuts_results import DEFAULT_BNN_NUTS, BNNNutsValidationConfig
from pfnkit.validation.plots import plot_bnn_nuts
from pfnkit.validation.tables import bnn_nuts_tables
from priors.bnn import BNNPrior, BNNPriorConfig
from tests.helpers import ImportanceSamplingPredictive, make_tiny_pfn

# Depth 0 (logistic regression on one input: a weight and a bias) with large weights, so a
# few labels are informative and NUTS is cheap; the validation code does not care.
SMALL = BNNPriorConfig(
    num_features=1, depth=0, weight_std=3.0, bias_std=1.0, output="classification",
    n_classes=2, binary_logit=True,
)  # fmt: skip
IS_DRAWS = 100_000  # prior draws of the importance-sampling stand-in
# Short chains: R-hat's own noise at 2 x 100 draws is a few hundredths, so the gate is loosened.
SHORT = NUTSConfig(num_chains=2, warmup=60, num_samples=100, max_tree_depth=3, r_hat_max=1.1,
                   min_ess=40.0)  # fmt: skip
SHORT_POINT_R_HAT_MAX = 1.2  # likewise for the worst of 20 query points
# Exact stand-in vs NUTS: both are Monte Carlo estimates of the same predictive, so their
# mean NLLs over 2 x 2 tasks x 20 points agree to a few hundredths of a nat.
GAP_TOLERANCE = 0.03


class DataBlind(nn.Module):
    """Predicts 1/2 for every query: ignores the context entirely."""

    def forward(self, x_ctx: Tensor, y_ctx: Tensor, x_qry: Tensor) -> Categorical:
        return Categorical(probs=torch.full((*x_qry.shape[:2], 2), 0.5))


def _config(**overrides) -> BNNNutsValidationConfig:
    settings = {"n_ctx_sizes": (5, 20), "n_tasks": 2, "n_qry": 20, "nuts": SHORT,
                "point_r_hat_max": SHORT_POINT_R_HAT_MAX,
                "curve_n_ctx": 3, "curve_tasks": 1, "curve_budgets": (4, 16)}  # fmt: skip
    return BNNNutsValidationConfig(**{**settings, **overrides})


def _render(tables: list) -> str:
    console = Console(file=StringIO(), width=200)
    for table in tables:
        console.print(table)
    return console.file.getvalue()


def test_exact_stand_in_matches_nuts_and_a_blind_model_does_not(tmp_path: Path) -> None:
    prior = BNNPrior(SMALL)
    config = _config()
    tolerances = {"nll_gap_mean": GAP_TOLERANCE}
    exact = validate_classifier_against_nuts(
        ImportanceSamplingPredictive(prior, IS_DRAWS), prior, config=config, tolerances=tolerances
    )
    blind = validate_classifier_against_nuts(
        DataBlind(), prior, config=config, tolerances=tolerances
    )
    assert exact.trusted_fraction == 1.0, [t.reason for t in exact.tasks]
    assert abs(exact.mean_gap) < GAP_TOLERANCE and exact.passed
    # The same tasks and seeds: NUTS scores agree exactly between the two runs.
    assert [t.nuts_nll for t in exact.tasks] == [t.nuts_nll for t in blind.tasks]
    assert all(t.pfn_nll == pytest.approx(math.log(2)) for t in blind.tasks)
    assert blind.mean_gap > exact.mean_gap + 0.05 and not blind.passed
    assert [c.n_ctx for c in exact.cells] == [5, 20]
    assert [p.budget for p in exact.curve] == [4, 16]
    assert exact.curve_pfn_nll is not None
    assert len({t.nuts_seed for t in exact.tasks}) == len(exact.tasks)  # independent runs
    assert all(
        t.chain_nll_spread < 0.1 and t.max_point_r_hat < SHORT_POINT_R_HAT_MAX for t in exact.tasks
    )
    data = json.loads(json.dumps(exact.to_dict()))
    assert data["passed"] and len(data["tasks"]) == 4
    assert {c["name"]: c["passed"] for c in data["checks"]} == {
        "nll_gap_mean": True,
        "trusted_fraction_min": True,
    }
    text = _render(bnn_nuts_tables(data))
    assert "vs NUTS on the weight posterior" in text and "NLL vs time" in text
    assert plot_bnn_nuts(data, tmp_path / "nll.png").stat().st_size > 0


def test_a_size_without_trusted_runs_fails_only_when_gated() -> None:
    prior = BNNPrior(SMALL)
    hopeless = NUTSConfig(num_chains=2, warmup=5, num_samples=10, max_tree_depth=2, min_ess=1e6)
    config = _config(n_ctx_sizes=(3,), n_tasks=1, nuts=hopeless, curve_tasks=0)
    gated = validate_classifier_against_nuts(
        DataBlind(), prior, config=config, tolerances={"nll_gap_mean": 10.0}
    )
    assert gated.trusted_fraction == 0.0 and gated.mean_gap is None
    assert not gated.passed  # the gap is gated but could not be measured
    ungated = validate_classifier_against_nuts(DataBlind(), prior, config=config)
    assert ungated.passed and all(not c.gated for c in ungated.checks())


@pytest.mark.slow  # two spawned processes import torch and pyro: most of a minute
def test_workers_do_not_change_the_scores() -> None:
    prior = BNNPrior(SMALL)
    config = _config(n_ctx_sizes=(4,), curve_tasks=0)
    model = DataBlind()
    one = validate_classifier_against_nuts(model, prior, config=config)
    two = validate_classifier_against_nuts(model, prior, config=config, workers=2)
    assert [t.nuts_nll for t in one.tasks] == [t.nuts_nll for t in two.tasks]
    assert one.curve == [] and one.curve_pfn_nll is None


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="n_ctx_sizes"):
        BNNNutsValidationConfig(n_ctx_sizes=(0,))
    with pytest.raises(ValueError, match="curve"):
        BNNNutsValidationConfig(curve_budgets=(2,))
    with pytest.raises(ValueError, match="workers"):
        validate_classifier_against_nuts(DataBlind(), BNNPrior(SMALL), workers=0)


def _checkpoint(model: nn.Module, prior_name: str = "bnn") -> Checkpoint:
    card = {"prior_name": prior_name, "tolerances": {"nll_gap_mean": 10.0}}
    return Checkpoint(name="bnn-tiny", model=model, card=card)


def test_the_validator_maps_options_and_writes_its_plot(tmp_path: Path) -> None:
    validator = VALIDATORS["bnn-nuts"]
    options = ValidationOptions(tasks=1, sizes=(2,), n_qry=5, nuts_warmup=20, nuts_samples=20,
                                curve_tasks=0, seed=7)  # fmt: skip
    report = validator.run(_checkpoint(DataBlind()), BNNPrior(SMALL), options)
    config = report.to_dict()["config"]
    assert config["n_ctx_sizes"] == (2,) and config["n_tasks"] == 1 and config["seed"] == 7
    assert config["nuts"]["warmup"] == 20 and config["nuts"]["num_samples"] == 20
    assert config["nuts"]["r_hat_max"] == DEFAULT_BNN_NUTS.r_hat_max  # the rest: defaults
    assert "bnn-tiny vs NUTS" in _render(validator.tables(report))
    paths = validator.plots(_checkpoint(DataBlind()), BNNPrior(SMALL), report, tmp_path)
    assert [p.name for p in paths] == ["nll_vs_nuts.png"] and paths[0].exists()


@pytest.mark.parametrize(
    "config",
    [
        BNNPriorConfig(num_features=1, depth=0, output="regression"),
        BNNPriorConfig(mode="hyperprior", output="classification", n_classes=2),
    ],
)
def test_the_validator_refuses_a_prior_without_a_fixed_weight_posterior(config) -> None:
    with pytest.raises(ValueError, match="fixed-architecture"):
        VALIDATORS["bnn-nuts"].run(_checkpoint(DataBlind()), BNNPrior(config), ValidationOptions())


def test_cli_validates_a_bnn_classifier_against_nuts(tmp_path: Path, capsys) -> None:
    config = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_classes=2)
    card = save_checkpoint(
        tmp_path / "bnn-tiny", make_tiny_pfn(config), prior_name="bnn",
        prior_config=SMALL.to_dict(), train_config={"n_ctx_max": 20}, command="pytest",
        tolerances={"nll_gap_mean": 10.0}, reference="bnn-nuts",
    )  # fmt: skip
    weights = str(card.with_suffix(".safetensors"))
    out = tmp_path / "report.json"
    args = ["validate", "--checkpoint", weights, "--sizes", "2", "--tasks", "1", "--n-qry", "5",
            "--nuts-warmup", "20", "--nuts-samples", "20", "--curve-tasks", "0",
            "--json", str(out), "--plots", str(tmp_path), "--no-progress",
            "--write-card"]  # fmt: skip
    code = cli.main(args)
    assert "vs NUTS on the weight posterior" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == (0 if report["passed"] else 1)  # 20 + 20 draws may not pass the R-hat gate
    assert report["config"]["nuts"]["warmup"] == 20 and len(report["tasks"]) == 1
    assert (tmp_path / "nll_vs_nuts.png").exists()
    assert json.loads(card.read_text())["validation"]["n_tasks"] == 1
    with pytest.raises(SystemExit, match="no 'exact' reference"):
        cli.main([*args[:-1], "--reference", "exact"])
