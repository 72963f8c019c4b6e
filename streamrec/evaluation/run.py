"""One evaluation run: load the streams and artifacts, build the systems, replay, analyse.

The CLI (``streamrec evaluate``) is a thin shell over :func:`evaluate`; tests call it
directly. Everything is deterministic for the same files, artifacts and settings.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation import baselines as bl
from streamrec.evaluation.drift import Adaptation, DriftTruth, adaptation, tracked_users
from streamrec.evaluation.prequential import (
    History,
    Outcome,
    Replay,
    Stream,
    System,
    Vocab,
    replay,
)
from streamrec.evaluation.sasrec import NAME as SASREC
from streamrec.evaluation.sasrec import sasrec_baseline
from streamrec.evaluation.variants import (
    EngineSystem,
    FanOut,
    Variant,
    load_reranker,
    load_variant,
    warmup_filter,
)
from streamrec.index.vectors import load_vectors
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.ranking import BatchReranker, Reranker
from streamrec.streams.recorded import read_events


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate: list cut-offs, engine variants, baselines, optional drift world."""

    ks: tuple[int, ...] = (10, 20)
    variants: tuple[Variant, ...] = ()
    baselines: tuple[str, ...] = bl.NAMES
    drift_world: Path | None = None
    #: What ``streamrec worker`` serves (:func:`served_variant`): replayed first, named in
    #: the report, and the system the goal compares with the best baseline.
    served: Variant | None = None

    def __post_init__(self) -> None:
        if self.served is not None and self.served not in self.variants:
            object.__setattr__(self, "variants", (self.served, *self.variants))


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
    drift: dict[str, Adaptation] | None = None  # events counted from the switch
    drift_from_evidence: dict[str, Adaptation] | None = None  # ... from the first new-cluster event
    engine_info: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """One hash over every system's emitted recommendations, in report order."""
        h = hashlib.sha256()
        for name, outcome in self.replay.outcomes.items():
            h.update(f"{name}={outcome.digest};".encode())
        return h.hexdigest()


@dataclass
class Inputs:
    """The streams and catalog, indexed the same way in every process (deterministic)."""

    test: Stream
    warmup: Stream | None
    users: Vocab
    items: Vocab
    vectors: np.ndarray  # per item index (zeros outside the catalog)
    catalog_size: int


def load_inputs(test_path: Path, warmup_path: Path | None, artifacts: Path) -> Inputs:
    vectors_path = Artifacts(artifacts).item_vectors
    if not vectors_path.is_file():
        raise FileNotFoundError(f"{vectors_path}: missing (run `streamrec train` first)")
    catalog_ids, catalog_vectors = load_vectors(vectors_path)
    items, users = Vocab(catalog_ids), Vocab()
    warmup = Stream.encode(list(read_events(warmup_path)), users, items) if warmup_path else None
    test = Stream.encode(list(read_events(test_path)), users, items)
    if not len(test):
        raise ValueError(f"{test_path}: no events to evaluate")
    vectors = np.zeros((len(items), catalog_vectors.shape[1]), dtype=np.float32)
    vectors[: len(catalog_ids)] = catalog_vectors
    return Inputs(test, warmup, users, items, vectors, len(catalog_ids))


@dataclass
class _GroupResult:
    """What one replay of a group of systems hands back (picklable across processes)."""

    outcomes: dict[str, Outcome]
    history_length: np.ndarray
    batches: int
    kinds: dict[str, str]
    skipped: dict[str, str]
    engine_info: dict[str, dict[str, str]]
    loaded: _Loaded | None = None  # from one process of a parallel run: the main one loads none


@dataclass
class _Loaded:
    """What the report needs of the inputs (a parallel run takes it from a worker)."""

    test: Stream
    users: Vocab
    items: Vocab
    catalog_size: int
    warmup_events: int
    seconds: float

    @classmethod
    def of(cls, inputs: Inputs, seconds: float) -> _Loaded:
        warmup_events = len(inputs.warmup) if inputs.warmup is not None else 0
        return cls(
            inputs.test, inputs.users, inputs.items, inputs.catalog_size, warmup_events, seconds
        )


