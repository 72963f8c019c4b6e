"""Engine variants as replay systems: the engine core itself, called as the Faust agent calls it.

A variant is ``RULE:RERANKER``: the user-update rule (``decayed`` or ``multi``) and the
reranker: a feature scorer the engine loads from the artifacts directory (``student`` =
reranker.onnx, ``int8`` = reranker.int8.onnx), a batch reranker plugged into the engine's
rerank hook (``teacher`` = teacher.onnx, see :mod:`streamrec.evaluation.rerankers`), the
engine's own co-visitation (``covis``: retrieval score + ``eval_covis_weight`` x scaled
co-visitation, ``streams/core/covis.py``), or ``none`` (retrieval order). Each is built by
:func:`streamrec.streams.core.loader.load_engine` with only those two settings changed, and
replayed through ``Engine.process`` (serving semantics: the list emitted right after an
event is what the user has until their next one). Nothing of the engine's logic is
repeated here. The engine runs with batch-start popularity (``popular_as_of``), so that
within a micro-batch no list sees a later event of the same batch through the popularity
(see ``prequential``), and without the artifacts' popularity seed when the evaluation warms
up on the training stream (the seed would count those events twice).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation.prequential import Batch, Vocab
from streamrec.evaluation.rerankers import TeacherReranker
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import covisitation, load_engine, rule_mismatch
from streamrec.streams.core.ranking import BatchReranker, RerankBatch, Reranker, uses_covis
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event, Recommendation, pack

RULES = ("decayed", "multi")
#: Each reranker's file, by its key in :meth:`Artifacts.files` ("": none, retrieval order).
RERANKERS = {
    "student": "reranker",
    "int8": "reranker_int8",
    "teacher": "teacher",
    "covis": "",
    "none": "",
}
#: The rerankers distilled on one rule's replay (the ones the worker serves).
STUDENTS = ("student", "int8")


def reranker_file(artifacts: Path, reranker: str, rule: str) -> Path | None:
    """The file of a variant's reranker (``student``...) trained for ``rule`` in
    ``artifacts`` (``Artifacts.for_rule``); None for none."""
    key = RERANKERS[reranker]
    return Artifacts(artifacts).for_rule(rule).files()[key] if key else None


@dataclasses.dataclass(frozen=True)
class Variant:
    """One engine configuration to replay."""

    rule: str
    reranker: str

    @property
    def name(self) -> str:
        return f"{self.rule}:{self.reranker}"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``decayed:student`` → Variant; a bare rule means ``:student``."""
        rule, _, reranker = text.strip().partition(":")
        reranker = reranker or "student"
        if rule not in RULES:
            raise ValueError(f"variant {text!r}: rule must be one of {', '.join(RULES)}")
        if reranker not in RERANKERS:
            raise ValueError(f"variant {text!r}: reranker must be one of {', '.join(RERANKERS)}")
        return cls(rule, reranker)

    def missing(self, artifacts: Path) -> str | None:
        """Why this variant cannot run on these artifacts (None when it can): its reranker
        file is not there, or it is a student trained for another update rule (the worker
        refuses to serve that: ``loader.rule_mismatch``; the teacher reads the sequence
        itself and is replayed under either rule)."""
        file = reranker_file(artifacts, self.reranker, self.rule)
        if file is not None and not file.is_file():
            return f"{file} does not exist"
        if self.reranker in STUDENTS:
            return rule_mismatch(artifacts, self.rule)
        return None


#: What ``streamrec evaluate`` replays by default: the serving variant, retrieval order and
#: the engine's co-visitation (with the four baselines; see the ML-1M timing in the report).
DEFAULT_VARIANTS = ("decayed:student", "decayed:none", "decayed:covis")
#: The whole matrix (``--variants all``): each rule without reranker, with the student
#: (fp32, and int8 for the serving rule), the teacher and co-visitation. The students of the
#: rule the artifacts hold no rerankers for (neither ``engine.rule`` nor one of
#: ``train_rules``) are skipped, saying so (:meth:`Variant.missing`).
ALL_VARIANTS = (
    "decayed:student",
    "decayed:none",
    "decayed:int8",
    "decayed:teacher",
    "decayed:covis",
    "multi:student",
    "multi:none",
    "multi:teacher",
    "multi:covis",
)


