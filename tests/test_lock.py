"""requirements/*.txt (the lock, from pip-compile) agree with pyproject.toml: every requirement
pyproject names is pinned inside its range, nothing the lock pins for the project itself is
missing from pyproject, and every pin carries hashes. Refresh: the README's "Dependencies"."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
# Which of pyproject's requirement lists each lock file is compiled from.
LOCKS = {"runtime.txt": (), "dev.txt": ("test", "dev")}


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: int
    by_project: bool  # "# via genstore-refund-sink": pyproject names it (dev's test through
    # the project's own [test] extra, hence with or without "(pyproject.toml)")


def pins(lock: str) -> dict[str, Pin]:
    """name -> Pin: one entry is its `name==version \\` line, its hash lines and its `# via`
    comment lines, up to the next entry."""
    text = (ROOT / "requirements" / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#")
                       else text)
    found: dict[str, Pin] = {}
    for entry in entries:
        head = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", entry)
        if head is None:
            continue
        found[canonicalize_name(head[1])] = Pin(
            Version(head[2]), entry.count("--hash=sha256:"),
            re.search(rf"#\s+(via\s+)?{PROJECT}( \(pyproject\.toml\))?$", entry, re.M)
            is not None)
    return found


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's dependencies and those extras, less the project naming itself (dev pulls in
    test that way), and less those whose marker excludes this interpreter."""
    listed = [*PYPROJECT["project"]["dependencies"],
              *(line for extra in extras
                for line in PYPROJECT["project"]["optional-dependencies"][extra])]
    parsed = [Requirement(line) for line in listed]
    return [r for r in parsed if canonicalize_name(r.name) != PROJECT
            and (r.marker is None or r.marker.evaluate())]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pyproject_requirement_is_pinned_inside_its_range(lock: str) -> None:
    locked = pins(lock)
    for requirement in requirements(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml, not in requirements/{lock}"
        version = locked[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} pins {name}=={version}, outside pyproject's "
            f"{requirement.specifier}")


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_nothing_pinned_for_the_project_is_missing_from_pyproject(lock: str) -> None:
    named = {canonicalize_name(r.name) for r in requirements(LOCKS[lock])}
    top_level = {name for name, pin in pins(lock).items() if pin.by_project}
    assert top_level, f"requirements/{lock} names no pin 'via' {PROJECT}: not pip-compile's?"
    assert top_level <= named, f"pinned, not in pyproject.toml: {sorted(top_level - named)}"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_has_hashes_and_the_lock_names_no_index(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    assert all(pin.hashes for pin in pins(lock).values())
    assert not re.search(r"^\s*-(-index-url|-extra-index-url|-find-links|i|f)\b", text, re.M)
    assert "://" not in text


def test_runtime_pins_are_the_dev_lock_s_own() -> None:
    """The image and the tests run the same versions of everything they share."""
    runtime, dev = pins("runtime.txt"), pins("dev.txt")
    differ = {name: (pin.version, dev[name].version) for name, pin in runtime.items()
              if name in dev and dev[name].version != pin.version}
    assert set(runtime) <= set(dev) and not differ, differ
