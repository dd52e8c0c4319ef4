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
            raise SystemExit(f"--set expects section.key=value with section in {_SECTIONS}, got {item!r}")
        config[section][field] = _parse_value(value)
    return config


def _command_line(argv: list[str]) -> str:
    return shlex.join(["python", "cli.py", *argv])


# ----------------------------------------------------------------------------- pretrain
def cmd_pretrain(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import save_checkpoint, write_manifest
    from pfnkit.models import PFNConfig
    from pfnkit.training import TrainConfig, pretrain

    config = load_config(args.config, args.set)
    prior = priors.make_prior(args.prior, config["prior"])
    model_section = {"num_features": prior.config.num_features, **config["model"]}
    model_config = PFNConfig.from_dict(model_section)
    train_config = TrainConfig.from_dict(config["train"])
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / out.name
    model = pretrain(
        model_config, prior, train_config, run_dir=run_dir, resume=not args.no_resume,
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
        description=card_section.get("description", ""),
    )
    write_manifest(card_path.parent)
    print(f"wrote {card_path} and {card_path.with_suffix('.safetensors')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain a PFN on a registered prior, write a checkpoint")
    p.add_argument("--prior", required=True, help="prior name in priors.REGISTRY, e.g. gp")
    p.add_argument("--config", help="TOML file with [prior], [model], [train], [card] sections")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config entry, e.g. train.steps=100 (repeatable)")
    p.add_argument("--out", required=True, help="checkpoint path stem, e.g. checkpoints/gp-rbf")
    p.add_argument("--run-dir", help="where Lightning checkpoints and logs go (default runs/NAME)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing last.ckpt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=cmd_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
