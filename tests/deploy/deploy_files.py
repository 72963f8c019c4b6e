"""Readers of the files under deploy/ shared by the deploy tests: YAML documents, the
instructions of a Dockerfile, the build context a ``.dockerignore`` leaves, the health
check module. Plain parsing only; what is checked lives in the tests."""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile.*"))


def lock_names(lock: str) -> set[str]:
    """Canonical names of the packages ``requirements/<lock>`` pins."""
    return {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "requirements" / lock).read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``FROM``, ``COPY`` ... and its argument text."""

    keyword: str
    args: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """The instructions of ``dockerfile``, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            logical.append(pending)
            pending = ""
    out = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def image_env(dockerfile: Path) -> dict[str, str]:
    """The ``ENV`` of the final stage (``KEY=value`` pairs)."""
    env: dict[str, str] = {}
    for ins in instructions(dockerfile):
        if ins.keyword == "FROM":
            env = {}
        elif ins.keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(ins.args))  # type: ignore[misc]
    return env


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths the ``COPY`` instructions read (not ``COPY --from`` a stage)."""
    sources = []
    for ins in instructions(dockerfile):
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        *srcs, _dest = shlex.split(ins.args)
        sources.extend(srcs)
    return sources


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus ``**``)."""
    out, i = "", 0
    glob = glob.strip("/")
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out)


def in_build_context(path: str, dockerignore: Path) -> bool:
    """Whether the file or folder ``path`` (relative to the root) is sent to the builder.

    Docker's rules: the last matching line decides, ``!`` re-includes, and a line that
    matches a folder matches everything under it.
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for raw in dockerignore.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _pattern(line.lstrip("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = negate
    return included


def healthcheck() -> ModuleType:
    """deploy/healthcheck.py as a module (it is copied into the images, not installed)."""
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
