"""The lock files pin every dependency pyproject.toml declares, with hashes.

`make install` installs exactly a lock (``uv pip sync --require-hashes``), so a dependency
added to pyproject.toml but not to the locks would be missing from a fresh install, and one
whose range moved would install a version pyproject.toml forbids.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: lock file → the extras it installs (requirements/compile.sh).
LOCKS = {
    "cpu.lock": ["cpu", "train", "eval", "dev"],
    "gpu.lock": ["gpu", "train", "eval", "dev"],
    "worker-cpu.lock": ["cpu"],
    "worker-gpu.lock": ["gpu"],
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def pins(lock: Path) -> dict[str, tuple[str, bool]]:
    """name → (version, has a hash) for every pin of a lock file."""
    out: dict[str, tuple[str, bool]] = {}
    name = None
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            out[name] = (match.group(2), "--hash=sha256:" in line)
        elif name and "--hash=sha256:" in line:
            out[name] = (out[name][0], True)
    return out


def declared(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_every_declared_dependency_within_its_range(lock: str) -> None:
    pinned = pins(ROOT / "requirements" / lock)
    for req in declared(LOCKS[lock]):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is declared but not in {lock}: run `make lock`"
        version = pinned[name][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"{lock} pins {req.name}=={version}, outside {req.specifier}: run `make lock`"
        )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_of_the_lock_carries_a_hash(lock: str) -> None:
    pinned = pins(ROOT / "requirements" / lock)
    assert pinned, f"{lock} pins nothing"
    unhashed = sorted(name for name, (_, hashed) in pinned.items() if not hashed)
    assert not unhashed, f"{lock} has pins without hashes: {unhashed}"


def test_every_declared_dependency_has_an_upper_bound() -> None:
    """A new major release cannot reach a fresh install through `make lock` unseen."""
    unbounded = [
        str(req)
        for req in declared(["cpu", "gpu", "train", "eval", "dev"])
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier)
    ]
    assert not unbounded, f"declared without an upper bound: {unbounded}"
