"""Training half of benchmarks/peer_pfns.py: one batch stream, pfnkit's and pfns's trainers on it.

Both trainers read the same stream of prior batches: pfnkit's `PriorStream` over the
`gp-rbf` prior, seeded by the [train] seed. pfnkit's `pretrain` reads it through its
`PriorDataModule`; the `pfns` package's `train` reads it through a custom get_batch
(`PfnsFeed`, wrapped in pfns's `AdhocPriorConfig`) that hands out the next batch of the
same stream in pfns's format, with its `single_eval_pos` set to the batch's context size
(pfns then ignores the shape its own batch-shape sampler drew). With the same number of
loader workers, batch k of one trainer is batch k of the other. A `FeedLog` records every
batch either trainer's prior hands out (also from DataLoader workers): its shape, wall time
and, for the first few, a digest, so that a run can show the streams were the same.

A wall-clock budget needs a step count up front (both learning-rate schedules are defined by
it), so each trainer first runs a short probe of a few steps on the real stream; its
steady-state rate (from the log's times) sets the steps that fill the budget. Both runs are
also capped at the budget, counted from the first batch asked for: pfnkit's by
`TrainConfig.max_minutes` (Lightning's Timer), pfns's by `DeadlineLoader`. pfns's `train` has
no time limit, but it ends cleanly, returning the model, on a KeyboardInterrupt (its Ctrl-C
path); the loader raises one in the main process between two steps once the budget is spent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pfns.batch_shape_sampler import BatchShapeSamplerConfig
from pfns.model.bar_distribution import BarDistributionConfig
from pfns.model.transformer_config import TransformerConfig
from pfns.optimizer import OptimizerConfig
from pfns.priors.data_loading import StandardDataLoader
from pfns.priors.prior import AdhocPriorConfig
from pfns.priors.prior import Batch as PfnsBatch
from pfns.train import MainConfig
from pfns.train import train as pfns_train
from torch import nn

from pfnkit.data import Batch, Prior
from pfnkit.models import PFNConfig
from pfnkit.training import PriorStream, TrainConfig, pretrain, prior_borders

__all__ = [
    "DeadlineLoader",
    "FeedLog",
    "PfnsFeed",
    "Recipe",
    "RecordingPrior",
    "Trained",
    "planned_steps",
    "train_pfnkit",
    "train_pfns",
]

PFNKIT_SETTINGS = ("steps", "warmup_steps", "lr", "min_lr_ratio", "grad_clip", "weight_decay",
                   "num_workers", "max_minutes")  # fmt: skip
DIGESTS = 4  # batches per log whose digest is recorded (the bar-border draw, then training)
RATE_SKIP = 6  # probe batches left out of the rate: loader start-up and prefetching


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """What both trainers share, and the two knobs only one of them has.

    Attributes:
        prior: the task prior (unwrapped).
        model_config: pfnkit's model; pfns's is built to the same sizes.
        train_config: pfnkit's [train] section; steps, warmup and max_minutes are set per run.
        warmup_fraction: share of the steps spent in linear warm-up, for both schedules.
        steps_per_epoch: pfns's epoch length (its schedule moves once per epoch).
    """

    prior: Prior
    model_config: PFNConfig
    train_config: TrainConfig
    warmup_fraction: float
    steps_per_epoch: int


@dataclass(frozen=True, kw_only=True)
class Trained:
    """A trained model and how it was trained."""

    model: nn.Module
    optimizer_steps: int
    planned_steps: int
    train_seconds: float  # from the first batch asked for (pfnkit: Lightning's Timer) to the end
    wall_seconds: float  # around the whole call
    settings: dict[str, Any]
    feed: list[dict[str, Any]]  # the FeedLog's lines, in order

    def figures(self) -> dict[str, Any]:
        """Plain data, without the model and with the feed's digests only."""
        return {
            "optimizer_steps": self.optimizer_steps,
            "planned_steps": self.planned_steps,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_seconds,
            "settings": self.settings,
            "batches_drawn": len(self.feed),
            "digests": [line["digest"] for line in self.feed if line["digest"]],
            "shapes": [line["shape"] for line in self.feed[:DIGESTS]],
        }


def batch_digest(batch: Batch) -> str:
    """sha256 (first 16 hex digits) of a batch's four tensors."""
    sha = hashlib.sha256()
    for tensor in (batch.x_ctx, batch.y_ctx, batch.x_qry, batch.y_qry):
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


