"""Pretraining: the loss falls, streams are seeded per rank and worker, runs resume."""

from __future__ import annotations

import csv
import importlib
import logging
import math
import warnings
from pathlib import Path

import pytest
import torch

from pfnkit.models import PFN, PFNConfig
from pfnkit.training import (
    PriorStream,
    TrainConfig,
    initial_model,
    pretrain,
)
from priors.gp import GPPrior, GPPriorConfig

LOSS_DROP = 0.1  # nats per query point on held-out tasks after 50 steps
TINY_MODEL = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=2, d_ff=64, n_bars=50)


def _tiny_train(steps: int, **overrides) -> TrainConfig:
    defaults = dict(
        steps=steps,
        batch_size=16,
        n_ctx_min=8,
        n_ctx_max=8,
        n_qry=16,
        warmup_steps=5,
        lr=3e-3,
        num_workers=0,
        n_border_tasks=100,
        checkpoint_every=10,
    )
    return TrainConfig(**{**defaults, **overrides})


def _logged_losses(run_dir: Path, version: int = 0) -> list[float]:
    with open(run_dir / "log" / f"version_{version}" / "metrics.csv") as handle:
        return [float(row["train/nll"]) for row in csv.DictReader(handle) if row.get("train/nll")]


def test_loss_falls_within_50_steps(tmp_path: Path) -> None:
    prior, config = GPPrior(), _tiny_train(50, batch_size=32)
    held_out = prior.sample(256, 8, 16, generator=torch.Generator().manual_seed(99))

    def held_out_nll(model: PFN) -> float:
        with torch.no_grad():
            dist = model(held_out.x_ctx, held_out.y_ctx, held_out.x_qry)
            return float(-dist.log_prob(held_out.y_qry).mean())

    untrained = initial_model(TINY_MODEL, prior, config)
    trained = pretrain(TINY_MODEL, prior, config, run_dir=tmp_path).model
    assert len(_logged_losses(tmp_path)) == 5
    assert held_out_nll(trained) < held_out_nll(untrained) - LOSS_DROP


def test_initial_model_depends_only_on_the_seed() -> None:
    prior = GPPrior()
    first = initial_model(TINY_MODEL, prior, _tiny_train(1))
    torch.manual_seed(123)  # the global RNG does not matter
    again = initial_model(TINY_MODEL, prior, _tiny_train(1))
    other = initial_model(TINY_MODEL, prior, _tiny_train(1, seed=1))
    weight = lambda m: m.x_encoder[0].weight  # noqa: E731
    torch.testing.assert_close(weight(first), weight(again), atol=0, rtol=0)
    assert not torch.equal(weight(first), weight(other))


def _timer_minutes(state: dict) -> float:
    (timer,) = [v for k, v in state["callbacks"].items() if k.startswith("Timer")]
    return timer["time_elapsed"]["train"] / 60


