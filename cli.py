"""pfnkit command line: pretrain, predict, validate, robustness, optimize; wires priors in."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SECTIONS = ("prior", "model", "train", "card")
_DISTRIBUTED_FLAGS = ("accelerator", "devices", "num_nodes", "strategy")  # train.* overrides


def _parse_value(text: str) -> Any:
    """A TOML literal (number, bool, quoted string, array, inline table), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | None, overrides: list[str]) -> dict[str, dict[str, Any]]:
    """Read a TOML config with sections prior/model/train/card and apply `section.key=value`."""
    config: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    if path is not None:
        loaded = tomllib.loads(Path(path).read_text())
        unknown = set(loaded) - set(_SECTIONS)
        if unknown:
            raise SystemExit(f"{path}: unknown sections {sorted(unknown)}; use {_SECTIONS}")
        for section, values in loaded.items():
            config[section].update(values)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot or section not in _SECTIONS:
            raise SystemExit(
                f"--set expects section.key=value with section in {_SECTIONS}, got {item!r}"
            )
        config[section][field] = _parse_value(value)
    return config


def _command_line(prog: str, argv: list[str]) -> str:
    """The command as it was invoked, for the card: `python cli.py ...` for the script,
    `pfnkit ...` for the installed command, `python -m pfnkit ...` for the module."""
    words = ["python", prog] if prog.endswith(".py") else shlex.split(prog)
    return shlex.join([*words, *argv])


# ----------------------------------------------------------------------------- pretrain
def _model_config(prior: Any, section: dict[str, Any]) -> Any:
    """PFNConfig, or DTConfig with `kind = "dt"`; the prior gives the input sizes, [model] wins."""
    from pfnkit.data import prior_model_sizes
    from pfnkit.models import DTConfig, PFNConfig

    section = dict(section)
    kind = section.pop("kind", "pfn")
    try:
        sizes = prior_model_sizes(prior, kind)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    config_cls = DTConfig if kind == "dt" else PFNConfig
    return config_cls.from_dict({**sizes, **section})


