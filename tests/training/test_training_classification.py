"""Pretraining a classification PFN: no bar borders, long targets, the held-out NLL falls."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical

from pfnkit.models import PFN, PFNConfig
from pfnkit.training import PFNLightningModule, TrainConfig, initial_model, pretrain
from tests.logistic_prior import LogisticPrior, LogisticPriorConfig

NLL_DROP = 0.05  # nats per query point on held-out tasks after 30 steps (log 2 ≈ 0.69 at start)
PRIOR = LogisticPriorConfig(num_features=2, n_classes=2)
TINY_CLASSIFIER = PFNConfig(num_features=2, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_classes=2)


def _tiny_train(steps: int, **overrides) -> TrainConfig:
    defaults = dict(
        steps=steps,
        batch_size=32,
        n_ctx_min=16,
        n_ctx_max=16,
        n_qry=16,
        warmup_steps=5,
        lr=3e-3,
        num_workers=0,
        checkpoint_every=10,
    )
    return TrainConfig(**{**defaults, **overrides})


def test_prior_emits_float_labels_in_range() -> None:
    batch = LogisticPrior(PRIOR).sample(8, 5, 3, generator=torch.Generator().manual_seed(0))
    assert batch.y_ctx.dtype == torch.float32
    assert set(batch.y_qry.unique().tolist()) <= {0.0, 1.0}


def test_initial_classifier_has_no_borders_and_loss_takes_float_labels() -> None:
    prior = LogisticPrior(PRIOR)
    model = initial_model(TINY_CLASSIFIER, prior, _tiny_train(1))
    assert not hasattr(model, "borders")
    batch = prior.sample(4, 6, 5, generator=torch.Generator().manual_seed(1))
    loss = PFNLightningModule(model, _tiny_train(1)).loss(batch)
    dist = model(batch.x_ctx, batch.y_ctx, batch.x_qry)
    assert isinstance(dist, Categorical)
    expected = -dist.log_prob(batch.y_qry.long()).mean()
    torch.testing.assert_close(loss, expected, atol=0, rtol=0)


def test_fisher_penalty_is_refused_for_classifiers(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="regression PFNs only"):
        pretrain(
            TINY_CLASSIFIER, LogisticPrior(PRIOR), _tiny_train(1, fisher_weight=0.1),
            run_dir=tmp_path,
        )  # fmt: skip


def test_held_out_nll_falls_within_30_steps(tmp_path: Path) -> None:
    prior, config = LogisticPrior(PRIOR), _tiny_train(30)
    held_out = prior.sample(256, 16, 16, generator=torch.Generator().manual_seed(99))

    def held_out_nll(model: PFN) -> float:
        with torch.no_grad():
            dist = model(held_out.x_ctx, held_out.y_ctx, held_out.x_qry)
            return float(-dist.log_prob(held_out.y_qry.long()).mean())

    untrained = initial_model(TINY_CLASSIFIER, prior, config)
    trained = pretrain(TINY_CLASSIFIER, prior, config, run_dir=tmp_path).model
    assert held_out_nll(trained) < held_out_nll(untrained) - NLL_DROP
