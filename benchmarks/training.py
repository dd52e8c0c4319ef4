"""Training-throughput benchmark: optimizer steps per second, prior streaming vs. batches in memory.

Run:  python benchmarks/training.py [--config examples/configs/gp_rbf.toml] [--prior gp]
          [--steps 100] [--warmup 20] [--num-workers K] [--json out.json] [--smoke]

Both runs train the same freshly initialised model (`initial_model`, as `pretrain` builds it)
with the same Lightning loop, optimizer, clipping and precision:
1. in memory: the batches are sampled before training and replayed from a list, so a step
   costs the model alone (forward, backward, optimizer);
2. streaming: `PriorDataModule` samples the prior during training in --num-workers DataLoader
   workers (the config's `num_workers` by default), exactly as `pretrain` does.
Rank 0, worker 0 of the stream uses the same seed as the pre-sampling, so with one worker the
two runs see the same batches in the same order. Steps per second are counted over --steps
steps after --warmup steps (which absorb worker start-up and, with torch.compile,
compilation). The target is streaming >= 90% of the in-memory rate. On a CUDA GPU the same
pair also runs with bf16 autocast and with torch.compile, and each is compared with the
fp32 in-memory rate measured in the same run. The prior's own sampling rate (batches per
second, one process) is printed too: a worker can keep up when it exceeds the model's rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import tomllib
from collections.abc import Iterator
from itertools import cycle, islice
from typing import Any

import lightning as L
import torch
from rich.console import Console
from rich.table import Table

import priors
from pfnkit.data import Batch, Prior, prior_model_sizes
from pfnkit.models import PFN, PFNConfig
from pfnkit.training import (
    PFNLightningModule,
    PriorDataModule,
    PriorStream,
    TrainConfig,
    initial_model,
)

__all__ = ["main"]

TARGET_RATIO = 0.9  # streaming steps/s over in-memory steps/s
SMOKE_MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "n_bars": 20}
SMOKE_TRAIN = {"batch_size": 4, "n_ctx_max": 16, "n_qry": 8, "n_border_tasks": 50,
               "warmup_steps": 1}  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    precision: str = "32-true"
    compile: bool = False


FP32 = Variant(name="fp32")
GPU_VARIANTS = (Variant(name="bf16 autocast", precision="bf16-mixed"),
                Variant(name="torch.compile", compile=True),
                Variant(name="bf16 + compile", precision="bf16-mixed", compile=True))  # fmt: skip


class ReplayPrior:
    """A prior that hands out pre-sampled batches in turn, whatever sizes are asked for."""

    def __init__(self, batches: list[Batch], config: Any) -> None:
        self.config = config
        self._batches: Iterator[Batch] = cycle(batches)

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        return next(self._batches)


class StepClock(L.Callback):
    """Records the wall time at the end of every optimizer step (after the device finishes)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def steps_per_second(
    model: PFN, data: Prior, config: TrainConfig, warmup: int, variant: Variant
) -> float:
    """Optimizer steps per second of `pretrain`'s loop training `model` on `data`."""
    config = dataclasses.replace(config, precision=variant.precision, compile=variant.compile)
    module = PFNLightningModule(model, config)
    clock = StepClock()
    trainer = L.Trainer(
        max_steps=config.steps,
        accelerator=config.accelerator,
        devices=1,
        precision=config.precision,
        gradient_clip_val=config.grad_clip,
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=PriorDataModule(data, config))
    timed = clock.times[warmup - 1 :]
    return (len(timed) - 1) / (timed[-1] - timed[0])


def presample(prior: Prior, config: TrainConfig) -> tuple[list[Batch], float]:
    """The batches rank 0, worker 0 of `PriorStream` draws first, and the draws per second."""
    start = time.perf_counter()
    batches = list(islice(iter(PriorStream(prior, config)), config.steps + 1))  # +1: prefetch
    return batches, len(batches) / (time.perf_counter() - start)


