"""DDP pretraining through the CLI: two CPU ranks under gloo draw disjoint tasks and train."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

import cli
from pfnkit.checkpoint import load_checkpoint
from pfnkit.models import PFNConfig
from pfnkit.training import TrainConfig, initial_model
from priors.gp import GPPrior, GPPriorConfig

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH, WORLD = 3, 4, 2


def test_two_ddp_ranks_draw_disjoint_tasks_and_train(tmp_path: Path) -> None:
    # A subprocess: Lightning's ddp strategy relaunches the running script once per rank.
    records = tmp_path / "records"
    records.mkdir()
    out = tmp_path / "ddp"
    command = [
        sys.executable, str(ROOT / "tests/ddp_recording_cli.py"), "pretrain",
        "--prior", "recording-gp", "--out", str(out), "--run-dir", str(tmp_path / "run"),
        "--no-progress", "--accelerator", "cpu", "--devices", str(WORLD), "--num-nodes", "1",
        "--strategy", "ddp",
        # the flags above win over these
        "--set", "train.devices=1", "--set", "train.strategy=auto",
        "--set", "model.d_model=16", "--set", "model.n_heads=2", "--set", "model.n_layers=1",
        "--set", "model.d_ff=32", "--set", "model.n_bars=20",
        "--set", f"train.steps={STEPS}", "--set", f"train.batch_size={BATCH}",
        "--set", "train.num_workers=0", "--set", "train.n_border_tasks=50",
        "--set", "train.n_ctx_max=8", "--set", "train.n_qry=8", "--set", "train.warmup_steps=1",
    ]  # fmt: skip
    env = {**os.environ, "PFNKIT_RECORD_DIR": str(records), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    drawn = [(records / f"rank{rank}.txt").read_text().split() for rank in range(WORLD)]
    for tasks in drawn:
        assert len(tasks) >= STEPS * BATCH  # every rank drew its own batch for every step
        assert len(set(tasks)) == len(tasks)
    assert not set(drawn[0]) & set(drawn[1]), "two ranks trained on the same prior tasks"

    checkpoint = load_checkpoint(out.with_suffix(".safetensors"))
    card = checkpoint.card
    assert card["training"]["optimizer_steps"] == STEPS
    assert (card["train_config"]["devices"], card["train_config"]["strategy"]) == (WORLD, "ddp")
    train_config = TrainConfig.from_dict(card["train_config"])
    prior = GPPrior(GPPriorConfig.from_dict(card["prior_config"]))
    start = initial_model(PFNConfig.from_dict(card["model_config"]), prior, train_config)
    trained = checkpoint.model
    assert not torch.equal(trained.x_encoder[0].weight, start.x_encoder[0].weight)
    batch = prior.sample(8, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        nll = -trained(batch.x_ctx, batch.y_ctx, batch.x_qry).log_prob(batch.y_qry).mean()
    assert torch.isfinite(nll)


def test_readme_distributed_commands_parse() -> None:
    # They need several devices, so they are parsed here rather than run by test_cli.
    text = (ROOT / "README.md").read_text()
    section = text.split("## Multi-GPU and multi-node pretraining")[1].split("\n## ")[0]
    commands = [c for c in re.findall(r"cli\.py (pretrain[^`\n]*)", section) if "..." not in c]
    assert len(commands) >= 2
    for command in commands:
        args = cli.build_parser().parse_args(shlex.split(command))
        assert args.strategy == "ddp" and args.devices >= 2
