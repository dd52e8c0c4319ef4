"""What users install: the wheel's contents, the command, and a fresh environment built from it.

The fast tests build the wheel (`pip wheel --no-deps`, seconds) from a copy of the tree and
read it as a zip. The slow test installs it with its dependencies into a new virtual
environment outside the source tree and checks that it predicts what the checkout predicts.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from email.parser import Parser
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from pfnkit import checkpoint as checkpoint_module
from pfnkit.__main__ import run
from pfnkit._version import __version__
from tests.conftest import FLOAT32_ATOL

ROOT = Path(__file__).resolve().parents[1]
# what `pip wheel` reads: the project table, its readme and licence, and the mapped folders
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "cli.py",
    "pfnkit",
    "priors",
    "checkpoints",
)
PACKAGES = ("pfnkit", "priors")
MAX_WHEEL_BYTES = 50_000_000  # the budget for a wheel that carries the checkpoints
TORCH_PIN = "torch==2.13.0"  # the local CPU wheel; unpinned, pip would fetch a CUDA build
PIP_TIMEOUT_S = 900
SUBCOMMANDS = ("pretrain", "predict", "validate", "robustness")


class Built(NamedTuple):
    wheel: Path
    source: Path  # the copy of the tree the wheel was built from


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel, built from a copy so that the build leaves nothing in the source tree."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "--quiet", "-w", str(dist), str(source)], check=True)
    (wheel,) = dist.glob("pfnkit-*.whl")
    return Built(wheel, source)


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def _read(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name)


def test_wheel_ships_every_module_of_the_tree(built: Built) -> None:
    shipped = {n for n in _names(built.wheel) if n.endswith(".py")}
    for package in PACKAGES:
        in_tree = {
            p.relative_to(built.source).as_posix() for p in (built.source / package).rglob("*.py")
        }
        missing = in_tree - shipped
        assert not missing, f"add their packages to [tool.setuptools] packages: {sorted(missing)}"
    # the command line ships as _pfnkit_cli.cli, byte for byte the top-level cli.py, alone
    assert {n for n in shipped if n.startswith("_pfnkit_cli/")} == {"_pfnkit_cli/cli.py"}
    assert _read(built.wheel, "_pfnkit_cli/cli.py") == (built.source / "cli.py").read_bytes()


def test_wheel_ships_the_checkpoints_of_the_manifest(built: Built) -> None:
    names = _names(built.wheel)
    manifest = json.loads((built.source / "checkpoints" / "manifest.json").read_text())
    assert manifest and "pfnkit/_checkpoints/manifest.json" in names
    for name, entry in manifest.items():
        assert f"pfnkit/_checkpoints/{entry['card']}" in names, name
        weights = _read(built.wheel, f"pfnkit/_checkpoints/{entry['weights']}")
        assert hashlib.sha256(weights).hexdigest() == entry["sha256"], name
    assert built.wheel.stat().st_size < MAX_WHEEL_BYTES


def test_wheel_declares_the_command_and_the_project_metadata(built: Built) -> None:
    dist_info = f"pfnkit-{__version__}.dist-info"
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_read(built.wheel, f"{dist_info}/entry_points.txt").decode())
    assert dict(entry_points["console_scripts"]) == {"pfnkit": "pfnkit.__main__:run"}
    metadata = Parser().parsestr(_read(built.wheel, f"{dist_info}/METADATA").decode())
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "MIT"
    assert f"{dist_info}/licenses/LICENSE" in _names(built.wheel)
    assert metadata["Keywords"] and metadata["Requires-Python"]
    assert {url.split(",")[0] for url in metadata.get_all("Project-URL")} >= {"Homepage", "Source"}
    assert any(c.startswith("Topic :: ") for c in metadata.get_all("Classifier"))
    assert any(r.startswith("torch") for r in metadata.get_all("Requires-Dist"))


def test_checkpoint_dir_prefers_the_environment_then_the_checkout_then_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PFNKIT_CHECKPOINTS", str(tmp_path))
    assert checkpoint_module.checkpoint_dir() == tmp_path
    monkeypatch.setenv("PFNKIT_CHECKPOINTS", "")  # empty counts as unset
    assert checkpoint_module.checkpoint_dir() == ROOT / "checkpoints"
    monkeypatch.setattr(checkpoint_module, "_SOURCE_ROOT", tmp_path)  # as in site-packages
    packaged = Path(checkpoint_module.__file__).resolve().parent / "_checkpoints"
    assert checkpoint_module.checkpoint_dir() == packaged


def test_the_command_is_named_pfnkit_and_has_the_cli_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: pfnkit ")
    assert all(name in usage for name in SUBCOMMANDS)


def test_python_dash_m_pfnkit_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pfnkit", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m pfnkit ")
    assert all(name in done.stdout for name in SUBCOMMANDS)


FRONT_ENDS = {"cli", "_pfnkit_cli"}  # the command line, in a checkout and in the wheel


def _imported_roots(nodes: Iterable[ast.AST]) -> set[str]:
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_pfnkit_main_is_the_one_pfnkit_module_that_reaches_the_command_line() -> None:
    """The layering exception: the CLI imports priors, and only pfnkit/__main__.py imports
    it, inside a function, so importing pfnkit (even pfnkit.__main__) never imports priors."""
    trees = {path: ast.parse(path.read_text()) for path in (ROOT / "pfnkit").rglob("*.py")}
    reaching = sorted(
        path.relative_to(ROOT).as_posix()
        for path, tree in trees.items()
        if _imported_roots(ast.walk(tree)) & FRONT_ENDS
    )
    assert reaching == ["pfnkit/__main__.py"]
    assert not _imported_roots(trees[ROOT / "pfnkit" / "__main__.py"].body) & FRONT_ENDS


# ------------------------------------------------------------------ a fresh environment
SNIPPET = """
import json, sys
import numpy as np
import pfnkit
from pfnkit import PFNRegressor
from pfnkit.checkpoint import checkpoint_dir
x = np.linspace(0.0, 2.0, 12)[:, None]
try:
    mean = PFNRegressor().fit(x, np.sin(3.0 * x[:, 0])).predict(x).tolist()
