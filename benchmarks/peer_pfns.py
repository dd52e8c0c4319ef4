"""Side by side with the `pfns` package: equal wall-clock training, NLL gap to the exact GP, speed.

Run:  python benchmarks/peer_pfns.py [--minutes 15] [--config examples/configs/gp_rbf.toml]
          [--tasks 256] [--sizes 1,2,5,10,20,50,100] [--n-qry 100] [--probe-steps 40]
          [--steps-per-epoch 10] [--num-workers K] [--repeats 7] [--threads T]
          [--run-dir DIR] [--json out.json] [--smoke]
      python benchmarks/peer_pfns.py --report out.json   (re-print a finished run, no training)

1. Training (benchmarks/peer_pfns_train.py). pfnkit's recipe (`pfnkit.training.pretrain`) and
   the `pfns` 0.4.2 package's classic PFN (`pfns.train.train`, a `TableTransformer` without
   attention between features, the architecture of Müller et al., arXiv 2112.10510) of the
   same sizes (the config's [model]: for gp_rbf.toml d_model 128, 4 heads, 4 layers, d_ff
   256, 1000 bars) each train for --minutes of wall-clock on the same stream of prior batches
   (the config's [prior] and [train]: batch 64, 1 to 128 context points, 64 queries), with
   the same bar borders, peak learning rate, AdamW, weight decay and gradient clipping, and a
   linear warm-up over 5% of the steps (gp_rbf.toml's 300 of 6000) then a cosine decay. Each
   trainer's steps come from its own short probe on the same stream (its steady rate times
   the budget).
2. Scoring (benchmarks/peer_pfns_score.py): both against the exact GP on the same fresh
   tasks, --tasks per context size, by pfnkit's gp-exact validator loop: the mean NLL gap
   per query point (model NLL minus exact-GP NLL) per size, and its mean over sizes.
3. Inference: 100 context points x 1000 queries (benchmarks/inference.py's data), float32,
   --threads torch threads for all: pfns's forward pass, pfnkit's forward pass, and
   `PFNRegressor(checkpoint=<pfnkit's trained model>).predict` (and fit + predict); the
   median of --repeats interleaved rounds after a warm-up round.

Ratios: NLL-gap ratio = pfnkit mean gap / pfns mean gap (target <= 0.5). Speed ratio (the
target, >= 2: "pfnkit's user-facing predict at least 2x faster than pfns's forward pass") =
pfns forward time / pfnkit cached-context predict time: `PFNRegressor.predict` reuses the
context that an untimed `fit` encoded, while pfns's forward pass encodes its context every
call. Beside it, like for like: pfns forward / pfnkit forward (both encode the context), and
pfns forward / pfnkit fit + predict (the regressor encodes the context inside the timed call).
The JSON carries all three (`ratios`, labelled in `ratio_labels`); --report re-prints the
tables and ratios of a JSON from an earlier run, filling in ratios it lacks from its timings.

What differs between the recipes, because the pfns API fixes it: pfns's schedule moves once
per epoch (--steps-per-epoch steps; its first epoch runs at learning rate 0) and decays to 0,
pfnkit's moves every step and decays to 2% of the peak; pfns rounds its steps up to whole
epochs; pfns seeds its weights from torch's global generator (forked and seeded here), pfnkit
from its config; pfns's architecture is its own (post-norm layers without affine
parameters, linear x- and y-encoders, the latter with a NaN indicator; about 815k parameters
against pfnkit's 837k at gp-rbf's sizes). pfns's mixed precision is switched off: both train
in float32 on the CPU. Both runs stop at the budget if their planned steps take longer (the
table marks a cut schedule); the pfnkit runs go first, then pfns's, so a change in the
machine's load between them shows in the probe rates and step counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import torch
from peer_pfns_score import (
    PFNKIT_FIT_PREDICT,
    PFNKIT_FORWARD,
    PFNKIT_PREDICT,
    PFNS_FORWARD,
    PfnsRegressionModel,
    score_figures,
    score_models,
    time_inference,
)
from peer_pfns_train import Recipe, Trained, planned_steps, train_pfnkit, train_pfns
from rich.console import Console
from rich.table import Table

import priors
from pfnkit.checkpoint import save_checkpoint
from pfnkit.data import prior_model_sizes
from pfnkit.models import PFNConfig
from pfnkit.training import TrainConfig

__all__ = ["main"]

SIZES = (1, 2, 5, 10, 20, 50, 100)
WARMUP_FRACTION = 300 / 6000  # gp_rbf.toml: warmup_steps / steps
TARGET_GAP_RATIO = 0.5  # pfnkit mean NLL gap / pfns mean NLL gap, at most
TARGET_SPEED_RATIO = 2.0  # pfns forward time / pfnkit cached-context predict time, at least
# the speed ratios: pfns forward time over the time of each of pfnkit's calls, and their labels
SPEED_RATIOS = {
    "speed": (PFNKIT_PREDICT, "pfns forward / pfnkit cached-context predict (target)"),
    "speed_forward": (PFNKIT_FORWARD, "pfns forward / pfnkit forward (like for like)"),
    "speed_fit_predict": (
        PFNKIT_FIT_PREDICT,
        "pfns forward / pfnkit fit + predict (like for like)",
    ),
}
SPEED_NOTES = {
    "speed": "PFNRegressor.predict; its context was encoded by an untimed fit",
    "speed_forward": "both models' forward pass, each encoding the context",
    "speed_fit_predict": "PFNRegressor.fit + predict: the context encoded in the timed call",
}
CALL_LABELS = {PFNKIT_PREDICT: f"{PFNKIT_PREDICT} (cached context)"}  # the inference table's
METHODS = ("pfnkit", "pfns")
SMOKE_MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "n_bars": 20}
SMOKE_TRAIN = {"batch_size": 8, "n_ctx_max": 16, "n_qry": 8, "n_border_tasks": 50}
SMOKE_OPTIONS = {"minutes": 0.02, "tasks": 3, "sizes": "1,5,10", "n_qry": 20,
                 "probe_steps": 10, "repeats": 1}  # fmt: skip


def build(args: argparse.Namespace) -> Recipe:
    """The prior, model and training configs of the TOML file (smoke: tiny ones)."""
    with open(args.config, "rb") as handle:
        sections = tomllib.load(handle)
    prior = priors.make_prior("gp", sections.get("prior", {}))
    model = {**prior_model_sizes(prior, "pfn"), **sections.get("model", {})}
    train = {**sections.get("train", {}), "accelerator": "cpu", "devices": 1, "num_nodes": 1,
             "strategy": "auto", "precision": "32-true", "compile": False}  # fmt: skip
    if args.smoke:
        model, train = {**model, **SMOKE_MODEL}, {**train, **SMOKE_TRAIN}
    if args.num_workers is not None:
        train["num_workers"] = args.num_workers
    return Recipe(prior=prior, model_config=PFNConfig.from_dict(model),
                  train_config=TrainConfig.from_dict(train), warmup_fraction=WARMUP_FRACTION,
                  steps_per_epoch=args.steps_per_epoch)  # fmt: skip


def train_both(recipe: Recipe, budget_s: float, probe_steps: int, run_dir: Path) -> dict:
    """Probe each trainer's rate, then train each for the steps that fill `budget_s`."""
    probe_recipe = dataclasses.replace(recipe, steps_per_epoch=min(recipe.steps_per_epoch,
                                                                   probe_steps))  # fmt: skip
    probes = {
        "pfnkit": train_pfnkit(probe_recipe, probe_steps, None, run_dir / "probe-pfnkit",
                               run_dir / "probe-pfnkit.jsonl"),
        "pfns": train_pfns(probe_recipe, probe_steps, None, run_dir / "probe-pfns",
                           run_dir / "probe-pfns.jsonl"),
    }  # fmt: skip
    plans = {name: planned_steps(probe, budget_s) for name, probe in probes.items()}
    trained = {
        "pfnkit": train_pfnkit(recipe, plans["pfnkit"][0], budget_s, run_dir / "pfnkit",
                               run_dir / "feed-pfnkit.jsonl"),
        "pfns": train_pfns(recipe, plans["pfns"][0], budget_s, run_dir / "pfns",
                           run_dir / "feed-pfns.jsonl"),
    }  # fmt: skip
    return {"trained": trained, "probe_steps_per_s": {k: v[1] for k, v in plans.items()}}