def _replay_group(
    inputs: Inputs,
    artifacts: Path,
    settings: Settings,
    options: EvalOptions,
    advance: Callable[[int], None] | None,
) -> _GroupResult:
    """Build this group's systems and replay the streams through them."""
    history = History()
    k = max(options.ks)
    built = build_systems(inputs, artifacts, settings, options, history)
    users, items = inputs.users, inputs.items
    truth = DriftTruth.load(options.drift_world, items) if options.drift_world else None
    track_set = tracked_users(truth, users) if truth else set()
    result = replay(
        built.systems,
        inputs.test,
        warmup=inputs.warmup,
        history=history,
        users=users,
        items=items,
        max_batch=settings.eval_max_batch,
        max_k=k,
        track=track_set.__contains__ if track_set else None,
        advance=advance,
    )
    return _GroupResult(
        result.outcomes,
        result.history_length,
        result.batches,
        built.kinds,
        built.skipped,
        built.engine_info,
    )


@dataclass
class Systems:
    """One group's replay systems, what each is, and the variants that could not run."""

    systems: list[System]
    kinds: dict[str, str]  # name -> "baseline" | "engine"
    skipped: dict[str, str]  # variant name -> why it did not run
    engine_info: dict[str, dict[str, str]]


def build_systems(
    inputs: Inputs,
    artifacts: Path,
    settings: Settings,
    options: EvalOptions,
    history: History,
) -> Systems:
    """The baselines and engine variants of ``options``, reading ``history``."""
    users, items = inputs.users, inputs.items
    k = max(options.ks)
    systems: list[System] = []
    kinds: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in options.baselines:
        system = (
            sasrec_baseline(artifacts, history, items, k)
            if name == SASREC
            else _baseline(name, history, len(items), len(users), k, inputs.vectors, settings)
        )
        if isinstance(system, str):  # SASRec not trained: the report says so
            skipped[name] = system
            continue
        systems.append(system)
        kinds[name] = "baseline"
    engine_info: dict[str, dict[str, str]] = {}
    runnable = []
    for variant in options.variants:
        why = variant.missing(artifacts)
        if why is None:
            runnable.append(variant)
        else:
            skipped[variant.name] = why
    for rule in dict.fromkeys(v.rule for v in runnable):
        built = _engine_systems(
            [v for v in runnable if v.rule == rule], inputs, artifacts, settings, k
        )
        for name, system_or_why, info in built:
            if isinstance(system_or_why, str):
                skipped[name] = system_or_why
                continue
            systems.append(system_or_why)
            kinds[name] = "engine"
            engine_info[name] = info
    return Systems(systems, kinds, skipped, engine_info)


def _engine_systems(
    variants: list[Variant],
    inputs: Inputs,
    artifacts: Path,
    settings: Settings,
    k: int,
) -> list[tuple[str, System | str, dict[str, str]]]:
    """The systems of one rule's variants: ONE engine replay when a reranker variant is
    among them (the others ride on it through a fan-out, see ``EngineSystem``), otherwise
    one replay each. Per variant: (name, system or why it cannot run, engine info)."""
    ranked = sorted(variants, key=lambda v: v.reranker in ("none", "covis"))  # rerankers first
    first = ranked[0]
    # the engine's own co-visitation ranks `covis` (and `none`, when it is on for serving):
    # what a shared view cannot reproduce, so such a variant has its own replay
    covis_on = settings.engine_covis_weight > 0
    alone = [v for v in ranked[1:] if v.reranker == "covis" or (v.reranker == "none" and covis_on)]
    ranked = [v for v in ranked if v not in alone]
    shared = first.reranker not in ("none", "covis") and len(ranked) > 1
    out: list[tuple[str, System | str, dict[str, str]]] = []
    for variant in [first, *alone] if shared else [*ranked, *alone]:
        try:
            engine = load_variant(
                artifacts,
                settings,
                variant,
                seed_popular=inputs.warmup is None,
            )
            others: list[tuple[Variant, Reranker | BatchReranker | None]] = []
            for other in ranked[1:] if shared and variant is first else []:
                reranker = load_reranker(artifacts, other, engine)
                others.append((other, reranker))
        except Exception as exc:  # a teacher with another input spec, say: report, go on
            out.append((variant.name, f"{type(exc).__name__}: {exc}", {}))
            continue
        if engine.config.k < k:
            raise ValueError(f"engine_k={engine.config.k} is below the largest cut-off {k}")
        keep = None
        # the filter skips other users' old events, which only popularity would have seen;
        # the engine's co-visitation counts them all, so with it on every event is applied
        if inputs.warmup is not None and len(inputs.warmup) and engine.covis is None:
            keep = warmup_filter(
                inputs.test.users,
                int(inputs.warmup.ts[-1]),
                engine.config.popular_half_life_s,
                settings.eval_warmup_half_lives,
            )
        system = EngineSystem(
            variant.name,
            engine,
            inputs.items,
            k,
            warmup_keep=keep,
            shared=[(o.name, r) for o, r in others],
        )
        index = f"{engine.index.kind}/{engine.index.device}"
        for name, reranker in [(variant.name, engine.scorer), *((o.name, r) for o, r in others)]:
            if isinstance(reranker, FanOut):
                reranker = reranker.rerankers[0][1]
            info = {
                "model_version": reranker.model_version if reranker else "retrieval",
                "provider": getattr(reranker, "provider", "none"),
                "index": index,
            }
            view = system if name == variant.name else system.view(name)
            out.append((name, view, info))
    return out


