"""The work of `python cli.py optimize`: minimise a function named `module:function` on a box.

cli.py parses the `optimize` subcommand's options and calls `optimize_command`: it loads
the function (`load_objective`), reads the bounds (`parse_bounds`), runs
`pfnkit.bo.minimize`, writes the history as JSON when asked (`result_to_dict`), and returns
a table of the improvements (`result_table`) for the command line to print. Every mistake
of the user's is a ValueError that says what to fix; cli.py turns it into the exit.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from pfnkit.bo.ask_tell import OptimizeResult
from pfnkit.bo.box import Box
from pfnkit.bo.minimize import minimize
from pfnkit.bo.surrogate import DEFAULT_CHECKPOINT

__all__ = [
    "load_objective",
    "optimize_command",
    "parse_bounds",
    "result_table",
    "result_to_dict",
]

_SPEC_EXAMPLE = "e.g. mypackage.objectives:branin or path/to/objective.py:branin"


def _import_module(name: str) -> Any:
    """A module by dotted name (the working directory searched first) or a .py file path."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"no file {name!r}")
        # a name of its own, so that no module of sys.path is shadowed
        spec = importlib.util.spec_from_file_location(f"_pfnkit_objective_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses of the file look their module up there
        try:
            spec.loader.exec_module(module)
        except ModuleNotFoundError as error:
            del sys.modules[spec.name]
            raise _missing_dependency(name, error) from error
        return module
    added = "" not in sys.path and str(Path.cwd()) not in sys.path
    if added:  # as `python -m` does, so that a module beside the user is found
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        parts = name.split(".")
        if error.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise _missing_dependency(name, error) from error  # not `name` or its packages
        raise ValueError(
            f"cannot import {name!r} ({error}); run from the folder that holds it, or add that "
            "folder to PYTHONPATH"
        ) from None
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))


def _missing_dependency(name: str, error: ModuleNotFoundError) -> ValueError:
    """The error for a module that was found but imports one that is not: names the latter."""
    return ValueError(
        f"{name!r} was found, but importing it failed ({error}): a module it imports is not "
        "installed; install that, or run in the environment that has it"
    )


def load_objective(spec: str) -> Callable[[np.ndarray], float]:
    """The callable named by `spec`: ``module:function`` or ``path/to/file.py:function``.

    The attribute may be dotted (``module:Class.method``). The callable receives a (d,)
    float64 array and returns one number.

    Raises:
        ValueError: no colon, a module or file that cannot be imported, a missing
            attribute, or one that is not callable.
    """
    module_name, colon, attribute = spec.rpartition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(
            f"the function must be given as module:function, got {spec!r}; {_SPEC_EXAMPLE}"
        )
    target: Any = _import_module(module_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec!r} is a {type(target).__name__}, not a function")
    return target


def parse_bounds(text: str) -> np.ndarray:
    """``"low,high;low,high;..."`` (one pair per dimension) as a (d, 2) array.

    Raises:
        ValueError: a pair without exactly two numbers, or bounds that `Box` refuses
            (inverted, infinite).
    """
    pairs = [pair.strip() for pair in text.strip().strip(";").split(";")]
    rows = []
    for i, pair in enumerate(pairs):
        words = [word.strip() for word in pair.split(",")]
        try:
            if len(words) != 2:
                raise ValueError
            rows.append([float(words[0]), float(words[1])])
        except ValueError:
            raise ValueError(
                f"bounds pair {i} is {pair!r}; write one low,high pair per dimension, the "
                'pairs separated by ";", e.g. --bounds="-5,10;0,15"'
            ) from None
    box = Box.from_bounds(rows)
    return np.stack([box.low, box.high], axis=1)


def result_to_dict(result: OptimizeResult, **settings: Any) -> dict[str, Any]:
    """The history and the best point as plain data, with the run's settings."""
    return {
        **settings,
        "n_evals": result.n_evals,
        "x_best": result.x_best.tolist(),
        "y_best": result.y_best,
        "xs": result.xs.tolist(),
        "ys": result.ys.tolist(),
        "ask_seconds": result.ask_seconds.tolist(),
    }


def result_table(result: OptimizeResult, title: str) -> Table:
    """One row per evaluation that improved on the best so far: its index, x and f(x)."""
    table = Table(title=title)
    table.add_column("evaluation", justify="right")
    for i in range(result.xs.shape[1]):
        table.add_column(f"x{i + 1}", justify="right")
    table.add_column("f(x)", justify="right")
    best = np.inf
    for i, (x, y) in enumerate(zip(result.xs, result.ys, strict=True)):
        if y < best:
            best = y
            table.add_row(str(i + 1), *(f"{v:.6g}" for v in x), f"{y:.6g}")
    return table


def optimize_command(
    function: str,
    bounds: str,
    n_evals: int,
    *,
    n_init: int | None = None,
    acquisition: str = "ei",
    checkpoint: str | None = None,
    seed: int = 0,
    json_path: str | Path | None = None,
    progress: bool = False,
    trust_region: bool = True,
) -> Table:
    """Minimise the function named `function` over `bounds` with `minimize`; the table.

    Args:
        function: ``module:function`` or ``path/to/file.py:function`` (`load_objective`).
        bounds: ``"low,high;low,high"``, one pair per dimension (`parse_bounds`).
        n_evals: evaluations of the function, the initial design included.
        n_init: initial-design size; `default_n_init(d)` when None.
        acquisition: "ei", "log_ei", "pi" or "lcb".
        checkpoint: the surrogate; `DEFAULT_CHECKPOINT` when None.
        seed: the same seed gives the same points.
        json_path: where to write the history and the best point (`result_to_dict`).
        progress: show a rich progress bar (evaluations done, best value so far).
        trust_region: read and search a TuRBO trust region (`minimize`); False: global.

    Returns:
        The improvements, titled with the best value found.

    Raises:
        ValueError: a bad function name, bounds, budget or acquisition, or a value of
            the function that is not a finite number (`EvaluationError`).
    """
    objective = load_objective(function)
    box = parse_bounds(bounds)
    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    result = minimize(
        objective,
        box,
        n_evals,
        n_init=n_init,
        acquisition=acquisition,
        checkpoint=checkpoint,
        seed=seed,
        progress=progress,
        trust_region=trust_region,
    )
    settings = {
        "function": function,
        "bounds": box.tolist(),
        "acquisition": acquisition,
        "checkpoint": str(checkpoint),
        "seed": seed,
        "trust_region": trust_region,
    }
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result_to_dict(result, **settings), indent=1))
    title = (
        f"{function}: minimum {result.y_best:.6g} after {result.n_evals} evaluations "
        f"({checkpoint}, {acquisition}, seed {seed}); the improvements"
    )
    return result_table(result, title)
