"""The robustness front door: `run_attack`, the `ATTACKS` contract, refusals and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.table import Table
from torch import nn

import cli
from pfnkit import robustness
from pfnkit.checkpoint import Checkpoint, save_checkpoint
from pfnkit.reference.analytic import conjugate_gmm_posterior
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness import (
    ATTACKS,
    AttackConfig,
    RobustnessOptions,
    UnsupportedCheckpointError,
    run_attack,
)
from pfnkit.robustness.attacks import exact_gp_predictor
from priors.gmm import GMMPrior, GMMPriorConfig
from priors.gp import GPPrior, GPPriorConfig, Hyperprior
from tests.conftest import FLOAT64_ATOL
from tests.helpers import make_tiny_dt
from tests.robustness.test_tp_exact import tp_stand_in

OPTIONS = RobustnessOptions(eps=(0.0, 0.1, 0.3), tasks=3, n_ctx=6, n_qry=5,
                            attack=AttackConfig(steps=3), seed=0)  # fmt: skip


# ----------------------------------------------------- exact stand-ins, one per attack
class ExactGPStandIn(nn.Module):
    """A "PFN" that is the exact GP itself: its gap to the exact GP must vanish."""

    def __init__(self, hyper: GPHyperparameters) -> None:
        super().__init__()
        self.hyper = hyper
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # sets the dtype

    def forward(self, x_ctx: torch.Tensor, y_ctx: torch.Tensor, x_qry: torch.Tensor) -> Any:
        return exact_gp_predictor(self.hyper)(x_ctx, y_ctx, x_qry)


class ExactPosteriorStandIn(nn.Module):
    """A "Distribution Transformer" that is the conjugate posterior itself."""

    def __init__(self, obs_cov: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("obs_cov", obs_cov)

    def forward(self, logits, means, scale_tril, obs_BND: torch.Tensor) -> Any:  # noqa: ANN001
        return conjugate_gmm_posterior(logits, means, scale_tril, obs_BND, self.obs_cov)


def _gp_stand_in() -> tuple[Checkpoint, Any]:
    prior = GPPrior(GPPriorConfig(lengthscale=0.3))
    hyper = GPHyperparameters(**prior.fixed_gp_hyperparameters())
    card = {"model_kind": "pfn", "prior_name": "gp", "reference": "gp-exact"}
    return Checkpoint("exact-gp", ExactGPStandIn(hyper), card), prior


def _dt_stand_in() -> tuple[Checkpoint, Any]:
    prior = GMMPrior(GMMPriorConfig(obs_cov=[[0.5, 0.1], [0.1, 0.3]]))
    card = {"model_kind": "dt", "prior_name": "gmm", "reference": "dt-exact"}
    return Checkpoint("exact-posterior", ExactPosteriorStandIn(prior.obs_cov), card), prior


STAND_INS: dict[str, Callable[[], tuple[Checkpoint, Any]]] = {
    "gp-exact": _gp_stand_in,
    "dt-exact": _dt_stand_in,
    "tp-exact": tp_stand_in,
}


# ------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_exact_stand_in_has_no_gap_and_its_kl_grows_with_eps(name: str) -> None:
    assert name in STAND_INS, f"add an exact stand-in for the new attack {name!r}"
    checkpoint, prior = STAND_INS[name]()
    report = run_attack(checkpoint, prior, options=OPTIONS)
    assert report.reference == name and report.eps == OPTIONS.eps
    assert report.n_tasks == OPTIONS.tasks and report.passed
    zero = report.results[0]
    assert zero.model_kl == zero.exact_kl == (0.0,) * OPTIONS.tasks
    for result in report.results:
        torch.testing.assert_close(torch.tensor(result.model_kl), torch.tensor(result.exact_kl),
                                   rtol=0, atol=FLOAT64_ATOL)  # fmt: skip
    kl_EB = torch.tensor([r.exact_kl for r in report.results])
    assert bool((kl_EB >= 0).all()) and bool((kl_EB[1:] >= kl_EB[:-1]).all())
    assert bool((kl_EB[-1] > 0).all())
    (table,) = robustness.tables(report)
    assert isinstance(table, Table) and table.row_count == len(OPTIONS.eps)
    figures = json.loads(json.dumps(report.to_dict()))
    assert [r["eps"] for r in figures["results"]] == list(OPTIONS.eps)
    assert figures["results"][0]["ratio"] is None and figures["seed"] == OPTIONS.seed


def test_the_registry_refuses_unknown_and_missing_references_clearly() -> None:
    checkpoint, prior = _gp_stand_in()
    with pytest.raises(UnsupportedCheckpointError, match="no robustness attack for 'gp-nuts'"):
        run_attack(checkpoint, prior, reference="gp-nuts")
    bare = Checkpoint("bare", checkpoint.model, {"model_kind": "pfn", "prior_name": "gp"})
    with pytest.raises(UnsupportedCheckpointError, match="names no reference") as err:
        run_attack(bare, prior)
    assert all(name in str(err.value) for name in ATTACKS)  # it says what is supported
    with pytest.raises(ValueError, match="already registered"):
        robustness.register_attack(ATTACKS["gp-exact"])


def test_each_attack_refuses_checkpoints_it_does_not_apply_to() -> None:
    gp, gp_prior = _gp_stand_in()
    dt, dt_prior = _dt_stand_in()
    with pytest.raises(UnsupportedCheckpointError, match="'gp-exact' attacks a PFN"):
        run_attack(dt, dt_prior, reference="gp-exact", options=OPTIONS)
    with pytest.raises(UnsupportedCheckpointError, match="'dt-exact' attacks a Distribution"):
        run_attack(gp, gp_prior, reference="dt-exact", options=OPTIONS)
    hyperprior = GPPrior(GPPriorConfig(noise=Hyperprior(family="loguniform", a=1e-3, b=0.1)))
    with pytest.raises(UnsupportedCheckpointError, match="draws hyperparameters"):
        run_attack(gp, hyperprior, options=OPTIONS)
    logistic = GMMPrior(GMMPriorConfig(simulator="logistic"))
    with pytest.raises(UnsupportedCheckpointError, match="closed-form"):
        run_attack(dt, logistic, options=OPTIONS)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="increasing order"):
        RobustnessOptions(eps=(0.1, 0.05))
    with pytest.raises(ValueError, match="unknown target"):
        RobustnessOptions(target="z")


def test_the_fixed_gp_is_the_one_the_prior_draws_its_tasks_from() -> None:
    """The hyperparameters the attack uses equal the ones each task records in its meta."""
    config = GPPriorConfig(num_features=3, lengthscale=[0.2, 0.5, 1.0], outputscale=2.0,
                           noise=0.05, kernel="matern32", lengthscale_scaling="sqrt")  # fmt: skip
    prior = GPPrior(config)
    fixed = prior.fixed_gp_hyperparameters()
    meta = prior.sample(4, 3, 2, generator=torch.Generator().manual_seed(0)).meta
    assert fixed["kernel"] == "matern32"
    for key in ("lengthscale", "outputscale", "noise"):
        expected = torch.tensor(fixed[key], dtype=torch.float32).expand_as(meta[key])
        torch.testing.assert_close(meta[key], expected)


# ------------------------------------------------------------------------------ CLI
def _with_reference(checkpoint: Path, reference: str) -> Path:
    card_path = checkpoint.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "reference": reference}))
    return checkpoint


def test_cli_robustness_smoke(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    argv = ["robustness", "--checkpoint", str(_with_reference(tiny_checkpoint, "gp-exact")),
            "--eps", "0,0.1,0.3", "--tasks", "2", "--steps", "2", "--n-ctx", "5", "--n-qry",
            "4", "--json", str(tmp_path / "robust.json"), "--plots", str(tmp_path / "plots"),
            "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "exact mean" in out and "ratio" in out
    report = json.loads((tmp_path / "robust.json").read_text())
    results = report["results"]
    assert [r["eps"] for r in results] == [0.0, 0.1, 0.3]
    assert results[0]["ratio"] is None and results[0]["model_mean"] == 0.0
    assert results[2]["model_mean"] >= results[1]["model_mean"] > 0
    assert results[2]["exact_mean"] >= results[1]["exact_mean"] > 0
    assert len(results[1]["model_kl"]) == 2 and report["attack"]["steps"] == 2
    assert report["reference"] == "gp-exact" and report["passed"]
    assert (tmp_path / "plots" / "attack_y_l2.png").stat().st_size > 0


def test_cli_robustness_refuses_checkpoints_without_an_attack(tiny_checkpoint: Path) -> None:
    with pytest.raises(SystemExit, match="names no reference"):
        cli.main(["robustness", "--checkpoint", str(tiny_checkpoint), "--tasks", "1"])
    _with_reference(tiny_checkpoint, "gp-nuts")
    with pytest.raises(SystemExit, match="no robustness attack for 'gp-nuts'.*gp-exact"):
        cli.main(["robustness", "--checkpoint", str(tiny_checkpoint), "--tasks", "1"])
    card_path = tiny_checkpoint.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["prior_config"]["noise"] = {"family": "loguniform", "a": 0.001, "b": 0.1}
    card_path.write_text(json.dumps(card))
    with pytest.raises(SystemExit, match="draws hyperparameters"):
        cli.main(["robustness", "--checkpoint", str(tiny_checkpoint), "--reference",
                  "gp-exact", "--tasks", "1"])  # fmt: skip


def test_cli_attacks_a_distribution_transformer_against_the_conjugate_posterior(tmp_path) -> None:
    card = save_checkpoint(
        tmp_path / "dt-tiny", make_tiny_dt().float(), prior_name="gmm",
        prior_config=GMMPriorConfig().to_dict(), train_config={"n_ctx_max": 20},
        command="test", reference="dt-exact",
    )  # fmt: skip
    out = tmp_path / "rob.json"
    argv = ["robustness", "--checkpoint", str(card), "--tasks", "3", "--steps", "2", "--n-ctx",
            "5", "--json", str(out), "--plots", str(tmp_path), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["target"] == "observations" and report["reference"] == "dt-exact"
    kls = [r["exact_mean"] for r in report["results"]]
    assert kls == sorted(kls) and kls[-1] > 0
    assert (tmp_path / "attack_observations.png").exists()
