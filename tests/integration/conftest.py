"""Fixtures every worker integration test shares: the worker factory and the quick
artifacts (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
import worker_support

new_worker = worker_support.new_worker  # a fixture defined in worker_support


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return worker_support.session_artifacts(tmp_path_factory.getbasetemp())