def cmd_pretrain(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import save_checkpoint, write_manifest
    from pfnkit.training import TrainConfig, pretrain

    config = load_config(args.config, args.set)
    for key in _DISTRIBUTED_FLAGS:  # the command-line flags win over the TOML file and --set
        if getattr(args, key) is not None:
            config["train"][key] = getattr(args, key)
    prior = priors.make_prior(args.prior, config["prior"])
    model_config = _model_config(prior, config["model"])
    train_config = TrainConfig.from_dict(config["train"])
    card_section = config["card"]
    data_mapping = _card_data_mapping(prior, card_section.get("data_mapping"))  # before training
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / out.name
    result = pretrain(
        model_config,
        prior,
        train_config,
        run_dir=run_dir,
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    from lightning.pytorch.utilities import rank_zero_only

    if int(rank_zero_only.rank) != 0:  # under DDP all ranks hold the same weights
        return 0
    card_path = save_checkpoint(
        out,
        result.model,
        prior_name=args.prior,
        prior_config=prior.config.to_dict(),
        train_config=train_config.to_dict(),
        command=args.command_line,
        data_mapping=data_mapping,
        tolerances=card_section.get("tolerances"),
        training=result.summary,
        description=card_section.get("description", ""),
        reference=card_section.get("reference"),
    )
    write_manifest(card_path.parent)
    print(f"wrote {card_path} and {card_path.with_suffix('.safetensors')}")
    return 0


def _card_data_mapping(prior: Any, mapping: dict[str, str] | None) -> dict[str, str] | None:
    """The card's data_mapping as the prior checks and completes it; a clear exit if it refuses."""
    from pfnkit.data import prior_card_data_mapping

    try:
        return prior_card_data_mapping(prior, mapping)
    except ValueError as error:
        raise SystemExit(str(error)) from error


# ------------------------------------------------------------------------------ predict
def _read_csv(path: str) -> tuple[list[str], Any]:
    import numpy as np

    with open(path) as handle:
        header = handle.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return header, data


def cmd_predict(args: argparse.Namespace, argv: list[str]) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from pfnkit.estimators import PFNRegressor

    header, train = _read_csv(args.train)
    target = header.index(args.target) if args.target else len(header) - 1
    features = [i for i in range(len(header)) if i != target]
    test_header, test = _read_csv(args.test)
    columns = [test_header.index(header[i]) for i in features]
    levels = [float(q) for q in args.quantiles.split(",")]
    reg = PFNRegressor(checkpoint=args.checkpoint, device=args.device)
    reg.fit(train[:, features], train[:, target])
    x_test = test[:, columns]
    mean = reg.predict(x_test)
    quantiles = reg.predict_quantiles(x_test, levels)
    names = ["mean", *(f"q{level:g}" for level in levels)]
    table = Table(title=f"{args.checkpoint}: predictions for {args.test}")
    for name in [header[i] for i in features] + names:
        table.add_column(name, justify="right")
    for row in range(min(len(x_test), args.show)):
        values = [*x_test[row], mean[row], *quantiles[row]]
        table.add_row(*(f"{v:.4g}" for v in values))
    Console().print(table)
    if args.out:
        columns = ",".join([header[i] for i in features] + names)
        out = np.column_stack([x_test, mean, quantiles])
        np.savetxt(args.out, out, delimiter=",", comments="", header=columns)
        print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- validate
def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(word) for word in text.split(",")) if text else None


def cmd_validate(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the validator the card names (or --reference names); print, save, record."""
    from rich.console import Console

    import priors
    from pfnkit.checkpoint import load_checkpoint, record_validation
    from pfnkit.validation import VALIDATORS, ValidationOptions, resolve_reference, validate

    ckpt = load_checkpoint(args.checkpoint)
    try:
        validator = VALIDATORS[resolve_reference(ckpt.card, args.reference)]
        prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
        options = ValidationOptions(
            tasks=args.tasks, sizes=_ints(args.sizes), dims=_ints(args.dims), n_qry=args.n_qry,
            seed=args.seed, nuts_warmup=args.nuts_warmup, nuts_samples=args.nuts_samples,
            nuts_tasks=args.nuts_tasks, workers=args.workers, curve_tasks=args.curve_tasks,
            progress=not args.no_progress,
        ).with_defaults(validator.defaults)  # fmt: skip
        report = validate(ckpt, prior, reference=validator.name, options=options)
    except ValueError as error:
        raise SystemExit(f"validate {ckpt.name!r}: {error}") from error
    console = Console(width=max(Console().width, 140))  # keep wide tables whole in logs
    for table in validator.tables(report):
        console.print(table)
    if args.json:
        report.write_json(args.json)
    if args.plots:
        for path in validator.plots(ckpt, prior, report, Path(args.plots)):
            print(f"wrote {path}")
    if args.write_card:  # the per-task lists stay in --json; the card keeps the summary
        figures = {key: value for key, value in report.to_dict().items() if key != "tasks"}
        record_validation(
            args.checkpoint, figures, command=args.command_line, n_tasks=options.tasks
        )
    return 0 if report.passed else 1


# --------------------------------------------------------------------------- robustness
def cmd_robustness(args: argparse.Namespace, argv: list[str]) -> int:
    from rich.console import Console

    import priors
    from pfnkit import robustness
    from pfnkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    options = robustness.RobustnessOptions(
        eps=tuple(float(e) for e in args.eps.split(",")), tasks=args.tasks, n_ctx=args.n_ctx,
        n_qry=args.n_qry, target=args.target, seed=args.seed, progress=not args.no_progress,
        attack=robustness.AttackConfig(norm=args.norm, steps=args.steps, restarts=args.restarts),
    )  # fmt: skip
    try:
        report = robustness.run_attack(ckpt, prior, reference=args.reference, options=options)
    except robustness.UnsupportedCheckpointError as err:
        raise SystemExit(str(err)) from err
    console = Console(width=max(Console().width, 110))  # keep the table whole in logs
    for table in robustness.tables(report):
        console.print(table)
    if args.json:
        report.write_json(args.json)
    if args.plots:
        written = robustness.plots(ckpt, prior, report, args.plots)
        for path in written:
            print(f"wrote {path} (the model's worst-attacked task)")
        if not written:
            print("no attack plots for this checkpoint and eps; skipped")
    return 0


# ----------------------------------------------------------------------------- optimize
def cmd_optimize(args: argparse.Namespace, argv: list[str]) -> int:
    """Minimise the named function (`pfnkit.bo.command.optimize_command`); print the table."""
    from rich.console import Console

    from pfnkit.bo.command import optimize_command

    try:
        table = optimize_command(
            args.function, args.bounds, args.n_evals, n_init=args.n_init,
            acquisition=args.acquisition, checkpoint=args.checkpoint, seed=args.seed,
            json_path=args.json, progress=not args.no_progress,
            trust_region=not args.no_trust_region,
        )  # fmt: skip
    except ValueError as error:  # a bad name, bounds, budget or acquisition, or a bad f(x)
        raise SystemExit(f"optimize: {error}") from error
    Console().print(table)
    return 0


def cmd_extrapolate(args: argparse.Namespace, argv: list[str]) -> int:  # a curve's forecast
    from rich.console import Console

    from pfnkit.bo.freeze_thaw_extrapolate import extrapolate_command

    try:
        Console().print(extrapolate_command(args.checkpoint, args.values, threshold=args.threshold))
    except ValueError as error:  # not a single-curve checkpoint, bad values
        raise SystemExit(f"extrapolate: {error}") from error
    return 0


def build_parser(prog: str = "cli.py") -> argparse.ArgumentParser:
    """The argument parser: one subcommand per library front door."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_pretrain, _add_predict, _add_validate, _add_robustness, _add_optimize):
        add(sub)
    p = sub.add_parser("extrapolate", help="forecast the later epochs of a partial learning curve")
    p.add_argument("--values", required=True, help="epochs 1..k, comma-separated: 0.6,0.45,0.4")
    p.add_argument("--checkpoint", default="lc-curve", help="single-curve PFN (default lc-curve)")
    p.add_argument("--threshold", type=float, help="report P(final epoch's value < threshold)")
    p.set_defaults(handler=cmd_extrapolate)
    return parser


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    """`pretrain`: a prior, a TOML config and overrides, the checkpoint to write."""
    p = sub.add_parser("pretrain", help="pretrain a PFN on a registered prior, write a checkpoint")
    p.add_argument("--prior", required=True, help="prior name in priors.REGISTRY, e.g. gp")
    p.add_argument("--config", help="TOML file with [prior], [model], [train], [card] sections")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config entry, e.g. train.steps=100 (repeatable)",
    )
    p.add_argument("--out", required=True, help="checkpoint path stem, e.g. checkpoints/gp-rbf")
    p.add_argument("--run-dir", help="where Lightning checkpoints and logs go (default runs/NAME)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    scale = p.add_argument_group(
        "distributed training (each overrides train.* from --config and --set)"
    )
    scale.add_argument("--accelerator", help='Lightning accelerator: "cpu", "gpu" or "auto"')
    scale.add_argument("--devices", type=int, help="processes (devices) per node")
    scale.add_argument("--num-nodes", type=int, help="machines taking part")
    scale.add_argument("--strategy", help='Lightning strategy, e.g. "ddp" (default "auto")')
    p.set_defaults(handler=cmd_pretrain)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """`predict`: a checkpoint's regressor fitted on one CSV, predicting another."""
    p = sub.add_parser("predict", help="fit a checkpoint's regressor on a CSV, predict another")
    p.add_argument(
        "--checkpoint",
        default="gp-lin",
        help="short name or checkpoint path (default gp-lin, the general-purpose regressor)",
    )
    p.add_argument("--train", required=True, help="CSV with a header: features and the target")
    p.add_argument("--test", required=True, help="CSV with the same feature columns")
    p.add_argument("--target", help="target column name (default: the last column)")
    p.add_argument("--quantiles", default="0.05,0.5,0.95", help="comma-separated levels")
    p.add_argument("--out", help="write predictions to this CSV")
    p.add_argument("--show", type=int, default=20, help="rows to print")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_predict)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    """`validate`: the card's validator (or --reference), its budget and outputs."""
    p = sub.add_parser("validate", help="compare a checkpoint with exact inference on its prior")
    p.add_argument("--checkpoint", default="gp-rbf", help="short name or checkpoint path")
    p.add_argument(
        "--reference",
        help="validator: a name in pfnkit.validation.VALIDATORS (gp-exact, gp-nuts, bnn-nuts, "
        "dt-exact, dt-nuts, tp-exact), or exact / nuts: the card's own target against its "
        "exact oracle or against pyro NUTS (e.g. nuts on a gp-exact card runs gp-nuts). "
        "Default: the card's reference",
    )
    p.add_argument(
        "--tasks",
        type=int,
        help="fresh prior tasks per context size (per context size and d for gp-nuts); "
        "default: the validator's (256 for gp-exact and dt-*, 64 for gp-nuts, 16 for bnn-nuts)",
    )
    p.add_argument(
        "--sizes",
        help="comma-separated context (or observation) sizes; default: the validator's "
        "(1,3,10,30,100 for gp-exact, 2,5,10,20,50,100 for gp-nuts, 0,2,5,10,20 for dt-exact)",
    )
    p.add_argument(
        "--dims",
        help="comma-separated numbers of used features d (GP hyperprior against NUTS); "
        "default 1,3,10 within the prior's range",
    )
    p.add_argument("--nuts-warmup", type=int, help="NUTS warmup steps per chain (GP, BNN)")
    p.add_argument("--nuts-samples", type=int, help="NUTS kept draws per chain (GP, BNN)")
    p.add_argument(
        "--nuts-tasks",
        type=int,
        help="tasks per cell that also get a NUTS run (the PFN's NLLs use all --tasks): GP "
        "hyperprior (default 4, next to ML-II) and non-conjugate Distribution Transformer "
        "(default 24, with a C2ST)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes scoring tasks against NUTS in parallel"
    )
    p.add_argument("--curve-tasks", type=int, default=4, help="BNN: tasks on the NLL-vs-time curve")
    p.add_argument("--n-qry", type=int, default=100, help="query points per task")
    p.add_argument("--seed", type=int, default=12345, help="seed of the validation tasks")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--plots", help="write the report's PNGs to this folder")
    p.add_argument("--write-card", action="store_true", help="record the figures in the card")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_validate)


