"""The report contract: named checks (figure, tolerance), one `passed` rule, to_dict, write_json.

Every validation, robustness and benchmark report derives from `Report`. A report lists its
gated figures as `Check`s; a check without a tolerance is shown but not gated, so one rule
decides `passed` for every report: all gated checks pass.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Check", "Report"]


@dataclass(frozen=True)
class Check:
    """One named figure and its tolerance.

    Attributes:
        name: the figure's name, as the card's `tolerances` key (e.g. "nll_gap_mean").
        value: the measured figure; None when it could not be measured.
        tolerance: the bound it is gated on; None means "not gated".
        bound: "upper" (value <= tolerance passes) or "lower" (value >= tolerance passes).
    """

    name: str
    value: float | None
    tolerance: float | None = None
    bound: Literal["upper", "lower"] = "upper"

    def __post_init__(self) -> None:
        if self.bound not in ("upper", "lower"):
            raise ValueError(f"bound must be 'upper' or 'lower', got {self.bound!r}")

    @property
    def gated(self) -> bool:
        return self.tolerance is not None

    @property
    def passed(self) -> bool:
        """Not gated, or measured, finite and on the right side of the tolerance."""
        if self.tolerance is None:
            return True
        if self.value is None or not math.isfinite(self.value):
            return False
        if self.bound == "upper":
            return self.value <= self.tolerance
        return self.value >= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "tolerance": self.tolerance,
            "bound": self.bound,
            "passed": self.passed,
        }


class Report(ABC):
    """A report: its figures, its named checks, one `passed` rule, JSON out."""

    @abstractmethod
    def checks(self) -> list[Check]:
        """The named figures this report is judged on (ungated ones included)."""

    @abstractmethod
    def figures(self) -> dict[str, Any]:
        """Plain-data figures (JSON-serialisable), without checks and verdict."""

    @property
    def passed(self) -> bool:
        """True when every gated check passes (a report without gated checks passes)."""
        return all(check.passed for check in self.checks())

    def to_dict(self) -> dict[str, Any]:
        """`figures()` plus the checks, the tolerances they used and the verdict."""
        checks = self.checks()
        return {
            **self.figures(),
            "tolerances": {c.name: c.tolerance for c in checks if c.gated},
            "checks": [c.to_dict() for c in checks],
            "passed": self.passed,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write `to_dict()` as indented JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path
