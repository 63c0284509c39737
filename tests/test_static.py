"""ruff and mypy over the packages, and the import boundaries between them, as part of the suite
so CI holds the code to them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def top_level_imports(package: str) -> dict[str, set[str]]:
    """Each module of a package: the top-level packages it imports, inside functions too."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("ingest", {"worker"}),
    ("broker", {"ingest", "worker"}),
])
def test_publishing_side_does_not_reach_into_the_worker(package: str, forbidden: set[str]) -> None:
    reaching = {module: sorted(names & forbidden)
                for module, names in top_level_imports(package).items() if names & forbidden}
    assert reaching == {}
