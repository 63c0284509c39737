"""The README's two commands are the ones CI and the tests run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## The two commands")[1]
    return re.findall(r"```sh\n(.+?)\n```", section.split("\n## ")[0])


def test_readme_has_exactly_a_run_and_a_test_command() -> None:
    run, test = commands()
    assert run.endswith(".venv/bin/refund-sink run")
    assert test.endswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command() -> None:
    _, test = commands()
    assert test in ROOT.joinpath(".ci/run").read_text()


def test_the_quick_start_example_is_genstores_own() -> None:
    example = ROOT / "examples" / "genstore-refund-event.json"
    readme = (ROOT / "README.md").read_text()
    assert "refund-sink send examples/genstore-refund-event.json" in readme
    assert '"sku": "128G;白色;"' in example.read_text(encoding="utf-8")
