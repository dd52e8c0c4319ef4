"""The report contract: one passed rule, ungated checks, JSON round trip."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pfnkit.report import Check, Report


class _Toy(Report):
    def __init__(self, checks: list[Check]) -> None:
        self._checks = checks

    def checks(self) -> list[Check]:
        return self._checks

    def figures(self) -> dict[str, Any]:
        return {"n": len(self._checks)}


@pytest.mark.parametrize(
    ("check", "passed"),
    [
        (Check("gap", 0.1, 0.2), True),
        (Check("gap", 0.3, 0.2), False),
        (Check("gap", 0.2, 0.2), True),
        (Check("gap", 5.0, None), True),  # not gated
        (Check("gap", None, 0.2), False),  # not measured
        (Check("gap", math.nan, 0.2), False),
        (Check("coverage", 0.9, 0.85, bound="lower"), True),
        (Check("coverage", 0.8, 0.85, bound="lower"), False),
        (Check("gap", None, None), True),
    ],
)
def test_one_rule_for_passed(check: Check, passed: bool) -> None:
    assert check.passed is passed
    assert _Toy([check]).passed is passed


def test_a_report_passes_only_when_all_gated_checks_pass(tmp_path) -> None:
    report = _Toy([Check("a", 1.0, 2.0), Check("b", 9.0), Check("c", 3.0, 2.0)])
    assert not report.passed
    data = json.loads(report.write_json(tmp_path / "sub" / "r.json").read_text())
    assert data["n"] == 3 and data["passed"] is False
    assert data["tolerances"] == {"a": 2.0, "c": 2.0}
    assert [c["passed"] for c in data["checks"]] == [True, True, False]


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="bound"):
        Check("a", 1.0, 2.0, bound="both")  # type: ignore[arg-type]