except ValueError as error:
    mean = str(error)
print(json.dumps({"file": pfnkit.__file__, "dir": str(checkpoint_dir()), "mean": mean,
                  "priors": "priors" in sys.modules}))
"""


def _fresh_env() -> dict[str, str]:
    """This process's environment without what would point the venv back at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("PFNKIT_CHECKPOINTS", None)
    env.pop("VIRTUAL_ENV", None)
    return {**env, "OMP_NUM_THREADS": "1"}


def _run(command: list[str | Path], cwd: Path, **env: str) -> str:
    done = subprocess.run(
        [str(word) for word in command],
        cwd=cwd,
        env={**_fresh_env(), **env},
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _write_csvs(folder: Path) -> tuple[Path, Path]:
    x = np.linspace(0.0, 2.0, 12)
    train, test = folder / "train.csv", folder / "test.csv"
    np.savetxt(train, np.column_stack([x, np.sin(3.0 * x)]), delimiter=",", header="x,y",
               comments="")  # fmt: skip
    np.savetxt(test, np.linspace(0.1, 1.9, 5)[:, None], delimiter=",", header="x", comments="")
    return train, test


@pytest.mark.slow
def test_the_installed_wheel_predicts_what_the_checkout_predicts(
    built: Built, tmp_path: Path
) -> None:
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_fresh_env())
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    _run([python, "-m", "pip", "install", "--quiet", TORCH_PIN], work)  # before pfnkit's deps
    _run([python, "-m", "pip", "install", "--quiet", built.wheel], work)

    train, test = _write_csvs(work)
    predict = ["predict", "--train", train, "--test", test]
    _run([bin_dir / "pfnkit", *predict, "--out", work / "installed.csv"], work)
    assert run([str(word) for word in [*predict, "--out", work / "checkout.csv"]]) == 0
    installed = np.loadtxt(work / "installed.csv", delimiter=",", skiprows=1)
    # same weights and inputs in two processes, whose float32 reductions may differ
    np.testing.assert_allclose(
        installed, np.loadtxt(work / "checkout.csv", delimiter=",", skiprows=1), atol=FLOAT32_ATOL
    )
    assert _run([python, "-m", "pfnkit", "--help"], work).startswith("usage: python -m pfnkit")

    result = json.loads(_run([python, "-c", SNIPPET], work))
    assert Path(result["file"]).is_relative_to(venv), "pfnkit came from outside the venv"
    assert Path(result["dir"]).is_relative_to(venv) and Path(result["dir"]).name == "_checkpoints"
    assert not result["priors"], "inference imported priors"
    from pfnkit import PFNRegressor

    x = np.linspace(0.0, 2.0, 12)[:, None]
    expected = PFNRegressor().fit(x, np.sin(3.0 * x[:, 0])).predict(x)
    np.testing.assert_allclose(result["mean"], expected, atol=FLOAT32_ATOL)

    # $PFNKIT_CHECKPOINTS wins over the packaged folder, and the sha256 check still runs
    tampered = shutil.copytree(result["dir"], work / "tampered")
    for path in tampered.glob("*.safetensors"):  # whichever one PFNRegressor() defaults to
        weights = bytearray(path.read_bytes())
        weights[-1] ^= 0xFF
        path.write_bytes(bytes(weights))
    result = json.loads(_run([python, "-c", SNIPPET], work, PFNKIT_CHECKPOINTS=str(tampered)))
    assert result["dir"] == str(tampered)
    assert "sha256" in result["mean"], result["mean"]
