"""Pinned wheels: downloaded once into the cache, refused when their bytes differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.data import DataError
from streamrec.data.fetch import PinnedWheel, fetch_wheel
from streamrec.data.files import sha256_file
from streamrec.data.movielens import VARIANTS

NEIGHBORS = VARIANTS["100k"].wheel


def test_fetch_downloads_the_pinned_wheel_into_an_empty_cache_once(tmp_path: Path) -> None:
    path = fetch_wheel(NEIGHBORS, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("neighbors-0.2.1-")
    assert sha256_file(path) == NEIGHBORS.sha256
    mtime = path.stat().st_mtime_ns
    assert fetch_wheel(NEIGHBORS, tmp_path) == path
    assert path.stat().st_mtime_ns == mtime  # served from the cache, not fetched again
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary folders left


def test_cached_wheel_with_other_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "neighbors-0.2.1-py3-none-any.whl").write_bytes(b"not the pinned wheel")
    with pytest.raises(DataError, match="sha256"):
        fetch_wheel(NEIGHBORS, tmp_path)


def test_download_with_other_bytes_never_enters_the_cache(tmp_path: Path) -> None:
    wrong = PinnedWheel(NEIGHBORS.package, NEIGHBORS.version, "0" * 64)
    with pytest.raises(DataError, match="expected 0000"):
        fetch_wheel(wrong, tmp_path)
    assert list(tmp_path.iterdir()) == []