def _add_robustness(sub: argparse._SubParsersAction) -> None:
    """`robustness`: the attack (or --reference), its radii, budget and outputs."""
    p = sub.add_parser("robustness", help="attack a checkpoint and exact inference on its tasks")
    p.add_argument("--checkpoint", default="gp-rbf", help="short name or checkpoint path")
    p.add_argument(
        "--reference",
        help="attack by name, e.g. gp-exact or dt-exact (default: the card's reference)",
    )
    p.add_argument(
        "--eps", default="0.01,0.05,0.1", help="comma-separated radii, in units of the data's std"
    )
    p.add_argument("--tasks", type=int, default=64, help="fresh prior tasks")
    p.add_argument(
        "--target", choices=["y", "x", "xy"], default="y", help="which context values to attack"
    )
    p.add_argument("--norm", choices=["l2", "linf"], default="l2", help="shape of the ball")
    p.add_argument("--steps", type=int, default=20, help="projected gradient steps per eps")
    p.add_argument("--restarts", type=int, default=1, help="random starts per eps (best kept)")
    p.add_argument("--n-ctx", type=int, default=20, help="context points per task")
    p.add_argument("--n-qry", type=int, default=50, help="query points per task")
    p.add_argument("--seed", type=int, default=2718, help="seed of the tasks and the attacks")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--plots", help="write a PNG of the worst-attacked task to this folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_robustness)