def _worker(
    paths: tuple[Path, Path | None, Path],
    settings: Settings,
    options: EvalOptions,
    queue: Any,
    hand_back: bool,
) -> _GroupResult:
    """Process-pool entry: load the inputs and replay one group, reporting the replay's
    length (``("total", n)``) and then progress (``("done", n)``) through ``queue``;
    ``hand_back`` returns what the report needs of the inputs too."""
    test_path, warmup_path, artifacts = paths
    started = time.perf_counter()
    inputs = load_inputs(test_path, warmup_path, artifacts)
    loaded = _Loaded.of(inputs, time.perf_counter() - started)
    queue.put(("total", len(inputs.test) + loaded.warmup_events))
    result = _replay_group(inputs, artifacts, settings, options, lambda n: queue.put(("done", n)))
    if hand_back:
        result.loaded = loaded
    return result


def _groups(options: EvalOptions, jobs: int) -> list[EvalOptions]:
    """Split the systems over ``jobs`` groups: each rule's variants together (they share
    one engine replay; ``covis``, which replays alone, apart), multi-interest first; the
    baselines together, in a group of their own when one is free, else with the last."""

    def key(v: Variant) -> str:  # covis replays on its own: it can go to another process
        return f"{v.rule}:covis" if v.reranker == "covis" else v.rule

    keys = sorted(dict.fromkeys(map(key, options.variants)), key=lambda r: r[:5] != "multi")
    own_group = bool(options.baselines) and len(keys) < jobs
    slots = max(1, jobs - own_group)
    groups: list[list[Variant]] = [[] for _ in range(slots)]
    for n, name in enumerate(keys):
        groups[n % slots].extend(v for v in options.variants if key(v) == name)
    out = [replace(options, variants=tuple(g), baselines=()) for g in groups if g]
    if options.baselines:
        if out and not own_group:
            out[-1] = replace(out[-1], baselines=options.baselines)
        else:
            out.append(replace(options, variants=()))
    return out


