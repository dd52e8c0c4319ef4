"""DT validation against the exact posterior: an exact 'model' passes, a broken one fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pfnkit.reference import conjugate_gmm_posterior
from pfnkit.validation.dt_exact import validate_dt_conjugate
from priors.gmm import GMMPrior, GMMPriorConfig

FLOAT64_EXACT = 1e-8  # the same closed form along two routes (sequential vs joint)
C2ST_CHANCE = 0.1  # sbi's convention: accuracy within 0.5 ± 0.1 for identical posteriors
OBS_COV = torch.eye(2, dtype=torch.float64)


class ExactPosterior(nn.Module):
    """Stands in for a Distribution Transformer that is exactly right (or blind to data)."""

    def __init__(self, ignore_data: bool = False) -> None:
        super().__init__()
        self.ignore_data = ignore_data

    def forward(self, logits, means, tril, obs):
        obs = obs[:, :0] if self.ignore_data else obs
        return conjugate_gmm_posterior(logits, means, tril, obs, OBS_COV)

    def from_batch(self, batch):
        m = batch.meta
        return self(m["prior_logits"], m["prior_means"], m["prior_scale_tril"], batch.x_ctx)


def _sampler():
    prior = GMMPrior(GMMPriorConfig())
    return lambda n, n_obs, gen: prior.sample(n, n_obs, 0, generator=gen)


@pytest.mark.slow
def test_the_exact_posterior_passes_every_check() -> None:
    report = validate_dt_conjugate(
        ExactPosterior(), _sampler(), obs_cov=OBS_COV, n_obs_sizes=(0, 5, 20), n_tasks=64,
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
        ExactPosterior(ignore_data=True), _sampler(), obs_cov=OBS_COV, n_obs_sizes=(0, 10),
        n_tasks=32, n_c2st_tasks=2, n_c2st_samples=300,
        tolerances={"nll_gap_mean": 0.05, "c2st_mean": 0.6, "fusion_gap": 0.1},
    )  # fmt: skip
    assert abs(report.sizes[0].gap) < FLOAT64_EXACT  # with no data the prior is exact
    assert report.sizes[1].gap > 0.5 and report.sizes[1].c2st > 0.8
    assert report.fusion.gap > 0.5
    assert not report.passed
