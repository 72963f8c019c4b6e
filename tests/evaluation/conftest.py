"""A small clustered world for end-to-end evaluation tests: real FAISS index, real engine."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.evaluation.prequential import History, Replay, System, replay
from streamrec.evaluation.run import EvalOptions, Inputs, build_systems, load_inputs
from streamrec.evaluation.variants import Variant, parse_variants
from streamrec.index import build_index
from streamrec.index.vectors import save_vectors
from streamrec.models.sasrec import SasrecConfig
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.recorded import read_events, write_events
from streamrec.streams.wire import Event
from streamrec.training.sasrec import train_sasrec

N_ITEMS, DIM, CLUSTERS, USERS = 120, 16, 4, 40
TINY_SASREC = SasrecConfig(seq_len=12, dim=16, blocks=1, dropout=0.0, lr=1e-2, batch=16,
                           max_epochs=30, patience=30, valid_events=100)  # fmt: skip
#: Every engine variant the world's artifacts (index, student; no teacher, no int8) can run.
EVERY_VARIANT = tuple(
    parse_variants(
        ["decayed:none,decayed:student,decayed:covis,multi:none,multi:student,multi:covis"]
    )
)


@pytest.fixture(scope="session")
def every_variant() -> tuple[Variant, ...]:
    """:data:`EVERY_VARIANT`, for the test modules."""
    return EVERY_VARIANT


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Artifacts (item_vectors.npz, index/ and a tiny real student as reranker.onnx, no
    teacher) and a warm-up/test split of a stream where each user mostly stays in one
    cluster and switches cluster half-way."""
    root = tmp_path_factory.mktemp("eval-world")
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((CLUSTERS, DIM))
    label = np.arange(N_ITEMS) % CLUSTERS
    vectors = centres[label] + 0.4 * rng.standard_normal((N_ITEMS, DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"i{i}" for i in range(N_ITEMS)]
    artifacts = Artifacts(root / "artifacts")
    save_vectors(artifacts.item_vectors, ids, vectors)
    build_index(ids, vectors, kind="flat", device="cpu").save(artifacts.index)
    _export_student(artifacts.reranker)
    events = []
    n_events = 3000
    for n in range(n_events):
        user = int(rng.integers(0, USERS))
        cluster = (user + (n >= n_events // 2)) % CLUSTERS
        pool = np.flatnonzero(label == cluster)
        item = int(rng.choice(pool)) if rng.random() < 0.85 else int(rng.integers(0, N_ITEMS))
        action = "save" if rng.random() < 0.3 else "click"
        events.append(Event(f"e{n}", f"u{user}", ids[item], action, 1_000_000 + 60_000 * n))
    write_events(root / "warm.msgpack", events[:1800])
    write_events(root / "test.msgpack", events[1800:])
    return {
        "artifacts": artifacts.dir,
        "warmup": root / "warm.msgpack",
        "test": root / "test.msgpack",
        "root": root,
    }


@pytest.fixture(scope="session")
def sasrec_artifacts(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world's artifacts plus a tiny SASRec really trained on its warm-up stream (so
    every default baseline, SASRec included, can be replayed)."""
    out = tmp_path_factory.mktemp("with-sasrec") / "artifacts"
    shutil.copytree(world["artifacts"], out)
    events = list(read_events(world["warmup"]))
    train_sasrec(events, int(len(events) * 0.9), Artifacts(out), TINY_SASREC)
    return out


def _export_student(path: Path) -> None:
    """A hand-set student with the engine's feature spec, exported as `streamrec train`
    exports it (so the `student` variants load a real ONNX model): linear in the retrieval
    score, co-visitation and popularity, so it reads the shared statistics through its
    features as the served student does and ranks well above chance. (An untrained MLP is
    a random draw: with the covis feature added, seed 0's ranked against retrieval, HR@10
    0.015 on this world, where one hit moves HR by 5 % and the batch-size test is noise.)"""
    import torch

    from streamrec.models.export import export_onnx
    from streamrec.models.metadata import ModelMetadata
    from streamrec.models.student import Student, StudentConfig
    from streamrec.streams.core.features import FEATURE_NAMES

    model = Student(len(FEATURE_NAMES), StudentConfig(hidden=()))
    rows = np.random.default_rng(0).random((64, len(FEATURE_NAMES)), np.float32)
    model.set_normalisation(rows)
    weights = {"retrieval_score": 1.0, "covis": 1.0, "pop_log": 0.1}
    with torch.no_grad():
        (linear,) = model.mlp
        linear.weight.zero_()
        linear.bias.zero_()
        for name, weight in weights.items():
            linear.weight[0, FEATURE_NAMES.index(name)] = weight
    meta = ModelMetadata(FEATURE_NAMES, "eval-test", "00" * 32)
    export_onnx(model.eval(), {"features": torch.from_numpy(rows)}, path, meta)


@dataclass
class Replayed:
    """One replay of every system, every emitted list kept (all users tracked)."""

    systems: list[System]
    replay: Replay
    inputs: Inputs


@pytest.fixture(scope="session")
def replay_every_system(world: dict[str, Path]) -> Callable[[Path, Path, int], Replayed]:
    """Replays a test stream through every default baseline and every variant of
    :data:`EVERY_VARIANT`: ``(artifacts, test stream, max batch)`` -> :class:`Replayed`."""

    def run(artifacts: Path, test: Path, max_batch: int) -> Replayed:
        settings = Settings(eval_max_batch=max_batch)
        options = EvalOptions(ks=(10,), variants=EVERY_VARIANT)
        inputs = load_inputs(test, world["warmup"], artifacts)
        history = History()
        built = build_systems(inputs, artifacts, settings, options, history)
        assert not built.skipped
        replayed = replay(
            built.systems,
            inputs.test,
            warmup=inputs.warmup,
            history=history,
            users=inputs.users,
            items=inputs.items,
            max_batch=max_batch,
            max_k=10,
            track=lambda _: True,
        )
        return Replayed(built.systems, replayed, inputs)

    return run