def save_pfnkit(recipe: Recipe, trained: Trained, run_dir: Path, command: str) -> Path:
    """The trained pfnkit model as a checkpoint (what `PFNRegressor(checkpoint=...)` loads)."""
    prior = recipe.prior
    planned = {key: trained.settings[key] for key in ("steps", "warmup_steps", "max_minutes")}
    train = dataclasses.replace(recipe.train_config, **planned)
    return save_checkpoint(
        run_dir / "pfnkit-peer", trained.model, prior_name="gp",
        prior_config=prior.config.to_dict(), train_config=train.to_dict(), command=command,
        training={"optimizer_steps": trained.optimizer_steps,
                  "train_minutes": trained.train_seconds / 60},
        description="benchmarks/peer_pfns.py: pfnkit's side of the equal-wall-clock run",
    )  # fmt: skip


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def training_table(training: dict[str, Any], budget_s: float) -> Table:
    table = Table(title=f"Training for {budget_s / 60:.2f} minutes of wall-clock each",
                  caption="* the budget ran out before the planned steps (the schedule was cut); "
                  "trainer s: from the first batch asked for to the end")  # fmt: skip
    for column in ("method", "probe steps/s", "planned steps", "steps taken", "trainer s",
                   "wall s", "schedule"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("method", "schedule") else "right")
    for name in METHODS:
        t = training[name]
        s = t["settings"]
        schedule = (f"warm-up {s['warmup_steps']} steps, cosine to {s['min_lr_ratio']:g} x lr"
                    if name == "pfnkit" else f"{s['epochs']} epochs of {s['steps_per_epoch']}, "
                    f"warm-up {s['warmup_epochs']} epochs, cosine to 0")  # fmt: skip
        table.add_row(name, f"{t['probe_steps_per_s']:.2f}", str(t["planned_steps"]),
                      f"{t['optimizer_steps']}{' *' if s['stopped_at_budget'] else ''}",
                      f"{t['train_seconds']:.1f}",
                      f"{t['wall_seconds']:.1f}", schedule)  # fmt: skip
    return table