def measure(
    model_config: PFNConfig,
    prior: Prior,
    batches: list[Batch],
    config: TrainConfig,
    warmup: int,
    variant: Variant,
) -> dict[str, Any]:
    """In-memory and streaming steps per second of one variant, each from the same init."""
    replay = ReplayPrior(batches, prior.config)
    in_memory_config = dataclasses.replace(config, num_workers=0)
    in_memory = steps_per_second(
        initial_model(model_config, prior, config), replay, in_memory_config, warmup, variant
    )
    streaming = steps_per_second(
        initial_model(model_config, prior, config), prior, config, warmup, variant
    )
    return {
        **dataclasses.asdict(variant),
        "in_memory_steps_per_s": in_memory,
        "streaming_steps_per_s": streaming,
        "streaming_ratio": streaming / in_memory,
    }


def results_table(results: list[dict[str, Any]], config: TrainConfig) -> Table:
    table = Table(
        title=f"Optimizer steps per second ({config.accelerator}, batch {config.batch_size}, "
        f"{config.num_workers} prior worker(s))",
        caption=f"target: streaming >= {TARGET_RATIO:.0%} of in memory",
    )
    for column in ("variant", "in memory", "streaming", "streaming / in memory",
                   "in memory / fp32 in memory"):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    baseline = results[0]["in_memory_steps_per_s"]
    for r in results:
        table.add_row(r["name"], f"{r['in_memory_steps_per_s']:.2f}",
                      f"{r['streaming_steps_per_s']:.2f}", f"{r['streaming_ratio']:.1%}",
                      f"{r['in_memory_steps_per_s'] / baseline:.2f}x")  # fmt: skip
    return table


def build(args: argparse.Namespace) -> tuple[PFNConfig, Prior, TrainConfig]:
    """Prior, model and training configs from the TOML file, resized for the benchmark."""
    with open(args.config, "rb") as handle:
        sections = tomllib.load(handle)
    prior = priors.make_prior(args.prior, sections.get("prior", {}))
    model = {**prior_model_sizes(prior, "pfn"), **sections.get("model", {})}
    train = {**sections.get("train", {}), "steps": args.warmup + args.steps, "max_minutes": 0,
             "accelerator": "gpu" if torch.cuda.is_available() else "cpu", "devices": 1,
             "num_nodes": 1, "strategy": "auto"}  # fmt: skip
    if args.smoke:
        model, train = {**model, **SMOKE_MODEL}, {**train, **SMOKE_TRAIN}
    if args.num_workers is not None:
        train["num_workers"] = args.num_workers
    return PFNConfig.from_dict(model), prior, TrainConfig.from_dict(train)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default="examples/configs/gp_rbf.toml",
        help="TOML with [prior], [model], [train] sections, as for cli.py pretrain",
    )
    parser.add_argument("--prior", default="gp", help="prior name in priors.REGISTRY")
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before them")
    parser.add_argument("--num-workers", type=int, help="prior workers (default: the config's)")
    parser.add_argument("--json", help="write every number to this path")
    parser.add_argument("--smoke", action="store_true", help="tiny model and a few steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup = 4, 2
    if args.steps < 2 or args.warmup < 1:
        raise SystemExit("need --steps >= 2 and --warmup >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no accelerator banners
    model_config, prior, config = build(args)
    console = Console(width=max(Console().width, 110))  # keep the table whole in logs
    batches, sampling_rate = presample(prior, config)
    variants = (FP32, *GPU_VARIANTS) if torch.cuda.is_available() else (FP32,)
    results = [measure(model_config, prior, batches, config, args.warmup, v) for v in variants]
    console.print(
        f"{args.config} (prior {args.prior!r}, model {model_config}); {args.steps} timed steps "
        f"after {args.warmup} warm-up steps; torch threads {torch.get_num_threads()}"
    )
    console.print(results_table(results, config))
    fp32 = results[0]
    verdict = "meets" if fp32["streaming_ratio"] >= TARGET_RATIO else "misses"
    console.print(
        f"streaming / in memory (fp32): {fp32['streaming_ratio']:.1%}, {verdict} the "
        f"{TARGET_RATIO:.0%} target; the prior alone samples {sampling_rate:.2f} batches/s in "
        "one process"
    )
    if args.json:
        report = {
            "config": {**vars(args), "model": model_config.to_dict(), "train": config.to_dict()},
            "prior_batches_per_s": sampling_rate,
            "target_streaming_ratio": TARGET_RATIO,
            "variants": results,
        }
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
