"""Benchmarks run end to end at smoke size (their figures are printed, never asserted)."""

from __future__ import annotations

import json
import shutil
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


def _run_smoke(script: str, out: Path, *options: str) -> dict:
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out),
               *options]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True, cwd=ROOT)
    return json.loads(out.read_text())


def test_scaling_benchmark_smoke(tmp_path: Path) -> None:
    report = _run_smoke("scaling.py", tmp_path / "scaling.json")  # the shipped gp-rbf
    assert {"points", "exponents", "sweeps"} <= set(report)
    for point in report["points"]:
        assert point["pfn"]["peak_mib"] > 0 and point["gp"]["total_s"] > 0
    for slopes in report["exponents"].values():
        assert {"total_s", "gp_s", "pfn_mib"} <= set(slopes)


def test_training_benchmark_smoke(tmp_path: Path) -> None:
    report = _run_smoke("training.py", tmp_path / "training.json",
                        "--config", str(ROOT / "examples/configs/gp_rbf.toml"))  # fmt: skip
    assert report["variants"][0]["name"] == "fp32"
    for variant in report["variants"]:
        assert variant["in_memory_steps_per_s"] > 0 and variant["streaming_steps_per_s"] > 0
        assert variant["streaming_ratio"] > 0


def test_tabular_benchmark_smoke(tmp_path: Path) -> None:
    checkpoint = ROOT / "tests/data/clf-tiny.safetensors"  # 10 features, 4 classes
    out = tmp_path / "tabular.json"
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), "--checkpoint",
               str(checkpoint), "--splits", "1", "--sizes", "30", "--datasets", "iris,moons",
               "--markdown", "--no-progress", "--json", str(out),
               "--plot", str(tmp_path / "tabular.png")]  # fmt: skip
    done = subprocess.run(command, check=True, timeout=300, capture_output=True, text=True)
    assert (tmp_path / "tabular.png").stat().st_size > 0
    assert "| 30 | PFN |" in done.stdout and "target log_loss_vs_logreg" in done.stdout
    report = json.loads(out.read_text())
    assert {r["method"] for r in report["records"]} == {"PFN", "LogReg", "RandomForest", "HistGB"}
    assert {r["dataset"] for r in report["records"]} == {"iris", "moons"}
    for record in report["records"]:
        assert 0 <= record["roc_auc"] <= 1 and record["log_loss"] > 0 and record["seconds"] > 0
    assert set(report["targets"]) == {"roc_auc_vs_random_forest", "log_loss_vs_logreg"}


def test_tabular_benchmark_writes_its_figures_into_the_card(tmp_path: Path) -> None:
    for suffix in (".safetensors", ".json"):
        shutil.copy(ROOT / f"tests/data/clf-tiny{suffix}", tmp_path / f"clf-tiny{suffix}")
    checkpoint = tmp_path / "clf-tiny.safetensors"
    options = ["--checkpoint", str(checkpoint), "--splits", "2", "--sizes", "30",
               "--datasets", "moons", "--no-progress"]  # fmt: skip
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), *options, "--write-card"]
    subprocess.run(command, check=True, timeout=300, capture_output=True, text=True)
    validation = json.loads((tmp_path / "clf-tiny.json").read_text())["validation"]
    assert validation["command"] == " ".join(["python", "benchmarks/tabular.py", *options,
                                              "--write-card"])  # fmt: skip
    assert validation["config"]["splits"] == 2 and validation["config"]["sizes"] == "30"
    cells = {(r["dataset"], r["n_train"], r["method"]) for r in validation["per_dataset"]}
    assert cells == {("moons", 30, m) for m in ("PFN", "LogReg", "RandomForest", "HistGB")}
    targets = validation["targets"]
    assert validation["passed"] == all(t["met"] for t in targets.values())
    overall = validation["summary"]["all"]
    assert targets["log_loss_vs_logreg"]["baseline"] == overall["LogReg"]["log_loss"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "clf-tiny" in json.dumps(manifest)
    from pfnkit.checkpoint import load_checkpoint

    load_checkpoint(checkpoint)  # the weights still match the card's sha256


def test_tabular_benchmark_refuses_to_write_smoke_figures_into_a_card() -> None:
    command = [sys.executable, str(ROOT / "benchmarks/tabular.py"), "--smoke", "--write-card"]
    done = subprocess.run(command, timeout=300, capture_output=True, text=True)
    assert done.returncode == 2 and "drop --smoke" in done.stderr