class FeedLog:
    """One JSON line per batch handed out: wall time, shape and (the first few) a digest.

    Lines are appended to a file, so batches drawn in forked DataLoader workers are logged
    too; the count is per process, and a worker starts from its parent's count at the fork.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.unlink(missing_ok=True)  # a fresh log, also in a reused --run-dir
        self.count = 0

    def record(self, batch: Batch) -> None:
        digest = batch_digest(batch) if self.count < DIGESTS else None
        line = {"time": time.time(), "shape": [batch.batch_size, batch.n_ctx, batch.n_qry],
                "digest": digest}  # fmt: skip
        with self.path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        self.count += 1

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


class RecordingPrior:
    """`prior`, with every batch it hands out logged to `log` (a pfnkit `Prior`)."""

    def __init__(self, prior: Prior, log: FeedLog) -> None:
        self.prior = prior
        self.config = prior.config
        self.log = log

    def sample(
        self, batch_size: int, n_ctx: int, n_qry: int, *, generator: torch.Generator
    ) -> Batch:
        batch = self.prior.sample(batch_size, n_ctx, n_qry, generator=generator)
        self.log.record(batch)
        return batch


class PfnsFeed:
    """pfns's get_batch: the next batch of pfnkit's `PriorStream`, in pfns's format.

    The stream starts at the first call, inside the loader's worker, so it takes worker 0's
    seed there as in pfnkit's loader. pfns's requested seq_len and single_eval_pos are
    ignored: the batch sets its own `single_eval_pos` (its context size), as pfns allows.
    """

    def __init__(self, prior: Prior, config: TrainConfig) -> None:
        self.prior = prior
        self.config = config
        self._stream: Any = None

    def __call__(self, *, batch_size: int, num_features: int, **_: Any) -> PfnsBatch:
        if self._stream is None:
            self._stream = iter(PriorStream(self.prior, self.config))
        batch = next(self._stream)
        if (batch_size, num_features) != (batch.batch_size, batch.num_features):
            raise ValueError(
                f"pfns asked for {batch_size} tasks of {num_features} features, the stream "
                f"holds {batch.batch_size} of {batch.num_features}; match the two configs"
            )
        x = torch.cat([batch.x_ctx, batch.x_qry], dim=1)
        y = torch.cat([batch.y_ctx, batch.y_qry], dim=1)
        return PfnsBatch(x=x, y=y, target_y=y.clone(), single_eval_pos=batch.n_ctx)


@dataclass(kw_only=True)
class StepClock:
    """A run's budget (None: no cap), its start and the batches handed to the trainer."""

    budget_s: float | None
    started: float | None = None
    steps: int = 0
    stopped_early: bool = False

    def spent(self) -> bool:
        if self.started is None:
            self.started = time.perf_counter()
        return self.budget_s is not None and time.perf_counter() - self.started >= self.budget_s