def test_training_resumes_and_sums_steps_and_minutes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = pretrain(TINY_MODEL, GPPrior(), _tiny_train(10), run_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    second = pretrain(TINY_MODEL, GPPrior(), _tiny_train(20), run_dir=tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 20
    assert len(_logged_losses(tmp_path, version=1)) == 1  # the second run logged steps 10-19
    assert not second.model.training
    assert (first.summary["optimizer_steps"], second.summary["optimizer_steps"]) == (10, 20)
    # the live Timer carries the first run's minutes, as Lightning's last.ckpt records them
    assert second.summary["train_minutes"] > first.summary["train_minutes"] > 0
    assert second.summary["train_minutes"] == _timer_minutes(state)
    assert set(second.summary) == {"optimizer_steps", "train_minutes"}


def _first_batch(rank: int, offset: int = 0, seed: int = 0) -> torch.Tensor:
    stream = PriorStream(GPPrior(), _tiny_train(1, seed=seed), rank=rank, offset=offset)
    return next(iter(stream)).y_qry


def test_streams_differ_by_rank_offset_and_seed_but_repeat_for_same_seed() -> None:
    base = _first_batch(0)
    torch.testing.assert_close(base, _first_batch(0), atol=0, rtol=0)
    for other in (_first_batch(1), _first_batch(0, offset=5), _first_batch(0, seed=1)):
        assert not torch.equal(base, other)


def test_context_sizes_cover_the_configured_range() -> None:
    config = _tiny_train(1, n_ctx_min=1, n_ctx_max=100, log_uniform_fraction=0.5)
    stream = PriorStream(GPPrior(GPPriorConfig()), config)
    g = torch.Generator().manual_seed(0)
    sizes = [stream.draw_n_ctx(g) for _ in range(4000)]
    assert min(sizes) == 1 and max(sizes) == 100
    # the log-uniform half puts extra mass on small contexts
    assert sum(s <= 10 for s in sizes) / len(sizes) > 0.2


def test_train_config_validation() -> None:
    with pytest.raises(ValueError, match="n_ctx_min"):
        TrainConfig(n_ctx_min=5, n_ctx_max=2)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="16")
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_bf16_autocast_trains_with_finite_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = pretrain(
        TINY_MODEL, GPPrior(), _tiny_train(3, precision="bf16-mixed"), run_dir=tmp_path
    ).model
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.x_encoder[0].weight.dtype == torch.float32  # autocast, weights stay fp32


def _logged(run_dir: Path, column: str) -> list[float]:
    with open(run_dir / "log" / "version_0" / "metrics.csv") as handle:
        return [float(row[column]) for row in csv.DictReader(handle) if row.get(column)]


def test_fisher_penalty_trains_and_is_logged(tmp_path: Path) -> None:
    config = _tiny_train(10, fisher_weight=1e-3, fisher_samples=2)
    pretrain(TINY_MODEL, GPPrior(), config, run_dir=tmp_path)
    fisher = _logged(tmp_path, "train/fisher")
    assert len(fisher) == 1 and math.isfinite(fisher[0]) and fisher[0] > 0


def test_fisher_weight_shrinks_the_data_gradient(tmp_path: Path) -> None:
    """Same seed and steps: a large β gives a smaller Fisher trace than β = 0 on fresh tasks."""
    from pfnkit.training import PFNLightningModule

    prior = GPPrior()
    tasks = prior.sample(64, 8, 16, generator=torch.Generator().manual_seed(5))

    def fisher_of(model: PFN) -> float:
        module = PFNLightningModule(model.train(), _tiny_train(1, fisher_weight=1.0))
        return float(module.regularised_loss(tasks)[1].detach())

    plain = pretrain(TINY_MODEL, prior, _tiny_train(40), run_dir=tmp_path / "plain").model
    robust = pretrain(
        TINY_MODEL, prior, _tiny_train(40, fisher_weight=1.0), run_dir=tmp_path / "robust"
    ).model
    assert fisher_of(robust) < 0.5 * fisher_of(plain)


def test_init_from_starts_at_the_parent_and_checks_the_config(tmp_path: Path) -> None:
    from pfnkit.checkpoint import save_checkpoint

    parent = initial_model(TINY_MODEL, GPPrior(), _tiny_train(1, seed=3))
    save_checkpoint(
        tmp_path / "parent", parent, prior_name="gp", prior_config={}, train_config={},
        command="test",
    )  # fmt: skip
    child = initial_model(TINY_MODEL, GPPrior(), _tiny_train(1, init_from=str(tmp_path / "parent")))
    for (name, a), b in zip(parent.state_dict().items(), child.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    other = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=1, d_ff=64, n_bars=50)
    with pytest.raises(ValueError, match="model config"):
        initial_model(other, GPPrior(), _tiny_train(1, init_from=str(tmp_path / "parent")))


def test_init_borders_prior_keeps_the_weights_and_takes_the_new_priors_borders(
    tmp_path: Path,
) -> None:
    from pfnkit.checkpoint import save_checkpoint

    parent = initial_model(TINY_MODEL, GPPrior(), _tiny_train(1, seed=3))
    save_checkpoint(
        tmp_path / "parent", parent, prior_name="gp", prior_config={}, train_config={},
        command="test",
    )  # fmt: skip
    wide = GPPrior(GPPriorConfig(outputscale=25.0))
    config = _tiny_train(1, init_from=str(tmp_path / "parent"), init_borders="prior")
    child = initial_model(TINY_MODEL, wide, config)
    fresh = initial_model(TINY_MODEL, wide, _tiny_train(1))  # borders drawn from `wide` alone
    torch.testing.assert_close(child.borders, fresh.borders, atol=0, rtol=0)
    assert float(child.borders[-1]) > 3.0 * float(parent.borders[-1])  # outputscale 25: 5x wider
    for name, a in parent.state_dict().items():
        if name != "borders":
            torch.testing.assert_close(a, child.state_dict()[name], atol=0, rtol=0, msg=name)
    with pytest.raises(ValueError, match="init_borders"):
        _tiny_train(1, init_borders="fresh")
    with pytest.raises(ValueError, match="set init_from"):
        _tiny_train(1, init_borders="prior")
    classifier = PFNConfig(num_features=1, d_model=32, n_heads=4, n_layers=1, d_ff=64, n_classes=2)
    save_checkpoint(
        tmp_path / "clf", initial_model(classifier, GPPrior(), _tiny_train(1)), prior_name="gp",
        prior_config={}, train_config={}, command="test",
    )  # fmt: skip
    with pytest.raises(ValueError, match="regression PFN parent"):
        initial_model(
            classifier,
            GPPrior(),
            _tiny_train(1, init_from=str(tmp_path / "clf"), init_borders="prior"),
        )


def test_fine_tune_loads_its_parent_once_and_records_it(tmp_path: Path, monkeypatch) -> None:
    from pfnkit.checkpoint import load_checkpoint, save_checkpoint

    pretrain_module = importlib.import_module("pfnkit.training.pretrain")  # not the function

    parent = initial_model(TINY_MODEL, GPPrior(), _tiny_train(1, seed=3))
    save_checkpoint(
        tmp_path / "parent", parent, prior_name="gp", prior_config={}, train_config={},
        command="test", training={"optimizer_steps": 7, "train_minutes": 1.5},
    )  # fmt: skip
    loads = []
    monkeypatch.setattr(pretrain_module, "load_checkpoint",
                        lambda name: loads.append(name) or load_checkpoint(name))  # fmt: skip
    config = _tiny_train(2, init_from=str(tmp_path / "parent"))
    summary = pretrain(TINY_MODEL, GPPrior(), config, run_dir=tmp_path / "run").summary
    assert loads == [str(tmp_path / "parent")]
    sha256 = load_checkpoint(tmp_path / "parent").card["sha256"]
    assert summary["init_from"] == {"name": "parent", "sha256": sha256, "optimizer_steps": 7,
                                    "train_minutes": 1.5}  # fmt: skip
    assert summary["total_train_minutes"] == summary["train_minutes"] + 1.5

    grandchild = initial_model(TINY_MODEL, GPPrior(), _tiny_train(1, seed=4))
    save_checkpoint(
        tmp_path / "child", grandchild, prior_name="gp", prior_config={}, train_config={},
        command="test", training=summary,
    )  # fmt: skip
    config = _tiny_train(2, init_from=str(tmp_path / "child"))
    again = pretrain(TINY_MODEL, GPPrior(), config, run_dir=tmp_path / "run2").summary
    # a chain of fine-tunes sums every generation's minutes, not only the parent's own
    assert again["total_train_minutes"] == again["train_minutes"] + summary["total_train_minutes"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_pretrain_drops_lightning_tips_and_the_leafspec_warning_only(tmp_path: Path) -> None:
    lightning_log = logging.getLogger("lightning.pytorch")
    records = _Records()
    lightning_log.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pretrain(TINY_MODEL, GPPrior(), _tiny_train(2), run_dir=tmp_path)
    finally:
        lightning_log.removeHandler(records)
    assert not [m for m in records.messages if "Tip:" in m]
    assert any("max_steps=2" in m for m in records.messages)  # other messages still pass
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    # nothing stays behind: the logger filters and the warning filters are as before
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not rank_zero.filters
    assert not [f for f in warnings.filters if f[1] is not None and "LeafSpec" in f[1].pattern]
