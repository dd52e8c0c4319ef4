"""pfnkit command line: pretrain, predict and validate. Thin wiring of priors and pfnkit."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["main"]

_SECTIONS = ("prior", "model", "train", "card")


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


def _command_line(argv: list[str]) -> str:
    return shlex.join(["python", "cli.py", *argv])


# ----------------------------------------------------------------------------- pretrain
def cmd_pretrain(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import save_checkpoint, write_manifest
    from pfnkit.models import PFNConfig
    from pfnkit.training import TrainConfig, pretrain, training_summary

    config = load_config(args.config, args.set)
    prior = priors.make_prior(args.prior, config["prior"])
    model_section = {"num_features": prior.config.num_features, **config["model"]}
    model_config = PFNConfig.from_dict(model_section)
    train_config = TrainConfig.from_dict(config["train"])
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / out.name
    model = pretrain(
        model_config,
        prior,
        train_config,
        run_dir=run_dir,
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    card_section = config["card"]
    card_path = save_checkpoint(
        out,
        model,
        prior_name=args.prior,
        prior_config=prior.config.to_dict(),
        train_config=train_config.to_dict(),
        command=_command_line(argv),
        data_mapping=card_section.get("data_mapping"),
        tolerances=card_section.get("tolerances"),
        training=training_summary(run_dir),
        description=card_section.get("description", ""),
    )
    write_manifest(card_path.parent)
    print(f"wrote {card_path} and {card_path.with_suffix('.safetensors')}")
    return 0


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
        out = np.column_stack([x_test, mean, quantiles])
        np.savetxt(
            args.out,
            out,
            delimiter=",",
            comments="",
            header=",".join([header[i] for i in features] + names),
        )
        print(f"wrote {args.out}")
    return 0


# ----------------------------------------------------------------------------- validate
def cmd_validate(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import load_checkpoint
    from pfnkit.validation import plot_gp_bands, plot_nll_by_size, validate_against_exact_gp

    ckpt = load_checkpoint(args.checkpoint)
    card = ckpt.card
    if card["prior_name"] != "gp":
        raise SystemExit(
            f"--reference exact needs a GP-prior checkpoint; {ckpt.name!r} has "
            f"prior {card['prior_name']!r}"
        )
    prior = priors.make_prior(card["prior_name"], card["prior_config"])
    sizes = [int(s) for s in args.sizes.split(",")]
    report = validate_against_exact_gp(
        ckpt.model,
        prior,
        kernel=prior.config.kernel,
        checkpoint=ckpt.name,
        n_ctx_sizes=sizes,
        n_tasks=args.tasks,
        n_qry=args.n_qry,
        seed=args.seed,
        tolerances=card.get("tolerances", {}),
        progress=not args.no_progress,
    )
    _print_validation(report, args.tasks)
    if args.json:
        report.write_json(args.json)
    if args.plots:
        print(f"wrote {plot_nll_by_size(report, Path(args.plots) / 'nll_by_size.png')}")
        if prior.config.num_features == 1:
            x_range = (prior.config.x_low, prior.config.x_high)
            for path in plot_gp_bands(
                ckpt.model, prior, kernel=prior.config.kernel, out_dir=args.plots, x_range=x_range
            ):
                print(f"wrote {path}")
        else:
            print("predictive-band plots need a 1-D prior; skipped")
    if args.write_card:
        from pfnkit.checkpoint import resolve_checkpoint, write_manifest

        _, card_path, _ = resolve_checkpoint(args.checkpoint)
        card["validation"] = {
            "command": _command_line(argv),
            "n_tasks": args.tasks,
            **report.to_dict(),
        }
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        write_manifest(card_path.parent)
    return 0 if report.passed else 1


def _print_validation(report: Any, n_tasks: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{report.checkpoint} vs exact GP ({n_tasks} tasks per size; "
        "NLL in nats per query point)"
    )
    for name in (
        "n_ctx",
        "PFN NLL",
        "exact NLL",
        "gap",
        "PFN cov 50/90/95",
        "exact cov 50/90/95",
        "PFN ms/task",
        "exact ms/task",
    ):
        table.add_column(name, justify="right")
    for s in report.sizes:
        cov = lambda c: "/".join(f"{100 * c[level]:.1f}" for level in sorted(c))  # noqa: E731
        table.add_row(
            str(s.n_ctx),
            f"{s.pfn_nll:.4f}",
            f"{s.exact_nll:.4f}",
            f"{s.gap:+.4f}",
            cov(s.pfn_coverage),
            cov(s.exact_coverage),
            f"{1e3 * s.pfn_seconds_per_task:.2f}",
            f"{1e3 * s.exact_seconds_per_task:.2f}",
        )
    console = Console(width=max(Console().width, 110))  # keep the table whole in logs
    console.print(table)
    verdict = "PASS" if report.passed else "FAIL"
    console.print(
        f"mean gap {report.mean_gap:+.4f}, max gap {report.max_gap:+.4f}, "
        f"tolerances {report.tolerances}: {verdict}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.set_defaults(handler=cmd_pretrain)

    p = sub.add_parser("predict", help="fit a checkpoint's regressor on a CSV, predict another")
    p.add_argument("--checkpoint", default="gp-rbf", help="short name or checkpoint path")
    p.add_argument("--train", required=True, help="CSV with a header: features and the target")
    p.add_argument("--test", required=True, help="CSV with the same feature columns")
    p.add_argument("--target", help="target column name (default: the last column)")
    p.add_argument("--quantiles", default="0.05,0.5,0.95", help="comma-separated levels")
    p.add_argument("--out", help="write predictions to this CSV")
    p.add_argument("--show", type=int, default=20, help="rows to print")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("validate", help="compare a checkpoint with exact inference on its prior")
    p.add_argument("--checkpoint", default="gp-rbf", help="short name or checkpoint path")
    p.add_argument(
        "--reference",
        choices=["exact"],
        default="exact",
        help="oracle: exact = the gpytorch GP at the task's true hyperparameters",
    )
    p.add_argument("--tasks", type=int, default=256, help="fresh prior tasks per context size")
    p.add_argument("--sizes", default="1,3,10,30,100", help="comma-separated context sizes")
    p.add_argument("--n-qry", type=int, default=100, help="query points per task")
    p.add_argument("--seed", type=int, default=12345, help="seed of the validation tasks")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--plots", help="write PNGs of predictive bands to this folder")
    p.add_argument(
        "--write-card",
        action="store_true",
        help="record the figures in the checkpoint card and manifest",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
