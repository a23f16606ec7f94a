"""The import contracts in pyproject.toml ([tool.importlinter]): they hold for the code, and they
catch a new circle even when it hides in a function-local import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="needs import-linter (dev extra)")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True)


def test_the_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, planted, broken", [
    # the circle this project once hid: faces -> readers -> frames -> faces
    ("faces.py", "from fer_data.datasets import DATASETS", "No import circles"),
    ("images.py", "from fer_data.defs import resources", "Layers"),
])
def test_a_planted_import_breaks_its_contract(tmp_path, module, planted, broken):
    for part in ("fer_data", "stargan", "pyproject.toml"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        copy(REPO / part, tmp_path / part)
    with open(tmp_path / "fer_data" / module, "a") as f:
        f.write(f"\n\ndef _planted():\n    {planted}  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout.split("Broken contracts")[1]
