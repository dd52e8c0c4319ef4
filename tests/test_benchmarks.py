"""Benchmarks run end to end at smoke size (their figures are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_inference_benchmark_smoke(tiny_checkpoint: Path, tmp_path: Path) -> None:
    # A fresh interpreter: the benchmark forks one process per measurement, which is only
    # safe before any tensor work has started thread pools (pytest's process has).
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks/inference.py"), "--smoke",
               "--checkpoint", str(tiny_checkpoint), "--json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    report = json.loads(out.read_text())
    assert {"latency", "points", "exponents"} <= set(report)
    assert report["points"], "the growth sweeps measured nothing"