def nll_table(scores: dict[str, Any]) -> Table:
    table = Table(title="NLL per query point against the exact GP, same tasks",
                  caption="gap = model NLL - exact-GP NLL (nats per query point)")  # fmt: skip
    for column in ("n_ctx", "tasks", "exact GP", "pfnkit", "pfns", "pfnkit gap", "pfns gap"):
        table.add_column(column, justify="right")
    for row in scores["sizes"]:
        table.add_row(str(row["n_ctx"]), str(row["n_tasks"]), f"{row['exact_nll']:.4f}",
                      *(f"{row[m]['nll']:.4f}" for m in METHODS),
                      *(f"{row[m]['gap']:.4f}" for m in METHODS))  # fmt: skip
    mean = scores["mean_gap"]
    table.add_row("mean", "", "", "", "", f"{mean['pfnkit']:.4f}", f"{mean['pfns']:.4f}")
    return table


def inference_table(timing: dict[str, Any]) -> Table:
    seconds = timing["seconds"]
    table = Table(
        title=f"Inference: {timing['n_ctx']} context points x {timing['n_qry']} queries, "
        f"float32, {timing['threads']} thread(s)",
        caption=f"median of {timing['repeats']} interleaved rounds after a warm-up round; "
        f"PFNRegressor on its defaults (dtype {timing['regressor_dtype']}, "
        f"{timing['regressor_members']} member(s))",
    )
    for column in ("call", "ms", "pfns forward / call"):
        table.add_column(column, justify="left" if column == "call" else "right")
    for call in (PFNS_FORWARD, PFNKIT_FORWARD, PFNKIT_PREDICT, PFNKIT_FIT_PREDICT):
        table.add_row(CALL_LABELS.get(call, call), f"{1e3 * seconds[call]:.2f}",
                      f"{seconds[PFNS_FORWARD] / seconds[call]:.2f}")  # fmt: skip
    return table


def speed_ratios(seconds: dict[str, float]) -> dict[str, float | None]:
    """pfns's forward time over each of pfnkit's calls, keyed as in `SPEED_RATIOS`."""
    return {key: ratio(seconds[PFNS_FORWARD], seconds[call])
            for key, (call, _) in SPEED_RATIOS.items()}  # fmt: skip


