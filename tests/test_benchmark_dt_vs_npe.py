"""The DT-vs-NPE prior-change benchmark runs end to end at smoke size (figures never asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from pfnkit.checkpoint import save_checkpoint
from pfnkit.models import DistributionTransformer, DTConfig
from priors.gmm import GMMPriorConfig

ROOT = Path(__file__).resolve().parents[1]
FLOAT64_IDENTITY = 1e-9  # batched forward pass against one posterior() call per dataset


def _tiny_dt_checkpoint(folder: Path) -> Path:
    model = DistributionTransformer(DTConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32))
    return save_checkpoint(
        folder / "dt-tiny",
        model,
        prior_name="gmm",
        prior_config=GMMPriorConfig().to_dict(),
        train_config={"n_ctx_max": 20},
        command="pytest fixture",
    )


def test_dt_vs_npe_benchmark_smoke(tmp_path: Path) -> None:
    card = _tiny_dt_checkpoint(tmp_path)
    out = tmp_path / "dt_vs_npe.json"
    command = [sys.executable, str(ROOT / "benchmarks/dt_vs_npe.py"), "--smoke",
               "--checkpoint", str(card), "--json", str(out)]  # fmt: skip
    # cwd=tmp_path: sbi's default tracker would write ./sbi-logs; the benchmark must not
    subprocess.run(command, check=True, timeout=300, capture_output=True, cwd=tmp_path)
    report = json.loads(out.read_text())
    assert not (tmp_path / "sbi-logs").exists()
    assert report["prior_b_inside_trained_range"]
    assert set(report["nll"]) == {"exact", "dt", "npe_a", "npe_b"}
    for summary in report["nll"].values():
        assert math.isfinite(summary["nll"]["mean"])
    assert report["dt"]["batched_vs_single_max_abs_nll"] < FLOAT64_IDENTITY
    assert {"A", "B"} == set(report["npe"])
    assert {"speed_ratio", "speed_met", "nll_met"} <= set(report["targets"])
