"""Real small catalogs for the engine-core tests: clustered random vectors in a flat FAISS
index (``streamrec.index.build_index``), plus helpers to make engines and events."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.index import CandidateIndex, build_index
from streamrec.models.scorer import Scorer
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import covis_params, rule_of
from streamrec.streams.core.popular import Popular
from streamrec.streams.wire import Event

N_ITEMS, DIM, N_CLUSTERS = 600, 16, 6


@dataclasses.dataclass(frozen=True)
class Catalog:
    """Item ids, their vectors and the cluster each item was drawn around."""

    ids: list[str]
    vectors: np.ndarray
    clusters: np.ndarray

    def in_cluster(self, c: int) -> list[str]:
        return [i for i, k in zip(self.ids, self.clusters, strict=True) if k == c]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(N_CLUSTERS, DIM))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    clusters = np.arange(N_ITEMS) % N_CLUSTERS
    vectors = centers[clusters] + 0.15 * rng.normal(size=(N_ITEMS, DIM))
    return Catalog([f"item{i}" for i in range(N_ITEMS)], vectors.astype(np.float32), clusters)


@pytest.fixture
def index(catalog: Catalog) -> CandidateIndex:
    """A fresh (mutable) flat index over the catalog for each test."""
    return build_index(catalog.ids, catalog.vectors, kind="flat", device="cpu")


@pytest.fixture
def make_engine(index: CandidateIndex) -> Callable[..., Engine]:
    """``make_engine(scorer=None, covis=False, **config_fields)``: an engine over the test
    index with a fixed clock (emitted_ts = 42), so outputs are comparable across runs; with
    ``covis``, it keeps empty co-visitation statistics of the config's parameters."""

    def make(scorer: Scorer | None = None, covis: bool = False, **fields: Any) -> Engine:
        config = dataclasses.replace(EngineConfig(candidates=50, k=10), **fields)
        popular = Popular(config.popular_half_life_s, config.popular_top)
        table = CoVisitation(**covis_params(config)) if covis else None
        return Engine(
            index, scorer, rule_of(config), popular, config, clock=lambda: 42, covis=table
        )

    return make


@pytest.fixture
def make_stream(catalog: Catalog) -> Callable[..., list[Event]]:
    """``make_stream(n, users=8, seed=0)``: events of users who each like two clusters."""
    return lambda n, users=8, seed=0: _stream(catalog, n, users, seed)


def _stream(catalog: Catalog, n: int, users: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    likes = {u: rng.choice(N_CLUSTERS, size=2, replace=False) for u in range(users)}
    events = []
    for j in range(n):
        u = int(rng.integers(users))
        members = catalog.in_cluster(int(rng.choice(likes[u])))
        item = members[int(rng.integers(len(members)))]
        action = "save" if rng.random() < 0.3 else "click"
        events.append(Event(f"e{j}", f"user{u}", item, action, 1_700_000_000_000 + 1000 * j))
    return events


@pytest.fixture(scope="session")
def reranker_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real student exported to ONNX with the engine's feature spec (version
    ``core-test``), as ``streamrec train`` would write it."""
    torch = pytest.importorskip("torch")  # the `train` extra
    from streamrec.models.export import export_onnx
    from streamrec.models.metadata import ModelMetadata
    from streamrec.models.student import Student, StudentConfig

    torch.manual_seed(0)
    model = Student(len(FEATURE_NAMES), StudentConfig(hidden=(8,)))
    rows = np.random.default_rng(0).random((64, len(FEATURE_NAMES)), np.float32)
    model.set_normalisation(rows)
    meta = ModelMetadata(FEATURE_NAMES, "core-test", "00" * 32)
    path = tmp_path_factory.mktemp("artifacts") / "reranker.onnx"
    return export_onnx(model.eval(), {"features": torch.from_numpy(rows)}, path, meta)
