"""The validator registry: `ValidationOptions`, the `Validator` protocol and `VALIDATORS`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.table import Table

    from pfnkit.checkpoint import Checkpoint
    from pfnkit.report import Report

__all__ = ["VALIDATORS", "ValidationOptions", "Validator", "register_validator"]


@dataclass(frozen=True, kw_only=True)
class ValidationOptions:
    """Run settings shared by every validator; None means "the validator's default".

    Each validator declares its defaults as a `ValidationOptions` of its own
    (`Validator.defaults`); `with_defaults` fills the None fields from them.

    Attributes:
        tasks: fresh prior tasks per cell.
        sizes: context (or observation) sizes.
        dims: numbers of used features (GP hyperprior against NUTS).
        n_qry: query points per task.
        seed: seed of the validation tasks.
        nuts_warmup: NUTS warmup steps per chain.
        nuts_samples: NUTS kept draws per chain.
        nuts_tasks: tasks per cell that also get a NUTS run.
        workers: processes scoring tasks against NUTS in parallel.
        curve_tasks: tasks on the NLL-vs-time curve (BNN).
        progress: show a rich progress bar.
    """

    tasks: int | None = None
    sizes: tuple[int, ...] | None = None
    dims: tuple[int, ...] | None = None
    n_qry: int = 100
    seed: int = 12345
    nuts_warmup: int | None = None
    nuts_samples: int | None = None
    nuts_tasks: int | None = None
    workers: int = 1
    curve_tasks: int = 4
    progress: bool = False

    def with_defaults(self, defaults: ValidationOptions) -> ValidationOptions:
        """These options, with every field that is None taken from `defaults`."""
        fill = {
            field.name: getattr(defaults, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is None
        }
        return dataclasses.replace(self, **fill)


class Validator(Protocol):
    """Compares a checkpoint with one oracle on fresh tasks of the checkpoint's prior."""

    name: str
    defaults: ValidationOptions  # fills the options a caller leaves None (tasks, sizes, ...)

    def run(self, checkpoint: Checkpoint, prior: Any, options: ValidationOptions) -> Report:
        """Draw tasks from `prior`, score the model and the oracle, return the report.

        Options left None take the validator's `defaults` (``options.with_defaults``).

        Raises:
            ValueError: the checkpoint or its prior is not one this validator applies to.
        """
        ...

    def tables(self, report: Report) -> list[Table]:
        """The report as rich tables (the library never prints)."""
        ...

    def plots(
        self, checkpoint: Checkpoint, prior: Any, report: Report, out_dir: Path
    ) -> list[Path]:
        """Write the report's figures to `out_dir`; returns the paths written."""
        ...


VALIDATORS: dict[str, Validator] = {}


def register_validator(validator: Validator) -> Validator:
    """Add `validator` to `VALIDATORS` under its name (a name is registered once)."""
    if not isinstance(getattr(validator, "defaults", None), ValidationOptions):
        raise TypeError(
            f"validator {validator.name!r} needs a `defaults: ValidationOptions` attribute "
            "(its default tasks, sizes, ... for the options a caller leaves None)"
        )
    if validator.name in VALIDATORS:
        raise ValueError(f"a validator named {validator.name!r} is already registered")
    VALIDATORS[validator.name] = validator
    return validator
