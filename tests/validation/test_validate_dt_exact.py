"""DT validation against the exact posterior: an exact 'model' passes, a broken one fails."""

from __future__ import annotations

import dataclasses
from io import StringIO
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.distributions import MixtureSameFamily

from pfnkit.checkpoint import Checkpoint
from pfnkit.data import Batch
from pfnkit.reference import conjugate_gmm_posterior
from pfnkit.validation import VALIDATORS, ValidationOptions
from pfnkit.validation.dt_exact import validate_dt_conjugate
from pfnkit.validation.tables import dt_exact_tables
from priors.gmm import GMMPrior, GMMPriorConfig

FLOAT64_EXACT = 1e-8  # the same closed form along two routes (sequential vs joint)
C2ST_CHANCE = 0.1  # sbi's convention: accuracy within 0.5 ± 0.1 for identical posteriors
C2ST_SAMPLES_CHEAP = 100  # draws per posterior where the C2ST's value is not checked
OBS_COV = torch.eye(2, dtype=torch.float64)
PRIOR = GMMPrior(GMMPriorConfig())  # the Gaussian simulator with obs_cov = OBS_COV


class ExactPosterior(nn.Module):
    """Stands in for a Distribution Transformer that is exactly right (or blind to data)."""

    def __init__(self, ignore_data: bool = False) -> None:
        super().__init__()
        self.ignore_data = ignore_data

    def forward(
        self, logits: Tensor, means: Tensor, tril: Tensor, obs: Tensor
    ) -> MixtureSameFamily:
        obs = obs[:, :0] if self.ignore_data else obs
        return conjugate_gmm_posterior(logits, means, tril, obs, OBS_COV)

    def from_batch(self, batch: Batch) -> MixtureSameFamily:
        m = batch.meta
        return self(m["prior_logits"], m["prior_means"], m["prior_scale_tril"], batch.x_ctx)


@pytest.mark.slow
def test_the_exact_posterior_passes_every_check() -> None:
    report = validate_dt_conjugate(
        ExactPosterior(), PRIOR, n_obs_sizes=(0, 5, 20), n_tasks=64,
        n_c2st_tasks=3, n_c2st_samples=500,
        tolerances={"nll_gap_mean": 1e-9, "c2st_mean": 0.5 + C2ST_CHANCE, "fusion_gap": 1e-8},
    )  # fmt: skip
    assert all(abs(s.gap) < FLOAT64_EXACT for s in report.sizes)
    assert abs(report.fusion.gap) < FLOAT64_EXACT
    assert abs(report.fusion.dt_joint_nll - report.fusion.exact_nll) < FLOAT64_EXACT
    assert min(report.sbc["ks_pvals"]) > 1e-3
    assert max(report.sbc["c2st_ranks"]) < 0.5 + C2ST_CHANCE  # jittered ranks look uniform
    assert report.passed


def test_a_model_blind_to_the_data_fails() -> None:
    report = validate_dt_conjugate(
        ExactPosterior(ignore_data=True), PRIOR, n_obs_sizes=(0, 10),
        n_tasks=32, n_c2st_tasks=2, n_c2st_samples=300,
        tolerances={"nll_gap_mean": 0.05, "c2st_mean": 0.6},  # fusion_gap: not gated
    )  # fmt: skip
    assert abs(report.sizes[0].gap) < FLOAT64_EXACT  # with no data the prior is exact
    assert report.sizes[1].gap > 0.5 and report.sizes[1].c2st > 0.8
    assert report.fusion.gap > 0.5
    assert not report.passed
    assert {c.name: c.passed for c in report.checks()} == {
        "nll_gap_mean": False,
        "c2st_mean": False,
        "fusion_gap": True,  # far off, but the card names no tolerance for it
    }
    assert report.to_dict()["tolerances"] == {"nll_gap_mean": 0.05, "c2st_mean": 0.6}
    console = Console(file=StringIO(), width=200)
    for table in dt_exact_tables(report.to_dict()):
        console.print(table)
    assert "vs exact posterior" in console.file.getvalue() and "fusion" in console.file.getvalue()


CHECKPOINT = Checkpoint(name="dt-tiny", model=ExactPosterior(), card={"prior_name": "gmm"})


@pytest.mark.slow  # five sbi C2STs (one per task, four in the SBC check): about 5 s each
def test_the_validator_runs_with_its_options_and_plots(tmp_path: Path) -> None:
    validator = dataclasses.replace(
        VALIDATORS["dt-exact"], c2st_tasks=1, c2st_samples=C2ST_SAMPLES_CHEAP
    )
    report = validator.run(CHECKPOINT, PRIOR, ValidationOptions(tasks=5, sizes=(3,), seed=5))
    assert report.n_tasks == 5 and [s.n_obs for s in report.sizes] == [3]
    assert report.to_dict()["seed"] == 5
    paths = validator.plots(CHECKPOINT, PRIOR, report, tmp_path)
    assert [p.name for p in paths] == ["posterior_contours.png"] and paths[0].exists()


def test_the_validator_refuses_a_non_conjugate_prior_and_too_few_tasks() -> None:
    validator = VALIDATORS["dt-exact"]
    logistic = GMMPrior(GMMPriorConfig(simulator="logistic"))
    with pytest.raises(ValueError, match="dt-nuts"):
        validator.run(CHECKPOINT, logistic, ValidationOptions(tasks=5, sizes=(3,)))
    with pytest.raises(ValueError, match="SBC needs at least"):
        validator.run(CHECKPOINT, PRIOR, ValidationOptions(tasks=2, sizes=(3,)))


@pytest.mark.slow  # two SBC checks: eight sbi C2STs
def test_the_same_seed_gives_the_same_sbc_figures_and_leaves_the_global_rng_alone() -> None:
    from pfnkit.validation.dt_exact import _sbc_summary

    gen = torch.Generator().manual_seed(0)
    theta_ND = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    draws_LND = torch.randn(50, 20, 2, generator=gen, dtype=torch.float64)
    pieces = [(theta_ND, draws_LND, draws_LND[0])]
    global_state = torch.random.get_rng_state()
    first = _sbc_summary(pieces, torch.Generator().manual_seed(1), seed=7)
    torch.rand(3)  # a different global state must not change the figures
    second = _sbc_summary(pieces, torch.Generator().manual_seed(1), seed=7)
    assert first == second
    torch.random.set_rng_state(global_state)
    _sbc_summary(pieces, torch.Generator().manual_seed(1), seed=7)
    assert torch.equal(torch.random.get_rng_state(), global_state)