def evaluate(
    test_path: Path,
    artifacts: Path,
    settings: Settings,
    options: EvalOptions,
    *,
    warmup_path: Path | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    jobs: int = 1,
) -> Evaluation:
    """Replay ``test_path`` (after warming up on ``warmup_path``) through the baselines and
    engine variants; ``progress(label, total)`` returns an ``advance(n)`` callback.

    With ``jobs > 1`` the systems are split over that many processes (each replays the
    same streams; results are identical to one process, only faster on several cores).
    """
    started = time.perf_counter()
    groups = _groups(options, max(1, jobs))
    if len(groups) <= 1:
        inputs = load_inputs(test_path, warmup_path, artifacts)
        loaded = _Loaded.of(inputs, time.perf_counter() - started)
        total = len(inputs.test) + loaded.warmup_events
        advance = progress("replaying", total) if progress else None
        results = [_replay_group(inputs, artifacts, settings, options, advance)]
    else:  # each process loads the inputs itself; the first hands them back
        results = _parallel(groups, (test_path, warmup_path, artifacts), settings, progress)
        assert results[0].loaded is not None
        loaded = results[0].loaded
    replayed = time.perf_counter()
    order = [*options.baselines, *(v.name for v in options.variants)]
    merged = {n: o for r in results for n, o in r.outcomes.items()}
    kinds = {n: k for r in results for n, k in r.kinds.items()}
    outcomes = {n: merged[n] for n in order if n in merged}
    replay_result = Replay(
        loaded.test,
        results[0].history_length,
        outcomes,
        loaded.users,
        loaded.items,
        results[0].batches,
    )
    truth = DriftTruth.load(options.drift_world, loaded.items) if options.drift_world else None
    drift = from_evidence = None
    if truth:
        drift, from_evidence = (
            adaptation(replay_result, truth, share=settings.eval_drift_share, start=start)
            for start in ("switch", "evidence")
        )
    return Evaluation(
        replay=replay_result,
        options=options,
        kinds={n: kinds[n] for n in outcomes},
        skipped={n: why for r in results for n, why in r.skipped.items()},
        catalog_size=loaded.catalog_size,
        seconds={  # in a parallel run, loading (in each process) is part of the replay
            "load": loaded.seconds,
            "replay": replayed - started - loaded.seconds,
            "total": time.perf_counter() - started,
        },
        inputs={
            "test": str(test_path),
            "warmup": str(warmup_path) if warmup_path else "",
            "artifacts": str(artifacts),
            "test_events": str(len(loaded.test)),
            "warmup_events": str(loaded.warmup_events),
            "jobs": str(len(groups)),
        },
        drift=drift,
        drift_from_evidence=from_evidence,
        engine_info={n: i for r in results for n, i in r.engine_info.items()},
    )


def _parallel(
    groups: list[EvalOptions],
    paths: tuple[Path, Path | None, Path],
    settings: Settings,
    progress: Callable[[str, int], Callable[[int], None]] | None,
) -> list[_GroupResult]:
    """Replay each group in its own (spawned) process; progress arrives through a queue."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(len(groups), mp_context=context) as pool:
        queue = manager.Queue()
        futures = [
            pool.submit(_worker, paths, settings, g, queue, n == 0) for n, g in enumerate(groups)
        ]
        advance = None
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2)
            while not queue.empty():
                kind, n = queue.get()
                if kind == "total" and advance is None and progress is not None:
                    advance = progress(f"replaying ({len(groups)} processes)", n * len(groups))
                elif kind == "done" and advance is not None:
                    advance(n)
        return [f.result() for f in futures]


def _baseline(
    name: str,
    history: History,
    n_items: int,
    n_users: int,
    k: int,
    vectors: np.ndarray,
    settings: Settings,
) -> bl.Popularity:
    if name == "popular":
        return bl.Popularity(history, n_items, k)
    if name == "recent":
        return bl.RecentlyPopular(history, n_items, k, settings.eval_recent_half_life_s)
    if name == "windowed":
        return bl.WindowedPopular(history, n_items, k, settings.eval_window_popular_events)
    if name == "itemknn":
        return _knn(history, n_items, k, settings)
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


def _knn(history: History, n_items: int, k: int, settings: Settings) -> bl.ItemKNN:
    """The online item-kNN baseline."""
    return bl.ItemKNN(
        history,
        n_items,
        k,
        window=settings.eval_knn_window,
        query=settings.eval_knn_query,
        max_items=settings.eval_knn_max_items,
    )


def parse_baselines(texts: Sequence[str]) -> tuple[str, ...]:
    """Baseline names from CLI text (comma-separated or repeated); ``none`` for no baseline."""
    names = [p.strip() for t in texts for p in t.split(",") if p.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        if name not in bl.NAMES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(bl.NAMES)}")
    return tuple(dict.fromkeys(names))
