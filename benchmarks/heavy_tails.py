"""Heavy-tailed priors side by side: outliers, extrapolation and context attacks (issue 19, item 4).

Run:  python benchmarks/heavy_tails.py [--tp-checkpoint tp-rbf] [--gp-checkpoint gp-rbf]
          [--sizes 5,20,50] [--tasks 512] [--n-qry 50] [--seed 0]
          [--attack-tasks 64] [--attack-eps 0.05,0.1,0.2] [--attack-steps 20]
          [--json out.json] [--markdown] [--plot out.png] [--smoke]

Four predictors are scored on the same tasks: the Student-t PFN (tp-rbf: a Student-t
process, RBF lengthscale 0.2, noise 0.01, both scaled by σ² ~ InvGamma(2, 2)), the Gaussian
PFN (gp-rbf: the same GP without the scale mixture), the exact GP at gp-rbf's fixed
hyperparameters, and the exact Student-t process of tp-rbf's prior. The scenarios
(benchmarks/heavy_tails_tasks.py, which states the outlier recipe) are (a) Student-t
tasks, a control of clean GP tasks, (b) GP tasks with 5% and 10% of the context targets
replaced by outliers of 3 to 6 prior standard deviations (queries clean), and (c) context
inputs in [0, 0.5] with queries in [0.5, 1], on GP and on Student-t tasks. Each scenario
runs at each context size (--sizes) on --tasks fresh tasks with --n-qry queries each.

Reported per predictor and cell: mean NLL per query point ± its standard error over tasks,
and the 90% central-interval coverage; then paired NLL differences (Student-t minus
Gaussian, for the PFNs and for the exact pair), with a verdict: "helps" / "costs" when
the difference exceeds 2 standard errors. The adversarial view attacks each PFN's context
targets (L2 ball, radius in units of each task's std) and its own exact oracle on the same
tasks of its own prior: gp-rbf against the exact GP ("gp-exact"), tp-rbf against the exact
Student-t process ("tp-exact"); ratio = PFN mean KL / exact mean KL. It also attacks the
exact TP and the exact GP on the same tasks (GP tasks, then Student-t tasks) and gives
TP mean KL / GP mean KL: how far heavy tails let a perturbed context move the predictive.

Deterministic given --seed: every cell and attack draws from its own seeded generator.
If --tp-checkpoint is not trained on the "tp" prior (a stand-in, e.g. gp-rbf before tp-rbf
exists), the Student-t tasks and oracle come from examples/configs/tp_rbf.toml's [prior].
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from heavy_tails_report import attack_rows, plot_study, render, results_rows, verdict_rows
from heavy_tails_scoring import (
    PREDICTORS,
    exact_gp_scores,
    exact_tp_scores,
    paired,
    pfn_scores,
    summary,
)
from heavy_tails_tasks import SCENARIOS, cell_seed, draw_cell, gp_family, tp_family
from rich.console import Console

import priors
from pfnkit.checkpoint import Checkpoint, load_checkpoint
from pfnkit.reference.exact_gp import GPHyperparameters
from pfnkit.robustness import AttackConfig, RobustnessOptions, run_attack
from pfnkit.robustness.attacks import attack_context, exact_gp_predictor
from pfnkit.robustness.report import attack_seed, seeded_tasks
from pfnkit.robustness.tp_exact import exact_student_t_predictor

ROOT = Path(__file__).resolve().parents[1]
TP_CONFIG = ROOT / "examples/configs/tp_rbf.toml"  # the Student-t prior behind a stand-in


@dataclass(frozen=True, kw_only=True)
class Sizes:
    sizes: tuple[int, ...]  # context sizes of the scored cells
    tasks: int  # tasks per cell
    n_qry: int  # query points per task
    attack_tasks: int  # tasks per attack
    attack_eps: tuple[float, ...]  # attack radii (units of each task's std of y)
    attack_steps: int  # PGD steps
    attack_n_ctx: int = 20
    attack_n_qry: int = 50


FULL = Sizes(sizes=(5, 20, 50), tasks=512, n_qry=50, attack_tasks=64,
             attack_eps=(0.05, 0.1, 0.2), attack_steps=20)  # fmt: skip
SMOKE = Sizes(sizes=(5, 20), tasks=8, n_qry=10, attack_tasks=2, attack_eps=(0.1,),
              attack_steps=2, attack_n_ctx=6, attack_n_qry=5)  # fmt: skip


@dataclass(frozen=True)
class Study:
    """The two checkpoints, the two priors, and the exact GP's hyperparameters."""

    tp: Checkpoint
    gp: Checkpoint
    tp_prior: Any
    gp_prior: Any
    hyper: GPHyperparameters
    notes: tuple[str, ...]


