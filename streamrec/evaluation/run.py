"""One evaluation run: load the streams and artifacts, build the systems, replay, analyse.

The CLI (``streamrec evaluate``) is a thin shell over :func:`evaluate`; tests call it
directly. Everything is deterministic for the same files, artifacts and settings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation import baselines as bl
from streamrec.evaluation.drift import Adaptation, DriftTruth, adaptation, tracked_users
from streamrec.evaluation.prequential import History, Replay, Stream, System, Vocab, replay
from streamrec.evaluation.variants import EngineSystem, Variant, load_variant, warmup_filter
from streamrec.index.vectors import load_vectors
from streamrec.streams.recorded import read_events

ITEM_VECTORS = "item_vectors.npz"


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate: list cut-offs, engine variants, baselines, optional drift world."""

    ks: tuple[int, ...] = (10, 20)
    variants: tuple[Variant, ...] = ()
    baselines: tuple[str, ...] = bl.NAMES
    drift_world: Path | None = None


@dataclass
class Evaluation:
    """A finished run: the replay plus everything the report states about it."""

    replay: Replay
    options: EvalOptions
    kinds: dict[str, str]  # system name -> "baseline" | "engine"
    skipped: dict[str, str]  # variant name -> why it did not run
    catalog_size: int
    seconds: dict[str, float]  # load / warmup+replay / total
    inputs: dict[str, str]
    drift: dict[str, Adaptation] | None = None
    engine_info: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """One hash over every system's emitted recommendations, in report order."""
        h = hashlib.sha256()
        for name, outcome in self.replay.outcomes.items():
            h.update(f"{name}={outcome.digest};".encode())
        return h.hexdigest()


def _read(path: Path) -> list:
    return list(read_events(path))


def evaluate(
    test_path: Path,
    artifacts: Path,
    settings: Settings,
    options: EvalOptions,
    *,
    warmup_path: Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> Evaluation:
    """Replay ``test_path`` (after warming up on ``warmup_path``) through the baselines and
    engine variants; ``progress(label, total)`` returns an ``advance(n)`` callback."""
    started = time.perf_counter()
    vectors_path = artifacts / ITEM_VECTORS
    if not vectors_path.is_file():
        raise FileNotFoundError(
            f"{vectors_path}: not an artifacts directory (run `streamrec train`)"
        )
    catalog_ids, catalog_vectors = load_vectors(vectors_path)
    items, users = Vocab(catalog_ids), Vocab()
    warmup = Stream.encode(_read(warmup_path), users, items) if warmup_path else None
    test = Stream.encode(_read(test_path), users, items)
    if not len(test):
        raise ValueError(f"{test_path}: no events to evaluate")
    vectors = np.zeros((len(items), catalog_vectors.shape[1]), dtype=np.float32)
    vectors[: len(catalog_ids)] = catalog_vectors

    history = History()
    k = max(options.ks)
    systems: list[System] = []
    kinds: dict[str, str] = {}
    for name in options.baselines:
        systems.append(_baseline(name, history, len(items), len(users), k, vectors, settings))
        kinds[name] = "baseline"
    skipped: dict[str, str] = {}
    engine_info: dict[str, dict[str, str]] = {}
    for variant in options.variants:
        why = variant.missing(artifacts)
        if why is not None:
            skipped[variant.name] = why
            continue
        try:
            engine = load_variant(artifacts, settings, variant)
        except Exception as exc:  # a teacher with another input spec, say: report, go on
            skipped[variant.name] = f"{type(exc).__name__}: {exc}"
            continue
        if engine.config.k < k:
            raise ValueError(f"engine_k={engine.config.k} is below the largest cut-off {k}")
        engine_info[variant.name] = {
            "model_version": engine.model_version,
            "provider": getattr(engine.scorer, "provider", "none"),
            "index": f"{engine.index.kind}/{engine.index.device}",
        }
        keep = None
        if warmup is not None and len(warmup):
            keep = warmup_filter(
                test.users,
                int(warmup.ts[-1]),
                engine.config.popular_half_life_s,
                settings.eval_warmup_half_lives,
            )
        systems.append(EngineSystem(variant.name, engine, items, k, warmup_keep=keep))
        kinds[variant.name] = "engine"

    truth = DriftTruth.load(options.drift_world, items) if options.drift_world else None
    track_set = tracked_users(truth, users) if truth else set()
    loaded = time.perf_counter()
    total = len(test) + (len(warmup) if warmup is not None else 0)
    advance = progress("replaying", total) if progress else None
    result = replay(
        systems,
        test,
        warmup=warmup,
        history=history,
        users=users,
        items=items,
        max_batch=settings.eval_max_batch,
        max_k=k,
        track=track_set.__contains__ if track_set else None,
        advance=advance,
    )
    replayed = time.perf_counter()
    drift = adaptation(result, truth, share=settings.eval_drift_share) if truth else None
    return Evaluation(
        replay=result,
        options=options,
        kinds=kinds,
        skipped=skipped,
        catalog_size=len(catalog_ids),
        seconds={
            "load": loaded - started,
            "replay": replayed - loaded,
            "total": time.perf_counter() - started,
        },
        inputs={
            "test": str(test_path),
            "warmup": str(warmup_path) if warmup_path else "",
            "artifacts": str(artifacts),
            "test_events": str(len(test)),
            "warmup_events": str(len(warmup) if warmup is not None else 0),
        },
        drift=drift,
        engine_info=engine_info,
    )


def _baseline(
    name: str,
    history: History,
    n_items: int,
    n_users: int,
    k: int,
    vectors: np.ndarray,
    settings: Settings,
) -> bl.Baseline:
    if name == "popular":
        return bl.Popularity(history, n_items, k)
    if name == "recent":
        return bl.RecentlyPopular(history, n_items, k, settings.eval_recent_half_life_s)
    if name == "itemknn":
        return bl.ItemKNN(
            history,
            n_items,
            k,
            window=settings.eval_knn_window,
            query=settings.eval_knn_query,
            max_items=settings.eval_knn_max_items,
        )
    if name == "static":
        return bl.StaticEmbedding(
            history,
            n_items,
            k,
            item_vectors=vectors,
            n_users=n_users,
            save_weight=settings.engine_weight_save,
            click_weight=settings.engine_weight_click,
        )
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(bl.NAMES)}")


def parse_baselines(texts: Sequence[str]) -> tuple[str, ...]:
    """Baseline names from CLI text (comma-separated or repeated); ``none`` for no baseline."""
    names = [p.strip() for t in texts for p in t.split(",") if p.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in bl.NAMES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(bl.NAMES)}")
    return tuple(dict.fromkeys(names))