def served_variant(settings: Settings, artifacts: Path) -> Variant | None:
    """The variant whose configuration is what ``streamrec worker`` runs with these settings
    and artifacts (``load_engine``): the settings' rule, the ``engine_reranker`` file when it
    is there (``none`` otherwise, which keeps ``engine_covis_weight``'s co-visitation, as the
    worker does). None when that file is one no variant names. The replay differs from the
    worker only in the protocol: batch-start statistics, and no popularity seed when it
    warms up on the training stream."""
    rule = settings.engine_rule
    file = Artifacts(artifacts).for_rule(rule).model(settings.engine_reranker)
    if file is not None and file.is_file():
        named = [
            r for r in RERANKERS if r != "teacher" and reranker_file(artifacts, r, rule) == file
        ]
        return Variant(rule, named[0]) if named else None
    return Variant(rule, "none")


def load_variant(
    artifacts: Path, settings: Settings, variant: Variant, *, seed_popular: bool = True
) -> Engine:
    """The engine of one variant (rule and reranker swapped, batch-start popularity, all
    else from settings); ``seed_popular=False`` starts the global statistics (popularity,
    co-visitation) empty, for warm-up replays. ``covis`` turns the engine's co-visitation on
    at ``eval_covis_weight`` unless ``engine_covis_weight`` already does; a reranker that
    reads the ``covis`` feature keeps it at any weight (``uses_covis``, as ``load_engine``)."""
    changed = settings.model_copy(update={"engine_reranker": ""})
    config = dataclasses.replace(
        EngineConfig.from_settings(changed),
        rule=variant.rule,
        popular_as_of="batch_start",
        popular_seed=seed_popular and changed.engine_popular_seed,
    )
    if variant.reranker == "covis" and config.covis_weight <= 0:
        config = dataclasses.replace(config, covis_weight=settings.eval_covis_weight)
    engine = load_engine(artifacts, changed, config=config)
    engine.scorer = load_reranker(artifacts, variant, engine)
    if engine.covis is None and uses_covis(engine.scorer, config.covis_weight):
        engine.keep_covis(covisitation(artifacts, config, len(engine.index), engine.popular.rows))
    if engine.scorer is not None:
        engine.model_version = engine.scorer.model_version
    elif engine.covis is not None:
        engine.model_version = f"retrieval+covis{engine.config.covis_weight:g}"
    return engine


def load_reranker(
    artifacts: Path, variant: Variant, engine: Engine
) -> Reranker | BatchReranker | None:
    """The reranker a variant plugs into ``engine`` (None: retrieval order, or the engine's
    co-visitation for ``covis``)."""
    threads = engine.config.threads
    if variant.reranker in ("none", "covis"):
        return None
    if variant.reranker == "teacher":
        return TeacherReranker.load(artifacts, variant.rule, threads=threads)
    from streamrec.models.scorer import Scorer  # onnxruntime only when a model is there

    path = reranker_file(artifacts, variant.reranker, variant.rule)
    assert path is not None  # none and covis returned above
    return Scorer.load(path, FEATURE_NAMES, device=engine.config.device, threads=threads)


class FanOut:
    """A batch reranker that scores every batch with several rerankers and ranks by the first.

    The variants of one rule share one engine replay this way (same state, retrieval and
    features); the others' scores and timings are kept for :class:`EngineSystem` to cut
    their lists from. ``None`` stands for retrieval order.
    """

    def __init__(self, rerankers: Sequence[tuple[str, Reranker | BatchReranker | None]]) -> None:
        first = rerankers[0][1]
        if first is None:
            raise ValueError("the first reranker of a fan-out ranks the engine's lists")
        self.rerankers = list(rerankers)
        self.model_version = first.model_version
        self.batch: RerankBatch | None = None
        self.scores: dict[str, np.ndarray | None] = {}
        self.seconds: dict[str, float] = {}

    def reset(self) -> None:
        """Forget the last batch (a micro-batch without personalized events scores none)."""
        self.batch = None
        self.seconds = {name: 0.0 for name, _ in self.rerankers}

    def score_batch(self, batch: RerankBatch) -> np.ndarray:
        self.batch = batch
        for name, reranker in self.rerankers:
            began = time.perf_counter()
            if reranker is None:
                scores = None
            elif isinstance(reranker, BatchReranker):
                scores = np.asarray(reranker.score_batch(batch))
            else:
                scores = np.asarray(reranker.score(batch.features))
            self.seconds[name] = time.perf_counter() - began
            self.scores[name] = scores
        first = self.scores[self.rerankers[0][0]]
        assert first is not None
        return first


