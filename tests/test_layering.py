"""The dependency rule: priors import only pfnkit.data; pfnkit never imports priors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pfnkit_never_imports_priors() -> None:
    for path in (ROOT / "pfnkit").rglob("*.py"):
        offending = {m for m in _imported_modules(path) if m.split(".")[0] == "priors"}
        assert not offending, f"{path} imports {offending}"


def test_priors_import_only_the_data_contract_from_pfnkit() -> None:
    for path in (ROOT / "priors").rglob("*.py"):
        pfnkit_imports = {m for m in _imported_modules(path) if m.split(".")[0] == "pfnkit"}
        assert pfnkit_imports <= {"pfnkit.data"}, f"{path} imports {pfnkit_imports}"


def test_loading_and_inference_never_import_priors_or_the_training_stack() -> None:
    code = (
        "import sys, pfnkit, pfnkit.estimators, pfnkit.checkpoint, pfnkit.validation.gp_exact;"
        "assert 'priors' not in sys.modules, 'priors was imported';"
        "assert 'lightning' not in sys.modules, 'lightning was imported for inference';"
        "from pfnkit import pretrain, TrainConfig"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT / "tests")
