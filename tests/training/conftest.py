"""What the training tests share: settings that run the whole `streamrec train --quick`
pipeline in seconds."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny() -> dict[str, Any]:
    """Settings by field name (``Settings(**tiny)``, or as ``STREAMREC_*`` variables for the
    CLI): small enough to train in seconds, large enough for retrieval to find next items."""
    return {
        "train_quick_examples": 400,
        "train_quick_eval_events": 200,
        "train_quick_epochs": 2,
        "train_latency_runs": 50,
        "train_embedding_dim": 16,
        "train_teacher_hidden": 16,
        "train_teacher_mlp": 32,
        "engine_candidates": 50,
        "train_sasrec_quick_epochs": 2,
    }