def load_study(tp_name: str, gp_name: str) -> Study:
    """Load both checkpoints and rebuild their priors from the cards (or the tp stand-in's)."""
    tp, gp = load_checkpoint(tp_name), load_checkpoint(gp_name)
    notes = []
    gp_prior = priors.make_prior(gp.card["prior_name"], gp.card["prior_config"])
    try:
        hyper = GPHyperparameters(**gp_prior.fixed_gp_hyperparameters())
    except (AttributeError, ValueError) as err:
        raise SystemExit(
            f"--gp-checkpoint {gp_name!r} must be a PFN on one fixed GP: {err}"
        ) from err
    if tp.card["prior_name"] == "tp":
        tp_prior = priors.make_prior("tp", tp.card["prior_config"])
    else:
        tp_prior = priors.make_prior("tp", tomllib.loads(TP_CONFIG.read_text())["prior"])
        notes.append(f"STAND-IN: --tp-checkpoint {tp.name!r} was trained on prior "
                     f"{tp.card['prior_name']!r}, not 'tp'; the Student-t tasks and oracle "
                     f"come from {TP_CONFIG.relative_to(ROOT)}")  # fmt: skip
    return Study(tp, gp, tp_prior, gp_prior, hyper, tuple(notes))


def score_cell(study: Study, scenario_index: int, n_ctx: int, sizes: Sizes, seed: int) -> dict:
    """All four predictors on one cell's tasks; their summaries and paired differences."""
    scenario = SCENARIOS[scenario_index]
    family = tp_family(study.tp_prior) if scenario.family == "tp" else gp_family(study.gp_prior)
    batch = draw_cell(scenario, family, sizes.tasks, n_ctx, sizes.n_qry,
                      cell_seed(seed, scenario_index, n_ctx))  # fmt: skip
    scores = {
        "tp-pfn": pfn_scores(study.tp.model, batch),
        "gp-pfn": pfn_scores(study.gp.model, batch),
        "exact-tp": exact_tp_scores(study.tp_prior, batch),
        "exact-gp": exact_gp_scores(study.hyper, batch),
    }
    outliers = batch.meta.get("outlier")
    return {
        "scenario": scenario.name, "label": scenario.label, "n_ctx": n_ctx,
        "tasks": sizes.tasks, "n_qry": sizes.n_qry,
        "outlier_fraction": None if outliers is None else float(outliers.mean()),
        "predictors": {name: summary(scores[name]) for name in PREDICTORS},
        "paired": {
            "pfn_t_minus_gauss": paired(scores["tp-pfn"], scores["gp-pfn"]),
            "exact_tp_minus_gp": paired(scores["exact-tp"], scores["exact-gp"]),
            "tp_pfn_minus_exact_tp": paired(scores["tp-pfn"], scores["exact-tp"]),
            "gp_pfn_minus_exact_gp": paired(scores["gp-pfn"], scores["exact-gp"]),
        },
    }  # fmt: skip


def _pfn_view(checkpoint: Checkpoint, prior: Any, reference: str, tasks: str,
              options: RobustnessOptions) -> dict:  # fmt: skip
    """A PFN and its own exact oracle, attacked on the same tasks of its prior."""
    oracle = "exact TP" if reference == "tp-exact" else "exact GP"
    report = run_attack(checkpoint, prior, reference=reference, options=options)
    results = [{"eps": r.eps, "first_mean": r.model_mean, "second_mean": r.exact_mean,
                "ratio": r.ratio, "median_task_ratio": r.median_task_ratio}
               for r in report.results]  # fmt: skip
    return {"label": f"{checkpoint.name} / {oracle}", "tasks": tasks, "results": results}


def _exact_view(study: Study, prior: Any, tasks: str, options: RobustnessOptions) -> dict:
    """The exact TP and the exact GP attacked on the same tasks of `prior`, same starts."""
    batch, generator = seeded_tasks(prior, options.tasks, options.n_ctx, options.n_qry,
                                    options.seed)  # fmt: skip
    start = attack_seed(generator)
    context = (batch.x_ctx.double(), batch.y_ctx.double(), batch.x_qry.double())
    kl = []
    for predictor in (exact_student_t_predictor(study.tp_prior), exact_gp_predictor(study.hyper)):
        attacks = attack_context(predictor, *context, options.eps, target=options.target,
                                 config=options.attack,
                                 generator=torch.Generator().manual_seed(start))  # fmt: skip
        kl.append([a.kl_B for a in attacks])
    results = []
    for eps, tp_B, gp_B in zip(options.eps, *kl, strict=True):
        ok_B = gp_B > 0
        median = float((tp_B[ok_B] / gp_B[ok_B]).median()) if bool(ok_B.any()) else None
        ratio = float(tp_B.mean() / gp_B.mean()) if float(gp_B.mean()) > 0 else None
        results.append({"eps": eps, "first_mean": float(tp_B.mean()),
                        "second_mean": float(gp_B.mean()), "ratio": ratio,
                        "median_task_ratio": median})  # fmt: skip
    return {"label": "exact TP / exact GP", "tasks": tasks, "results": results}


