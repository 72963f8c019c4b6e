"""Engine variants as replay systems: the engine core itself, called as the Faust agent calls it.

A variant is ``RULE:RERANKER``: the user-update rule (``decayed`` or ``multi``) and the
reranker: a feature scorer the engine loads from the artifacts directory (``student`` =
reranker.onnx, ``int8`` = reranker.int8.onnx), a batch reranker plugged into the engine's
rerank hook (``teacher`` = teacher.onnx, ``covis`` = retrieval score plus co-visitation, see
:mod:`streamrec.evaluation.rerankers`), or ``none`` (retrieval order). Each is built by
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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation.baselines import ItemKNN
from streamrec.evaluation.prequential import Batch, Vocab
from streamrec.evaluation.rerankers import CoVisitationReranker, TeacherReranker
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import pack

RULES = ("decayed", "multi")
RERANKERS = {
    "student": "reranker.onnx",
    "int8": "reranker.int8.onnx",
    "teacher": "teacher.onnx",
    "covis": "",
    "none": "",
}
#: Rerankers that run through the engine's batch hook rather than as a feature scorer.
BATCH_RERANKERS = ("teacher", "covis")


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
        """Why this variant cannot run on these artifacts (None when it can)."""
        file = RERANKERS[self.reranker]
        if file and not (artifacts / file).is_file():
            return f"{artifacts / file} does not exist"
        return None


#: What ``streamrec evaluate`` replays by default: the serving variant, retrieval order and
#: the co-visitation prototype (with the four baselines, within 5 minutes on ML-1M).
DEFAULT_VARIANTS = ("decayed:student", "decayed:none", "decayed:covis")
#: The whole matrix (``--variants all``): each rule without reranker, with the student
#: (fp32, and int8 for the serving rule), the teacher and co-visitation.
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


def load_variant(
    artifacts: Path,
    settings: Settings,
    variant: Variant,
    *,
    items: Vocab | None = None,
    covisitation: ItemKNN | None = None,
    seed_popular: bool = True,
) -> Engine:
    """The engine of one variant (rule and reranker swapped, batch-start popularity, all
    else from settings); ``seed_popular=False`` starts popularity empty (warm-up replays).

    ``covis`` needs the co-visitation statistics (``covisitation``, kept up to date by the
    :class:`EngineSystem`) and the replay's item vocabulary.
    """
    file = "" if variant.reranker in BATCH_RERANKERS else RERANKERS[variant.reranker]
    changed = settings.model_copy(update={"engine_reranker": file})
    config = dataclasses.replace(
        EngineConfig.from_settings(changed),
        rule=variant.rule,
        popular_as_of="batch_start",
        popular_seed=seed_popular and changed.engine_popular_seed,
    )
    engine = load_engine(artifacts, changed, config=config)
    if variant.reranker == "teacher":
        engine.scorer = TeacherReranker.load(artifacts, threads=config.threads)
    elif variant.reranker == "covis":
        if covisitation is None or items is None:
            raise ValueError(f"variant {variant.name}: needs co-visitation statistics")
        engine.scorer = CoVisitationReranker(
            covisitation,
            items,
            settings.eval_covis_weight,
            settings.eval_covis_recency,
            engine.model_version,
        )
    if variant.reranker != "none" and engine.scorer is None:
        raise ValueError(f"variant {variant.name}: the engine loaded no reranker")
    if engine.scorer is not None:
        engine.model_version = engine.scorer.model_version
    return engine


class EngineSystem:
    """Replays batches through ``Engine.process`` and keeps each user's emitted list."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        items: Vocab,
        k: int,
        *,
        warmup_keep: Callable[[Batch], np.ndarray] | None = None,
        covisitation: ItemKNN | None = None,
    ) -> None:
        """``warmup_keep(batch)`` masks the warm-up events the engine needs (see
        :func:`warmup_filter`); by default all. ``covisitation`` (the statistics a ``covis``
        reranker reads) takes each whole batch after the engine has processed it."""
        if engine.config.popular_as_of != "batch_start":
            raise ValueError("the replay needs batch-start popularity (see load_variant)")
        self.name = name
        self.engine = engine
        self.items = items
        self.k = k
        self.states: dict[str, UserState] = {}
        self._hash = hashlib.sha256()
        self._warming = True
        self._warmup_keep = warmup_keep
        self.covisitation = covisitation

    def _after_batch(self, batch: Batch) -> None:
        """Co-visitation takes the batch once every list of it is made (batch start)."""
        if self.covisitation is not None:
            self.covisitation.add(batch)

    def cold_items(self) -> np.ndarray:
        """What a user never seen gets: the engine's recently-popular items in the index."""
        top = self.engine.cold_recommendation(self.k)
        return np.fromiter((self.items.add(i) for i in top), np.int64, len(top))

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        events = batch.events
        out: list[np.ndarray | None] = [None] * len(events)
        if self._warming:
            keep = self._warmup_keep(batch) if self._warmup_keep else np.ones(len(events), bool)
            keep |= want
            if not want.any():  # nothing of this batch is kept: state updates only
                self.engine.apply([e for e, k in zip(events, keep, strict=True) if k], self.states)
                self._after_batch(batch)
                return out
            positions = np.flatnonzero(keep).tolist()
        else:
            positions = list(range(len(events)))
        recs = self.engine.process([events[p] for p in positions], self.states)
        self._after_batch(batch)
        for pos, rec in zip(positions, recs, strict=True):
            self._hash.update(pack([rec.user_id, rec.items, rec.scores, rec.source]))
            ids = (self.items.add(i) for i in rec.items)
            out[pos] = np.fromiter(ids, np.int64, len(rec.items))
        return out

    def end_warmup(self) -> None:
        self._warming = False

    def digest(self) -> str:
        return self._hash.hexdigest()


def warmup_filter(
    test_users: np.ndarray, warmup_end_ts: int, popular_half_life_s: float, half_lives: float
) -> Callable[[Batch], np.ndarray]:
    """Which warm-up events the engine must apply: every event of a user who appears in the
    held-out stream, and everyone's events of the last ``half_lives`` popularity half-lives.

    The engine keeps no cross-user state but the decayed popularity, so the events left out
    change nothing the evaluation reads except popularity weights below 2^-half_lives of an
    event at the warm-up's end; skipping them makes warm-up several times faster.
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