class EngineSystem:
    """Replays batches through ``Engine.process`` and keeps each user's emitted list.

    With ``shared`` rerankers, one replay serves several variants of the same rule: the
    engine ranks with its own reranker, a :class:`FanOut` scores the same candidates with
    the others, and each :meth:`view` cuts its top-k exactly as the engine does (stable
    order by score; retrieval order for ``None``). Each view reports the time it would
    have taken alone: the shared stages plus its own reranker.
    """

    def __init__(
        self,
        name: str,
        engine: Engine,
        items: Vocab,
        k: int,
        *,
        warmup_keep: Callable[[Batch], np.ndarray] | None = None,
        shared: Sequence[tuple[str, Reranker | BatchReranker | None]] = (),
    ) -> None:
        """``warmup_keep(batch)`` masks the warm-up events the engine needs (see
        :func:`warmup_filter`); by default all."""
        if engine.config.popular_as_of != "batch_start":
            raise ValueError("the replay needs batch-start popularity (see load_variant)")
        self.name = name
        self.engine = engine
        self.items = items
        self.k = k
        self.states: dict[str, UserState] = {}
        self._warming = True
        self._warmup_keep = warmup_keep
        self.fanout: FanOut | None = None
        if shared:
            self.fanout = FanOut([(name, engine.scorer), *shared])
            engine.scorer = self.fanout
        names = [name, *(n for n, _ in shared)]
        self._hashes = {n: hashlib.sha256() for n in names}
        self.outputs: dict[str, list[np.ndarray | None]] = {}
        self.seconds: dict[str, float] = {}
        self.batch: Batch | None = None
        self.last_seconds: float | None = None

    def view(self, name: str) -> VariantView:
        """The system of a shared variant (replay it right after this one)."""
        if name not in self._hashes or name == self.name:
            raise KeyError(f"{name} is not shared by {self.name}")
        return VariantView(name, self)

    def cold_items(self) -> np.ndarray:
        """What a user never seen gets: the engine's recently-popular items in the index."""
        top = self.engine.cold_recommendation(self.k)
        return np.fromiter((self.items.add(i) for i in top), np.int64, len(top))

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        began = time.perf_counter()
        self.batch = batch
        events = batch.events
        self.outputs = {n: [None] * len(events) for n in self._hashes}
        if self.fanout is not None:
            self.fanout.reset()
        if self._warming:
            keep = self._warmup_keep(batch) if self._warmup_keep else np.ones(len(events), bool)
            keep |= want
            if not want.any():  # nothing of this batch is kept: state updates only
                self.engine.apply([e for e, k in zip(events, keep, strict=True) if k], self.states)
                self._time(began)
                return self.outputs[self.name]
            positions = np.flatnonzero(keep).tolist()
        else:
            positions = list(range(len(events)))
        chosen = [events[p] for p in positions]
        recs = self.engine.process(chosen, self.states)
        lists = {self.name: [(r.items, r.scores) for r in recs]}
        if self.fanout is not None:
            lists.update(self._shared_lists(chosen, recs))
        for name, per_event in lists.items():
            out, digest = self.outputs[name], self._hashes[name]
            for pos, rec, (ids, scores) in zip(positions, recs, per_event, strict=True):
                digest.update(pack([rec.user_id, ids, scores, rec.source]))
                out[pos] = np.fromiter((self.items.add(i) for i in ids), np.int64, len(ids))
        self._time(began)
        return self.outputs[self.name]

    def _shared_lists(
        self, events: list[Event], recs: list[Recommendation]
    ) -> dict[str, list[tuple[list[str], list[float]]]]:
        """Each shared variant's (items, scores) per event: its own top-k of the candidates
        the engine scored, and the engine's list where it scored none (cold users)."""
        assert self.fanout is not None
        batch, k = self.fanout.batch, self.engine.config.k
        group = {id(e): g for g, e in enumerate(batch.events)} if batch is not None else {}
        out = {}
        for name, _ in self.fanout.rerankers[1:]:
            scores = self.fanout.scores.get(name) if batch is not None else None
            per_event = []
            for event, rec in zip(events, recs, strict=True):
                g = group.get(id(event))
                if g is None or batch is None:
                    per_event.append((rec.items, rec.scores))
                    continue
                rows = slice(int(batch.offsets[g]), int(batch.offsets[g + 1]))
                ids = batch.candidate_ids[rows]
                if scores is None:  # retrieval order; the feature's score stands for it
                    order = np.arange(min(k, len(ids)))
                    own = batch.features[rows, FEATURE_NAMES.index("retrieval_score")]
                else:
                    own = scores[rows]
                    order = np.argsort(-own, kind="stable")[:k]
                per_event.append(([ids[i] for i in order.tolist()], own[order].tolist()))
            out[name] = per_event
        return out

    def _time(self, began: float) -> None:
        """Per variant: the shared stages plus its own reranker's time."""
        total = time.perf_counter() - began
        own = self.fanout.seconds if self.fanout is not None else {}
        shared = total - sum(own.values())
        self.seconds = {n: shared + own.get(n, 0.0) for n in self._hashes}
        self.last_seconds = self.seconds[self.name] if self.fanout is not None else None

    def end_warmup(self) -> None:
        self._warming = False

    def digest(self, name: str | None = None) -> str:
        return self._hashes[name or self.name].hexdigest()


