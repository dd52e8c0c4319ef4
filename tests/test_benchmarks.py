"""Benchmarks run end to end at smoke size (their figures are printed, never asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_inference_benchmark_smoke(tiny_checkpoint: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "bench_inference", ROOT / "benchmarks/inference.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    assert module.main(["--smoke", "--checkpoint", str(tiny_checkpoint), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"latency", "points", "exponents"} <= set(report)
    assert report["points"], "the growth sweeps measured nothing"
