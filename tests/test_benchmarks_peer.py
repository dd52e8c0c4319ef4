"""benchmarks/peer_pfns.py at smoke size: both methods' figures, their ratios, one prior stream,
and --report, which re-prints a finished run's JSON."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import priors
from pfnkit.training import PriorStream, TrainConfig
from tests.conftest import FLOAT64_ATOL
from tests.helpers import load_script

pytest.importorskip("pfns")  # the `bench` extra, which CI installs

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("pfnkit", "pfns")
LOGGED_BATCHES = 4  # the benchmark logs a digest of each trainer's first 4 batches
# each speed ratio: pfns's forward time over the time of this pfnkit call (the first: the target)
SPEED_CALLS = {"speed": "PFNRegressor.predict", "speed_forward": "pfnkit forward",
               "speed_fit_predict": "PFNRegressor.fit + predict"}  # fmt: skip


def _digest(*tensors: torch.Tensor) -> str:
    """sha256 (16 hex digits) of the tensors' bytes, written here apart from the benchmark's."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("peer")
    out = folder / "peer.json"
    command = [sys.executable, str(ROOT / "benchmarks/peer_pfns.py"), "--smoke", "--json",
               str(out), "--config", str(ROOT / "examples/configs/gp_rbf.toml")]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True, cwd=folder)
    assert [p.name for p in folder.iterdir()] == [out.name], "the benchmark left files behind"
    return json.loads(out.read_text())


def test_both_methods_are_trained_scored_and_timed(report: dict) -> None:
    for method in METHODS:
        assert report["training"][method]["optimizer_steps"] > 0
        assert math.isfinite(report["scores"]["mean_gap"][method])
    for row in report["scores"]["sizes"]:
        assert math.isfinite(row["exact_nll"])
        for method in METHODS:
            assert math.isfinite(row[method]["nll"]) and math.isfinite(row[method]["gap"])
            # the same fresh tasks: the exact GP scores the same for both methods' runs
            assert row[method]["exact_nll"] == row["exact_nll"]
    seconds = report["inference"]["seconds"]
    assert set(seconds) >= {"pfns forward", "pfnkit forward", "PFNRegressor.predict"}
    assert all(0 < s < math.inf for s in seconds.values())


def test_ratios_come_from_the_figures(report: dict) -> None:
    gap, seconds = report["scores"]["mean_gap"], report["inference"]["seconds"]
    sizes = report["scores"]["sizes"]
    for method in METHODS:  # the mean gap is the mean of the per-size gaps
        mean = sum(row[method]["gap"] for row in sizes) / len(sizes)
        assert gap[method] == pytest.approx(mean, abs=FLOAT64_ATOL)
    assert gap["pfns"] > 0  # an untrained-ish smoke model is far from the exact GP
    expected = gap["pfnkit"] / gap["pfns"]
    assert report["ratios"]["nll_gap"] == pytest.approx(expected, abs=FLOAT64_ATOL)
    for key, call in SPEED_CALLS.items():
        speed = seconds["pfns forward"] / seconds[call]
        assert report["ratios"][key] == pytest.approx(speed, abs=FLOAT64_ATOL), key
    assert set(report["ratio_labels"]) == set(report["ratios"]) == {"nll_gap", *SPEED_CALLS}
    assert "cached-context predict" in report["ratio_labels"]["speed"]


def test_report_reprints_a_run_and_fills_in_the_ratios_an_older_run_lacks(
    report: dict, tmp_path: Path, capsys
) -> None:
    """--report trains nothing; on a JSON from before the like-for-like ratios (the oracle:
    the same run's full JSON) it prints the same text and writes the same ratios."""
    peer = load_script(ROOT / "benchmarks/peer_pfns.py", "peer_pfns_report")
    full, old, filled = (tmp_path / name for name in ("full.json", "old.json", "filled.json"))
    full.write_text(json.dumps(report))
    ratios = {key: report["ratios"][key] for key in ("nll_gap", "speed")}
    older = {key: value for key, value in report.items() if key != "ratio_labels"}
    old.write_text(json.dumps({**older, "ratios": ratios}))
    assert peer.main(["--report", str(full)]) == 0
    printed_full = capsys.readouterr().out
    assert peer.main(["--report", str(old), "--json", str(filled)]) == 0
    printed_old = capsys.readouterr().out
    assert printed_old == printed_full
    assert "training each method" not in printed_full
    assert "cached-context predict" in printed_full and "like for like" in printed_full
    for key in SPEED_CALLS:
        assert f"{report['ratios'][key]:.2f}x" in printed_full, key
    written = json.loads(filled.read_text())
    for key, value in report["ratios"].items():
        assert written["ratios"][key] == pytest.approx(value, abs=FLOAT64_ATOL), key
    assert written["ratio_labels"] == report["ratio_labels"]


def test_both_trainers_read_the_same_prior_stream(report: dict) -> None:
    pfnkit, pfns = report["training"]["pfnkit"], report["training"]["pfns"]
    assert len(pfnkit["digests"]) == LOGGED_BATCHES
    assert pfns["digests"] == pfnkit["digests"]  # the bar-border draw, then training batches
    assert pfns["shapes"] == pfnkit["shapes"]
    # the first training batch is the first batch of pfnkit's PriorStream on the config's prior
    config = report["config"]
    prior = priors.make_prior("gp", config["prior"])
    first = next(iter(PriorStream(prior, TrainConfig.from_dict(config["train"]))))
    assert pfnkit["digests"][1] == _digest(first.x_ctx, first.y_ctx, first.x_qry, first.y_qry)
    assert pfnkit["shapes"][1] == [first.batch_size, first.n_ctx, first.n_qry]
