"""pfnkit command line: pretrain, predict, validate, robustness. Wires priors to pfnkit."""

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


def _command_line(argv: list[str]) -> str:
    return shlex.join(["python", "cli.py", *argv])


# ----------------------------------------------------------------------------- pretrain
def _model_config(prior: Any, section: dict[str, Any]) -> Any:
    """PFNConfig, or DTConfig with `kind = "dt"`; input sizes come from the prior."""
    from pfnkit.models import DTConfig, PFNConfig

    section = dict(section)
    kind = section.pop("kind", "pfn")
    if kind == "dt":
        sizes = {"dim": prior.config.dim, "obs_dim": prior.config.obs_dim}
        return DTConfig.from_dict({**sizes, "k_max": prior.config.k_max, **section})
    if kind != "pfn":
        raise SystemExit(f"[model] kind must be 'pfn' or 'dt', got {kind!r}")
    sizes = {"num_features": prior.config.num_features}
    # a classification prior (n_classes set, output not "regression") sets the head's width
    n_classes = getattr(prior.config, "n_classes", 0)
    if n_classes and getattr(prior.config, "output", "classification") != "regression":
        sizes["n_classes"] = n_classes
    return PFNConfig.from_dict({**sizes, **section})


def cmd_pretrain(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import save_checkpoint, write_manifest
    from pfnkit.training import TrainConfig, pretrain, training_summary

    config = load_config(args.config, args.set)
    for key in _DISTRIBUTED_FLAGS:  # the command-line flags win over the TOML file and --set
        if getattr(args, key) is not None:
            config["train"][key] = getattr(args, key)
    prior = priors.make_prior(args.prior, config["prior"])
    model_config = _model_config(prior, config["model"])
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
    from lightning.pytorch.utilities import rank_zero_only

    if int(rank_zero_only.rank) != 0:  # under DDP all ranks hold the same weights
        return 0
    card_section = config["card"]
    card_path = save_checkpoint(
        out,
        model,
        prior_name=args.prior,
        prior_config=prior.config.to_dict(),
        train_config=train_config.to_dict(),
        command=_command_line(argv),
        data_mapping=_card_data_mapping(prior, card_section.get("data_mapping")),
        tolerances=card_section.get("tolerances"),
        training=training_summary(run_dir, init_from=train_config.init_from),
        description=card_section.get("description", ""),
    )
    write_manifest(card_path.parent)
    print(f"wrote {card_path} and {card_path.with_suffix('.safetensors')}")
    return 0


def _card_data_mapping(prior: Any, mapping: dict[str, str] | None) -> dict[str, str] | None:
    """The card's data_mapping, with pad_rescale filled in from (and checked against) the prior."""
    rescale = getattr(prior.config, "feature_rescale", None)  # GP priors only
    if rescale is None:
        return mapping
    declared = (mapping or {}).get("pad_rescale", rescale)
    if declared != rescale or (rescale != "none" and (mapping or {}).get("features") != "pad"):
        raise SystemExit(
            f"[prior] feature_rescale = {rescale!r} needs [card] data_mapping with "
            f'features = "pad" and pad_rescale = {rescale!r} (got {mapping}), so that '
            "the estimators rescale padded features as the prior did"
        )
    if mapping is None or rescale == "none":
        return mapping
    return {**mapping, "pad_rescale": rescale}


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
def cmd_validate(args: argparse.Namespace, argv: list[str]) -> int:
    import priors
    from pfnkit.checkpoint import load_checkpoint
    from pfnkit.validation.gp_exact import (
        plot_gp_bands,
        plot_nll_by_size,
        validate_against_exact_gp,
    )

    ckpt = load_checkpoint(args.checkpoint)
    card = ckpt.card
    if card["model_kind"] == "dt":
        args.tasks = args.tasks or 256
        return _validate_dt(ckpt, args, argv)
    if card["prior_name"] not in ("gp", "bnn"):
        raise SystemExit(
            f"validate needs a GP- or BNN-prior PFN or a Distribution Transformer; "
            f"{ckpt.name!r} has prior {card['prior_name']!r}"
        )
    prior = priors.make_prior(card["prior_name"], card["prior_config"])
    if card["prior_name"] == "bnn":
        return _validate_bnn_nuts(ckpt, prior, args, argv)
    if args.reference == "nuts" or (args.reference is None and prior.config.has_hyperpriors):
        return _validate_gp_nuts(ckpt, prior, args, argv)
    args.tasks = args.tasks or 256
    sizes = [int(s) for s in (args.sizes or "1,3,10,30,100").split(",")]
    report = validate_against_exact_gp(
        ckpt.model, prior, kernel=prior.config.kernel, checkpoint=ckpt.name,
        n_ctx_sizes=sizes, n_tasks=args.tasks, n_qry=args.n_qry, seed=args.seed,
        tolerances=card.get("tolerances", {}), progress=not args.no_progress,
    )  # fmt: skip
    report.print_table(args.tasks)
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
        _write_validation(args.checkpoint, card, argv, args.tasks, report.to_dict())
    return 0 if report.passed else 1


def _validate_gp_nuts(ckpt: Any, prior: Any, args: argparse.Namespace, argv: list[str]) -> int:
    """PFN vs the NUTS-marginalised GP and ML-II, per context size and feature count."""
    import dataclasses

    from pfnkit.validation.gp_nuts import (
        DEFAULT_GP_NUTS,
        GPNutsValidationConfig,
        validate_gp_against_nuts,
    )
    from pfnkit.validation.gp_nuts_report import plot_nll_by_context, print_gp_nuts_table

    cfg = prior.config
    if not cfg.has_hyperpriors:
        raise SystemExit(
            f"--reference nuts needs a GP prior with hyperpriors, but {ckpt.name!r} fixes every "
            "hyperparameter; use --reference exact"
        )
    d_range = range(cfg.num_features_min, cfg.num_features + 1)
    dims = [int(d) for d in args.dims.split(",")] if args.dims else [
        d for d in (1, 3, 10) if d in d_range] or [cfg.num_features]  # fmt: skip
    if any(d not in d_range for d in dims):
        raise SystemExit(f"--dims {dims}: {ckpt.name!r} was trained on d in {list(d_range)}")
    budget = {"warmup": args.nuts_warmup, "num_samples": args.nuts_samples}
    budget = {key: value for key, value in budget.items() if value is not None}
    args.tasks = args.tasks or 64
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (2, 5, 10, 20, 50, 100)
    config = GPNutsValidationConfig(
        n_ctx_sizes=sizes, dims=dims, n_tasks=args.tasks, n_qry=args.n_qry, seed=args.seed,
        nuts_tasks=min(args.nuts_tasks or 4, args.tasks),
        nuts=dataclasses.replace(DEFAULT_GP_NUTS, **budget),
    )  # fmt: skip
    report = validate_gp_against_nuts(
        ckpt.model,
        lambda n, n_ctx, n_qry, d, gen: prior.sample(n, n_ctx, n_qry, generator=gen,
                                                     num_used_features=d),
        ckpt.card["prior_config"], config=config, checkpoint=ckpt.name,
        tolerances=ckpt.card.get("tolerances", {}), workers=args.workers,
        progress=not args.no_progress,
    )  # fmt: skip
    print_gp_nuts_table(report)
    if args.json:
        report.write_json(args.json)
    if args.plots:
        print(f"wrote {plot_nll_by_context(report, Path(args.plots) / 'nll_by_context.png')}")
    if args.write_card:
        summary = {k: v for k, v in report.to_dict().items() if k != "tasks"}
        _write_validation(args.checkpoint, ckpt.card, argv, args.tasks, summary)
    return 0 if report.passed else 1


def _validate_bnn_nuts(ckpt: Any, prior: Any, args: argparse.Namespace, argv: list[str]) -> int:
    """A BNN-prior classifier vs NUTS on the network's weights, per context size."""
    import dataclasses

    import pfnkit.validation.bnn_nuts as bnn_nuts
    from pfnkit.validation.bnn_nuts_report import plot_bnn_nuts, print_bnn_nuts_table

    cfg = prior.config
    if args.reference == "exact" or cfg.mode != "fixed" or cfg.output == "regression":
        raise SystemExit(f"{ckpt.name!r}: validate supports a fixed-architecture BNN classifier "
                         "against --reference nuts (there is no exact BNN posterior)")  # fmt: skip
    budget = {"warmup": args.nuts_warmup, "num_samples": args.nuts_samples}
    budget = {key: value for key, value in budget.items() if value is not None}
    args.tasks = args.tasks or 16  # x 5 sizes: 80 fresh tasks
    config = bnn_nuts.BNNNutsValidationConfig(
        n_ctx_sizes=[int(s) for s in args.sizes.split(",")] if args.sizes else (1, 5, 20, 50, 100),
        n_tasks=args.tasks, n_qry=args.n_qry, seed=args.seed, curve_tasks=args.curve_tasks,
        nuts=dataclasses.replace(bnn_nuts.DEFAULT_BNN_NUTS, **budget),
    )  # fmt: skip
    report = bnn_nuts.validate_classifier_against_nuts(
        ckpt.model, prior, config=config, checkpoint=ckpt.name, workers=args.workers,
        tolerances=ckpt.card.get("tolerances", {}), progress=not args.no_progress,
    )  # fmt: skip
    print_bnn_nuts_table(report)
    if args.json:
        report.write_json(args.json)
    if args.plots:
        print(f"wrote {plot_bnn_nuts(report, Path(args.plots) / 'nll_vs_nuts.png')}")
    if args.write_card:
        summary = {k: v for k, v in report.to_dict().items() if k != "tasks"}
        _write_validation(args.checkpoint, ckpt.card, argv, args.tasks, summary)
    return 0 if report.passed else 1


def _validate_dt(ckpt: Any, args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    import priors
    from pfnkit.validation.dt_exact import validate_dt_conjugate

    card = ckpt.card
    prior = priors.make_prior(card["prior_name"], card["prior_config"])
    if prior.config.simulator != "gaussian" or args.reference == "nuts":
        return _validate_dt_nuts(ckpt, prior, args, argv)
    report = validate_dt_conjugate(
        ckpt.model, lambda n, n_obs, gen: prior.sample(n, n_obs, 0, generator=gen),
        obs_cov=torch.tensor(prior.config.obs_cov, dtype=torch.float64), checkpoint=ckpt.name,
        n_obs_sizes=[int(s) for s in args.sizes.split(",")] if args.sizes else (0, 2, 5, 10, 20),
        n_tasks=args.tasks, seed=args.seed, tolerances=card.get("tolerances", {}),
        progress=not args.no_progress,
    )  # fmt: skip
    report.print_table()
    if args.json:
        report.write_json(args.json)
    if args.plots:
        from pfnkit.validation.dt_plots import plot_dt_posteriors

        gen = torch.Generator().manual_seed(args.seed + 1)
        tasks = [prior.sample(1, n_obs, 0, generator=gen) for n_obs in (2, 5, 10)]
        obs_cov = torch.tensor(prior.config.obs_cov, dtype=torch.float64)
        path = Path(args.plots) / "posterior_contours.png"
        print(f"wrote {plot_dt_posteriors(ckpt.model, tasks, obs_cov, path, title=ckpt.name)}")
    if args.write_card:
        _write_validation(args.checkpoint, card, argv, args.tasks, report.to_dict())
    return 0 if report.passed else 1


def _validate_dt_nuts(ckpt: Any, prior: Any, args: argparse.Namespace, argv: list[str]) -> int:
    from pfnkit.validation.dt_nuts import validate_dt_nuts

    def log_joint(theta_SD: Any, task: Any) -> Any:  # one task, S parameter draws
        theta = theta_SD[:, None]
        return (prior.log_likelihood(theta, task.x_ctx) + prior.log_prior(theta, task.meta))[:, 0]

    report = validate_dt_nuts(
        ckpt.model, lambda n, n_obs, gen: prior.sample(n, n_obs, 0, generator=gen), log_joint,
        checkpoint=ckpt.name,
        n_obs_sizes=[int(s) for s in args.sizes.split(",")] if args.sizes else (5, 20),
        n_tasks=args.tasks, n_nuts_tasks=args.nuts_tasks or 24, seed=args.seed,
        tolerances=ckpt.card.get("tolerances", {}), progress=not args.no_progress,
    )  # fmt: skip
    report.print_table()
    if args.json:
        report.write_json(args.json)
    if args.write_card:
        _write_validation(args.checkpoint, ckpt.card, argv, args.tasks, report.to_dict())
    return 0 if report.passed else 1


def _write_validation(
    name: str, card: dict[str, Any], argv: list[str], n_tasks: int, figures: dict[str, Any]
) -> None:
    from pfnkit.checkpoint import resolve_checkpoint, write_manifest

    _, card_path, _ = resolve_checkpoint(name)
    card["validation"] = {"command": _command_line(argv), "n_tasks": n_tasks, **figures}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    write_manifest(card_path.parent)


# --------------------------------------------------------------------------- robustness
def _fixed_gp_hyperparameters(card: dict[str, Any], name: str) -> tuple[Any, Any]:
    """The checkpoint's prior and the exact GP's hyperparameters, or a clear refusal."""
    import priors
    from pfnkit.reference.exact_gp import GPHyperparameters

    if card["model_kind"] != "pfn" or card["prior_name"] != "gp":
        raise SystemExit(
            f"robustness is not supported yet for {name!r} (model_kind "
            f"{card['model_kind']!r}, prior {card['prior_name']!r}); it needs a PFN "
            "checkpoint with a fixed-hyperparameter GP prior, like gp-rbf"
        )
    prior = priors.make_prior(card["prior_name"], card["prior_config"])
    cfg = prior.config
    drawn = [h.family for h in (*cfg.lengthscale, cfg.outputscale, cfg.noise)]
    if any(family != "fixed" for family in drawn):
        raise SystemExit(
            f"robustness is not supported yet for {name!r}: its GP prior draws hyperparameters "
            f"({drawn}), so the exact reference is not one fixed GP; use a checkpoint whose "
            "GP prior fixes them, like gp-rbf"
        )
    scales = {"outputscale": cfg.outputscale.a, "noise": cfg.noise.a, "kernel": cfg.kernel}
    return prior, GPHyperparameters(lengthscale=[h.a for h in cfg.lengthscale], **scales)


def cmd_robustness(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from pfnkit.checkpoint import load_checkpoint
    from pfnkit.robustness.pgd import AttackConfig
    from pfnkit.robustness.report import plot_attacked_task, robustness_report

    ckpt = load_checkpoint(args.checkpoint)
    eps = [float(e) for e in args.eps.split(",")]
    config = AttackConfig(norm=args.norm, steps=args.steps, restarts=args.restarts)
    if ckpt.card["model_kind"] == "dt":
        return _robustness_dt(ckpt, eps, config, args)
    prior, hyper = _fixed_gp_hyperparameters(ckpt.card, ckpt.name)
    generator = torch.Generator().manual_seed(args.seed)
    batch = prior.sample(args.tasks, args.n_ctx, args.n_qry, generator=generator)
    report = robustness_report(
        ckpt.model, batch, hyper, eps=eps, target=args.target, config=config,
        generator=generator, checkpoint=ckpt.name, progress=not args.no_progress,
    )  # fmt: skip
    report.print_table()
    if args.json:
        report.write_json(args.json)
    if args.plots and prior.config.num_features == 1 and max(eps) > 0:
        worst = report.results[-1].model_kl
        task = max(range(len(worst)), key=worst.__getitem__)
        path = plot_attacked_task(
            ckpt.model, batch.task(task), hyper,
            Path(args.plots) / f"attack_{args.target}_{args.norm}.png", eps=max(eps),
            target=args.target, config=config, generator=generator,
            x_range=(prior.config.x_low, prior.config.x_high),
        )  # fmt: skip
        print(f"wrote {path} (task {task}, the model's worst at eps={max(eps):g})")
    elif args.plots:
        print("attack plots need a 1-D prior and some eps > 0; skipped")
    return 0


def _robustness_dt(ckpt: Any, eps: list[float], config: Any, args: argparse.Namespace) -> int:
    """Attack a Distribution Transformer's observations and the exact conjugate posterior."""
    import torch

    import priors
    from pfnkit.reference import conjugate_gmm_posterior
    from pfnkit.robustness.report import plot_attacked_posterior, posterior_robustness_report

    prior = priors.make_prior(ckpt.card["prior_name"], ckpt.card["prior_config"])
    if prior.config.simulator != "gaussian":
        raise SystemExit(
            f"robustness of {ckpt.name!r} needs a differentiable exact posterior; only the "
            "conjugate Gaussian simulator has one (NUTS is too costly inside an attack)"
        )
    generator = torch.Generator().manual_seed(args.seed)
    batch = prior.sample(args.tasks, args.n_ctx, 0, generator=generator).to(torch.float64)
    m = batch.meta
    parts = (m["prior_logits"], m["prior_means"], m["prior_scale_tril"])
    model = ckpt.model.double().eval()
    obs_cov = torch.tensor(prior.config.obs_cov, dtype=torch.float64)

    def fns(sl: slice) -> tuple[Any, Any]:
        p = tuple(t[sl] for t in parts)
        return (lambda obs: model(*p, obs)), (lambda obs: conjugate_gmm_posterior(*p, obs, obs_cov))

    report = posterior_robustness_report(
        *fns(slice(None)), batch.x_ctx, eps=eps, config=config, generator=generator,
        checkpoint=ckpt.name, progress=not args.no_progress,
    )  # fmt: skip
    report.print_table()
    if args.json:
        report.write_json(args.json)
    if args.plots and max(eps) > 0:
        worst = report.results[-1].model_kl
        task = max(range(len(worst)), key=worst.__getitem__)
        one = slice(task, task + 1)
        path = plot_attacked_posterior(
            fns(one), batch.x_ctx[one], Path(args.plots) / "attack_observations.png",
            eps=max(eps), config=config, generator=generator, title=ckpt.name,
        )  # fmt: skip
        print(f"wrote {path} (task {task}, the model's worst at eps={max(eps):g})")
    return 0


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
    scale = p.add_argument_group(
        "distributed training (each overrides train.* from --config and --set)"
    )
    scale.add_argument("--accelerator", help='Lightning accelerator: "cpu", "gpu" or "auto"')
    scale.add_argument("--devices", type=int, help="processes (devices) per node")
    scale.add_argument("--num-nodes", type=int, help="machines taking part")
    scale.add_argument("--strategy", help='Lightning strategy, e.g. "ddp" (default "auto")')
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
        choices=["exact", "nuts"],
        help="oracle: exact = the gpytorch GP at the task's true hyperparameters, or the "
        "closed-form posterior of a conjugate Distribution Transformer; nuts = pyro NUTS "
        "(non-conjugate Distribution Transformers; for a GP prior with hyperpriors, the GP "
        "with its hyperparameters integrated out, next to ML-II). Default: nuts for a GP "
        "prior with hyperpriors, exact otherwise",
    )
    p.add_argument(
        "--tasks",
        type=int,
        help="fresh prior tasks per context size (per context size and d with a GP "
        "hyperprior); default 256, or 64 against NUTS on a GP hyperprior",
    )
    p.add_argument(
        "--sizes",
        help="comma-separated context (or observation) sizes; default 1,3,10,30,100 for "
        "a GP checkpoint against the exact GP, 2,5,10,20,50,100 against NUTS, 0,2,5,10,20 "
        "for a Distribution Transformer",
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

    p = sub.add_parser("robustness", help="attack a checkpoint and exact inference on its tasks")
    p.add_argument("--checkpoint", default="gp-rbf", help="short name or checkpoint path")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.handler(args, argv)


if __name__ == "__main__":
    sys.exit(main())