def speed_table(ratios: dict[str, float | None]) -> Table:
    """The speed ratios as labelled rows; the first one is the target's."""
    table = Table(title="Speed ratios (pfns forward time / pfnkit time)")
    for column in ("ratio", "pfnkit's side", "value", "target"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for key, (_, label) in SPEED_RATIOS.items():
        value = ratios[key]
        target = ""
        if key == "speed" and value is not None:
            verdict = "meets" if value >= TARGET_SPEED_RATIO else "misses"
            target = f">= {TARGET_SPEED_RATIO:g}x: {verdict}"
        text = "n/a" if value is None else f"{value:.2f}x"
        table.add_row(label, SPEED_NOTES[key], text, target)
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--minutes", type=float, default=15.0, help="training wall-clock per method")
    add(
        "--config", default="examples/configs/gp_rbf.toml", help="TOML with [prior] [model] [train]"
    )
    add("--tasks", type=int, default=256, help="fresh tasks per context size")
    add("--sizes", default=",".join(map(str, SIZES)), help="context sizes, comma-separated")
    add("--n-qry", type=int, default=100, help="query points per scored task")
    add("--seed", type=int, default=12345, help="seed of the scored tasks")
    add("--probe-steps", type=int, default=40, help="steps of each trainer's rate probe")
    add("--steps-per-epoch", type=int, default=10, help="pfns's epoch length")
    add("--num-workers", type=int, help="prior workers of both trainers (default: config's)")
    add("--repeats", type=int, default=7, help="timed inference rounds; the median is kept")
    add("--threads", type=int, help="torch threads for everything (default: torch's)")
    add("--run-dir", help="keep logs, probes and the pfnkit checkpoint here (default: temp)")
    add("--json", help="write every number to this path")
    add("--smoke", action="store_true", help="tiny model, seconds of training, few tasks")
    add(
        "--report",
        metavar="JSON",
        help="re-print the tables and ratios of an earlier run's --json (no training); "
        "with --json, write the report there with all ratios filled in",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE_OPTIONS.items():
            setattr(args, key, value)
    return args


def run(args: argparse.Namespace, run_dir: Path, console: Console) -> dict[str, Any]:
    """Train, score and time both; every figure as plain data."""
    recipe = build(args)
    budget_s = 60 * args.minutes
    console.print(f"training each method for {args.minutes:g} min (after a {args.probe_steps}"
                  f"-step probe each); logs in {run_dir}")  # fmt: skip
    both = train_both(recipe, budget_s, args.probe_steps, run_dir)
    trained = both["trained"]
    training = {name: {**trained[name].figures(),
                       "probe_steps_per_s": both["probe_steps_per_s"][name]}
                for name in METHODS}  # fmt: skip
    card = save_pfnkit(recipe, trained["pfnkit"], run_dir, "python benchmarks/peer_pfns.py")
    pfns_model = PfnsRegressionModel(trained["pfns"].model)
    console.print(f"scoring both on {args.tasks} tasks per context size against the exact GP")
    reports = score_models({"pfnkit": trained["pfnkit"].model, "pfns": pfns_model},
                           recipe.prior, sizes=[int(s) for s in args.sizes.split(",")],
                           tasks=args.tasks, n_qry=args.n_qry, seed=args.seed)  # fmt: skip
    scores = score_figures(reports)
    timing = time_inference(card.with_suffix(".safetensors"), trained["pfns"].model,
                            n_ctx=100, n_qry=1000, repeats=args.repeats)  # fmt: skip
    seconds = timing["seconds"]
    gap = scores["mean_gap"]
    return {
        "config": {**vars(args), "model": recipe.model_config.to_dict(),
                   "train": recipe.train_config.to_dict(),
                   "prior": recipe.prior.config.to_dict(), "budget_s": budget_s},
        "training": training, "scores": scores, "inference": timing,
        "ratios": {"nll_gap": ratio(gap["pfnkit"], gap["pfns"]), **speed_ratios(seconds)},
        "ratio_labels": ratio_labels(),
        "targets": {"nll_gap": TARGET_GAP_RATIO, "speed": TARGET_SPEED_RATIO},
    }  # fmt: skip


def ratio_labels() -> dict[str, str]:
    """What each entry of the report's `ratios` divides."""
    speed = {key: f"{label}: {SPEED_NOTES[key]}" for key, (_, label) in SPEED_RATIOS.items()}
    return {"nll_gap": "pfnkit mean NLL gap / pfns mean NLL gap (target)", **speed}


def completed(report: dict[str, Any]) -> dict[str, Any]:
    """An earlier run's report with the ratios and labels that it lacks, from its figures."""
    computed = speed_ratios(report["inference"]["seconds"])
    return {**report, "ratios": {**computed, **report["ratios"]}, "ratio_labels": ratio_labels()}


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(training_table(report["training"], report["config"]["budget_s"]))
    console.print(nll_table(report["scores"]))
    console.print(inference_table(report["inference"]))
    gap = report["ratios"]["nll_gap"]
    gap_text = "n/a (pfns's gap is not positive)" if gap is None else f"{gap:.3f}"
    gap_verdict = "" if gap is None else (" meets" if gap <= TARGET_GAP_RATIO else " misses")
    console.print(f"NLL-gap ratio pfnkit / pfns: {gap_text}{gap_verdict} the target "
                  f"<= {TARGET_GAP_RATIO}")  # fmt: skip
    console.print(speed_table(report["ratios"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:  # an earlier run's figures, printed with today's labels
        report = completed(json.loads(Path(args.report).read_text()))
        print_report(report, Console(width=120))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no accelerator banners
    console = Console(width=120)  # the tables' full width, also when piped to a file
    with tempfile.TemporaryDirectory(prefix="peer_pfns_") as scratch:
        run_dir = Path(args.run_dir or scratch)
        run_dir.mkdir(parents=True, exist_ok=True)
        report = run(args, run_dir, console)
    print_report(report, console)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
