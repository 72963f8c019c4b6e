"""Naming, hashing and manifests shared by every data set writer.

A recorded stream ``NAME.msgpack[.zst]`` gets its companions beside it under the same
stem (``NAME.manifest.json``, ``NAME.items.npz``, ...), so one ``ls NAME.*`` shows a data
set and everything known about it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import Progress

_STREAM_SUFFIXES = (".msgpack.zst", ".msgpack")

#: Advance a progress bar by a number of units.
Advance = Callable[[int], None]


class DataError(RuntimeError):
    """A data set cannot be fetched, read or written; the message says what to do."""


def stream_stem(path: Path) -> str:
    """The name of a recorded stream without its ``.msgpack[.zst]`` suffix."""
    for suffix in _STREAM_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def companion(path: Path, suffix: str) -> Path:
    """The file beside stream ``path`` with the same stem and ``suffix`` (e.g. ``.items.npz``)."""
    return path.with_name(stream_stem(path) + suffix)


def sha256_file(path: Path, advance: Advance | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def iso_ms(ts_ms: int) -> str:
    """A millisecond timestamp as ISO 8601 UTC, for manifests people read."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()


def write_manifest(stream: Path, manifest: dict[str, Any]) -> Path:
    """Write ``<stem>.manifest.json`` beside ``stream``; returns its path."""
    path = companion(stream, ".manifest.json")
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def tracker(progress: Progress | None, description: str, total: float | None) -> Advance:
    """A new task on ``progress`` (when there is one) and the function that advances it."""
    if progress is None:
        return lambda _n: None
    task = progress.add_task(description, total=total)
    return lambda n: progress.advance(task, n)