class VariantView:
    """A variant that rides on another variant's replay (see :class:`EngineSystem`)."""

    def __init__(self, name: str, owner: EngineSystem) -> None:
        self.name = name
        self.owner = owner
        self.last_seconds: float | None = None

    def cold_items(self) -> np.ndarray:
        return self.owner.cold_items()

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        if self.owner.batch is not batch:
            raise RuntimeError(f"{self.name}: replay {self.owner.name} before its shared views")
        self.last_seconds = self.owner.seconds[self.name]
        return self.owner.outputs[self.name]

    def end_warmup(self) -> None:
        """The owner leaves warm-up for every view."""

    def digest(self) -> str:
        return self.owner.digest(self.name)


def warmup_filter(
    test_users: np.ndarray, warmup_end_ts: int, popular_half_life_s: float, half_lives: float
) -> Callable[[Batch], np.ndarray]:
    """Which warm-up events the engine must apply: every event of a user who appears in the
    held-out stream, and everyone's events of the last ``half_lives`` popularity half-lives.

    The engine keeps no cross-user state but the decayed popularity (and, when it is on,
    co-visitation: then the filter must not be used), so the events left out change nothing
    the evaluation reads except popularity weights below 2^-half_lives of an event at the
    warm-up's end; skipping them makes warm-up several times faster.
    """
    users = np.unique(test_users)
    since = warmup_end_ts - half_lives * popular_half_life_s * 1000.0

    def keep(batch: Batch) -> np.ndarray:
        return np.isin(batch.users, users) | (batch.ts >= since)

    return keep


def parse_variants(texts: Sequence[str]) -> list[Variant]:
    """Variants from CLI text (comma-separated or repeated; ``default`` and ``all`` name
    :data:`DEFAULT_VARIANTS` and :data:`ALL_VARIANTS`), duplicates dropped, order kept."""
    out: dict[str, Variant] = {}
    groups = {"default": DEFAULT_VARIANTS, "all": ALL_VARIANTS}
    for text in texts:
        for part in text.split(","):
            for name in groups.get(part.strip(), (part,)):
                if name.strip():
                    variant = Variant.parse(name)
                    out[variant.name] = variant
    return list(out.values())