def _add_optimize(sub: argparse._SubParsersAction) -> None:
    """`optimize`: the function by name, its box, the budget, the surrogate and outputs."""
    p = sub.add_parser(
        "optimize",
        help="minimise a Python function by Bayesian optimisation with a PFN surrogate",
        description="Minimise f(x) over a box: a Sobol design, then each point maximises the "
        "acquisition under the PFN surrogate's posterior (pfnkit.bo.minimize).",
    )
    p.add_argument("function", help="module:function or path/to/file.py:function; f(x) -> float")
    p.add_argument(
        "--bounds",
        required=True,
        help='low,high per dimension, ";" between: "0,1;0,1" (a leading minus needs the = '
        'form: --bounds="-5,10;0,15")',
    )
    p.add_argument("--n-evals", type=int, default=50, help="evaluations of f, design included")
    p.add_argument("--n-init", type=int, help="initial Sobol design (default d + 1)")
    p.add_argument("--acquisition", default="ei", help="ei (default), log_ei, pi or lcb")
    p.add_argument("--checkpoint", help="regression PFN (default pfnkit.bo.DEFAULT_CHECKPOINT)")
    p.add_argument("--no-trust-region", action="store_true", help="every step global (no TuRBO)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same points")
    p.add_argument("--json", help="write the history and the best point to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_optimize)


def main(argv: list[str] | None = None, *, prog: str = "cli.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    args.command_line = _command_line(prog, argv)  # what the card records
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