class DeadlineLoader(StandardDataLoader):
    """pfns's standard loader, which stops pfns's `train` once `clock.budget_s` is spent.

    pfns builds its loader from a class named in its config, so the clock of the current run
    is a class attribute, set by `deadline` for the length of one `train` call.
    """

    clock: ClassVar[StepClock | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # StandardDataLoader.__init__ copies its locals onto self, among them `__class__` (the
        # cell of its zero-argument super()), which turns every subclass back into a
        # StandardDataLoader; restore the class.
        self.__class__ = DeadlineLoader

    def __iter__(self) -> Iterator[PfnsBatch]:
        clock = DeadlineLoader.clock
        if clock is None:
            raise RuntimeError("DeadlineLoader runs only inside `deadline(...)`")
        for batch in super().__iter__():
            if clock.spent():
                clock.stopped_early = True
                raise KeyboardInterrupt  # pfns's train stops here and returns its model
            clock.steps += 1
            yield batch


@contextlib.contextmanager
def deadline(budget_s: float | None) -> Iterator[StepClock]:
    """The clock `DeadlineLoader` reads during one pfns `train` call."""
    DeadlineLoader.clock = clock = StepClock(budget_s=budget_s)
    try:
        yield clock
    finally:
        DeadlineLoader.clock = None


def warmup_steps(recipe: Recipe, steps: int) -> int:
    return max(1, round(recipe.warmup_fraction * steps))


def train_pfnkit(
    recipe: Recipe, steps: int, budget_s: float | None, run_dir: Path, log_path: Path
) -> Trained:
    """`pretrain` for `steps` steps (warm-up and cosine over them), capped at `budget_s`."""
    log = FeedLog(log_path)
    config = dataclasses.replace(recipe.train_config, steps=steps,
                                 warmup_steps=warmup_steps(recipe, steps),
                                 max_minutes=(budget_s or 0) / 60)  # fmt: skip
    start = time.perf_counter()
    result = pretrain(recipe.model_config, RecordingPrior(recipe.prior, log), config,
                      run_dir=run_dir, resume=False)  # fmt: skip
    wall = time.perf_counter() - start
    settings = {key: getattr(config, key) for key in PFNKIT_SETTINGS}
    settings["stopped_at_budget"] = int(result.summary["optimizer_steps"]) < steps
    return Trained(model=result.model, optimizer_steps=int(result.summary["optimizer_steps"]),
                   planned_steps=steps, train_seconds=60 * result.summary["train_minutes"],
                   wall_seconds=wall, settings=settings, feed=log.read())  # fmt: skip


def pfns_config(recipe: Recipe, feed: PfnsFeed, borders: torch.Tensor, epochs: int) -> MainConfig:
    """pfns's classic PFN (no attention between features) of pfnkit's sizes, on `feed`."""
    m, t = recipe.model_config, recipe.train_config
    model = TransformerConfig(
        criterion=BarDistributionConfig(borders=borders.tolist(), full_support=True),
        emsize=m.d_model, nhid=m.d_ff, nlayers=m.n_layers, nhead=m.n_heads,
        features_per_group=m.num_features, attention_between_features=False,
    )  # fmt: skip
    shapes = BatchShapeSamplerConfig(
        batch_size=t.batch_size, max_seq_len=t.n_ctx_max + t.n_qry,
        min_num_features=m.num_features, max_num_features=m.num_features,
        fixed_num_test_instances=t.n_qry, seed=t.seed,
    )  # fmt: skip
    return MainConfig(
        priors=[AdhocPriorConfig(get_batch_methods=feed, prior_kwargs={})],
        optimizer=OptimizerConfig(optimizer="adamw", lr=t.lr, weight_decay=t.weight_decay),
        model=model, batch_shape_sampler=shapes, epochs=epochs,
        steps_per_epoch=recipe.steps_per_epoch, train_mixed_precision=False,
        scheduler="cosine_decay", warmup_epochs=max(1, round(recipe.warmup_fraction * epochs)),
        verbose=False, progress_bar=False, num_workers=t.num_workers,
        dataloader_class=f"{DeadlineLoader.__module__}.{DeadlineLoader.__name__}",
    )  # fmt: skip


def train_pfns(
    recipe: Recipe, steps: int, budget_s: float | None, run_dir: Path, log_path: Path
) -> Trained:
    """pfns's `train` for `steps` steps, rounded up to whole epochs, capped at `budget_s`.

    The bar borders are pfnkit's (`prior_borders`, drawn through the logged prior like
    pfnkit's own); the weights are initialised under the config's seed; pfns's prints go to
    ``run_dir/pfns.log``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    prior = RecordingPrior(recipe.prior, FeedLog(log_path))
    borders = prior_borders(prior, recipe.model_config, recipe.train_config)
    epochs = max(1, math.ceil(steps / recipe.steps_per_epoch))
    config = pfns_config(recipe, PfnsFeed(prior, recipe.train_config), borders, epochs)
    start = time.perf_counter()
    with (
        (run_dir / "pfns.log").open("w") as out,
        contextlib.redirect_stdout(out),
        torch.random.fork_rng(devices=[]),
        deadline(budget_s) as clock,
    ):
        torch.manual_seed(recipe.train_config.seed)
        result = pfns_train(config, device="cpu", reusable_config=False)
        train_s = time.perf_counter() - (clock.started or start)
    wall = time.perf_counter() - start
    settings = {"epochs": epochs, "steps_per_epoch": recipe.steps_per_epoch,
                "warmup_epochs": config.warmup_epochs, "lr": config.optimizer.lr,
                "weight_decay": config.optimizer.weight_decay, "scheduler": config.scheduler,
                "train_mixed_precision": config.train_mixed_precision,
                "num_workers": config.num_workers, "budget_s": budget_s,
                "stopped_at_budget": clock.stopped_early}  # fmt: skip
    return Trained(model=result["model"].eval(), optimizer_steps=clock.steps,
                   planned_steps=steps, train_seconds=train_s,
                   wall_seconds=wall, settings=settings, feed=prior.log.read())  # fmt: skip


def steady_rate(feed: list[dict[str, Any]]) -> float:
    """Training batches per second after the first RATE_SKIP (the log's first is the borders)."""
    times = [line["time"] for line in feed[1:]][RATE_SKIP:]
    if len(times) < 2 or times[-1] <= times[0]:
        raise ValueError(f"a probe needs more than {RATE_SKIP + 2} batches to measure a rate")
    return (len(times) - 1) / (times[-1] - times[0])


def planned_steps(probe: Trained, budget_s: float) -> tuple[int, float]:
    """The steps that fill `budget_s` at the probe's steady rate, and that rate (steps/s)."""
    rate = steady_rate(probe.feed)
    return max(1, int(np.floor(rate * budget_s))), rate
