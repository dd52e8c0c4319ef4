"""The learning-rate schedule against its closed form, and resuming across schedule formats."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from pfnkit.models import PFNConfig
from pfnkit.training import TrainConfig, pretrain, warmup_cosine_schedule
from pfnkit.training.module import fast_forwarded_schedule
from priors.gp import GPPrior

# torch's schedulers update the lr multiplicatively, step by step; float64 rounding builds
# up to ~1e-13 of the peak lr over 20k steps
FLOAT64_RECURSION = 1e-12
TINY_MODEL = PFNConfig(num_features=1, d_model=16, n_heads=2, n_layers=1, d_ff=32, n_bars=20)


def closed_form(step: int, warmup: int, steps: int, floor: float) -> float:
    """Linear warmup (step + 1) / W, then ½(1 + cos) decay from 1 to `floor` at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _multipliers(config: TrainConfig) -> list[float]:
    """lr / peak lr at steps 0..steps, as the scheduler sets them on a float64 optimizer."""
    optimizer = torch.optim.SGD([torch.zeros((), dtype=torch.float64, requires_grad=True)],
                                lr=config.lr)  # fmt: skip
    scheduler = warmup_cosine_schedule(optimizer, config)
    out = []
    for _ in range(config.steps + 1):
        out.append(optimizer.param_groups[0]["lr"] / config.lr)
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    ("warmup", "steps"), [(0, 50), (1, 50), (2, 3), (10, 100), (50, 50), (200, 20000)]
)
def test_schedule_matches_the_closed_form_at_every_step(warmup: int, steps: int) -> None:
    config = TrainConfig(steps=steps, warmup_steps=warmup, min_lr_ratio=0.02, lr=5e-4)
    got = _multipliers(config)
    want = [closed_form(s, warmup, steps, 0.02) for s in range(steps + 1)]
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < FLOAT64_RECURSION


def test_schedule_boundaries() -> None:
    config = TrainConfig(steps=100, warmup_steps=10, min_lr_ratio=0.1)
    got = _multipliers(config)
    expected = {0: 0.1, 9: 1.0, 10: 1.0, 55: 0.1 + 0.9 * 0.5, 100: 0.1}  # W-1, W: the peak
    for step, value in expected.items():
        assert got[step] == pytest.approx(value, abs=FLOAT64_RECURSION), step


def test_fast_forward_lands_on_the_closed_form() -> None:
    config = TrainConfig(steps=300, warmup_steps=20, min_lr_ratio=0.05, lr=1e-3)
    for step in (0, 19, 20, 21, 160, 300):
        lr = fast_forwarded_schedule(config, step).get_last_lr()[0]
        assert lr / config.lr == pytest.approx(closed_form(step, 20, 300, 0.05),
                                               abs=FLOAT64_RECURSION)  # fmt: skip


def _logged_lrs(run_dir: Path, version: int) -> dict[int, float]:
    with open(run_dir / "log" / f"version_{version}" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("lr-AdamW")]
    return {int(row["step"]): float(row["lr-AdamW"]) for row in rows}


def test_resume_from_a_lambda_lr_checkpoint_follows_the_current_config(tmp_path: Path) -> None:
    """A Lightning checkpoint of the earlier LambdaLR schedule resumes on SequentialLR.

    The first run stops at step 10 of a 10-step schedule; the resumed run asks for 20
    steps, so from step 10 on the lr follows the 20-step schedule.
    """
    first = dict(steps=10, batch_size=4, n_ctx_min=2, n_ctx_max=4, n_qry=4, warmup_steps=5,
                 num_workers=0, n_border_tasks=50, checkpoint_every=10, lr=1e-3)  # fmt: skip
    pretrain(TINY_MODEL, GPPrior(), TrainConfig(**first), run_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)
    optimizer = torch.optim.SGD([torch.zeros((), requires_grad=True)], lr=1e-3)
    old = LambdaLR(optimizer, lambda s: closed_form(s, 5, 10, 0.02))
    for _ in range(10):
        optimizer.step()
        old.step()
    state["lr_schedulers"] = [old.state_dict()]
    torch.save(state, last)

    result = pretrain(TINY_MODEL, GPPrior(), TrainConfig(**{**first, "steps": 20}),
                      run_dir=tmp_path)  # fmt: skip
    assert result.summary["optimizer_steps"] == 20
    logged = _logged_lrs(tmp_path, version=1)
    assert logged, "the resumed run logged no learning rate"
    for step, lr in logged.items():
        assert lr / 1e-3 == pytest.approx(closed_form(step, 5, 20, 0.02), abs=FLOAT64_RECURSION)