def attack_study(study: Study, sizes: Sizes, seed: int) -> dict:
    """Both PFNs against their own oracle, and the exact TP against the exact GP."""
    options = RobustnessOptions(
        eps=sizes.attack_eps, tasks=sizes.attack_tasks, n_ctx=sizes.attack_n_ctx,
        n_qry=sizes.attack_n_qry, target="y", attack=AttackConfig(steps=sizes.attack_steps),
        seed=seed,
    )  # fmt: skip
    views = [
        _pfn_view(study.tp, study.tp_prior, "tp-exact", "TP tasks", options),
        _pfn_view(study.gp, study.gp_prior, "gp-exact", "GP tasks", options),
        _exact_view(study, study.gp_prior, "GP tasks", options),
        _exact_view(study, study.tp_prior, "TP tasks", options),
    ]
    return {"options": {**asdict(options), "attack": options.attack.to_dict()}, "views": views}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--tp-checkpoint", default="tp-rbf", help="the Student-t PFN (default tp-rbf)")
    add("--gp-checkpoint", default="gp-rbf", help="the Gaussian PFN (default gp-rbf)")
    add("--sizes", help=f"context sizes, comma-separated (default {FULL.sizes})")
    add("--tasks", type=int, help=f"tasks per cell (default {FULL.tasks})")
    add("--n-qry", type=int, help=f"query points per task (default {FULL.n_qry})")
    add("--attack-tasks", type=int, help=f"tasks per attack (default {FULL.attack_tasks})")
    add("--attack-eps", help=f"attack radii (default {FULL.attack_eps})")
    add("--attack-steps", type=int, help=f"PGD steps (default {FULL.attack_steps})")
    add("--seed", type=int, default=0)
    add("--json", help="write all figures here")
    add("--markdown", action="store_true", help="print Markdown tables")
    add("--plot", help="write the NLL/coverage figure here (PNG)")
    add("--smoke", action="store_true", help="a few tasks: runs in seconds")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = SMOKE if args.smoke else FULL
    given = {
        "sizes": tuple(int(n) for n in args.sizes.split(",")) if args.sizes else None,
        "tasks": args.tasks, "n_qry": args.n_qry, "attack_tasks": args.attack_tasks,
        "attack_eps": tuple(float(e) for e in args.attack_eps.split(","))
        if args.attack_eps else None,
        "attack_steps": args.attack_steps,
    }  # fmt: skip
    return Sizes(**{**asdict(base), **{k: v for k, v in given.items() if v is not None}})


def print_report(console: Console, out: dict, as_markdown: bool) -> None:
    for note in out["notes"]:
        console.print(note, markup=False)
    cells = out["cells"]
    render(console, "NLL per query point (± se over tasks) and 90% interval coverage",
           results_rows(cells, PREDICTORS),
           f"{cells[0]['tasks']} tasks per row, {cells[0]['n_qry']} queries each; "
           "outlier rows are scored on clean queries", as_markdown)  # fmt: skip
    render(console, "Where the heavy-tailed prior helps and where it costs",
           verdict_rows(cells), "paired per-task NLL differences (negative: the Student-t "
           "predictor is better); helps/costs = beyond 2 se, else tie", as_markdown)  # fmt: skip
    render(console, "Adversarial view: worst-case KL under the same context attack",
           attack_rows(out["attacks"]), "first / second mean KL(q(.|D) || q(.|D+delta)) over "
           "queries; ratio = first / second; y attacked in an L2 ball of radius eps x the "
           "task's std", as_markdown)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    sizes = sizes_from(args)
    study = load_study(args.tp_checkpoint, args.gp_checkpoint)
    cells = [score_cell(study, i, n, sizes, args.seed)
             for i in range(len(SCENARIOS)) for n in sizes.sizes]  # fmt: skip
    out = {
        "command": "python benchmarks/heavy_tails.py " + " ".join(sys.argv[1:] if argv is None
                                                                   else argv),
        "tp_checkpoint": study.tp.name, "gp_checkpoint": study.gp.name,
        "notes": list(study.notes), "sizes": asdict(sizes), "seed": args.seed,
        "cells": cells, "attacks": attack_study(study, sizes, args.seed),
    }  # fmt: skip
    print_report(Console(width=max(Console().width, 180)), out, args.markdown)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.plot:
        print(f"wrote {plot_study(cells, PREDICTORS, args.plot)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
