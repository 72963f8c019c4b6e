"""Engine variants as replay systems: the engine core itself, called as the Faust agent calls it.

A variant is ``RULE:RERANKER``: the user-update rule (``decayed`` or ``multi``) and the
reranker file the engine loads from the artifacts directory (``student`` = reranker.onnx,
``int8`` = reranker.int8.onnx, ``teacher`` = teacher.onnx, ``none`` = retrieval order). Each
is built by :func:`streamrec.streams.core.loader.load_engine` with only those two settings
changed, and replayed through ``Engine.process`` (serving semantics: the list emitted right
after an event is what the user has until their next one). Nothing of the engine's logic is
repeated here; the one thing swapped in is the popularity counter, for one whose adds take
effect at the next batch (:class:`BatchStartPopular`), so that within a micro-batch no list
sees a later event of the same batch through the popularity (see ``prequential``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from streamrec.config import Settings
from streamrec.evaluation.prequential import Batch, Vocab
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import load_engine
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import pack

RULES = ("decayed", "multi")
RERANKERS = {
    "student": "reranker.onnx",
    "int8": "reranker.int8.onnx",
    "teacher": "teacher.onnx",
    "none": "",
}


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


DEFAULT_VARIANTS = (
    "decayed:student",
    "decayed:none",
    "multi:student",
    "multi:none",
    "decayed:teacher",
)


class BatchStartPopular(Popular):
    """The engine's popularity counter, except that adds wait for :meth:`flush`.

    The evaluator flushes after each micro-batch, so every list of a batch sees the counts
    as of the batch start (a serving system lagging one micro-batch) and none sees the
    event it will be scored on.
    """

    def __init__(self, half_life_s: float, top_n: int) -> None:
        super().__init__(half_life_s, top_n)
        self._pending: list[tuple[str, int, float]] = []

    def add(self, item_id: str, ts: int, weight: float = 1.0) -> None:
        self._pending.append((item_id, ts, weight))

    def flush(self) -> None:
        """Apply every add since the last flush, in order."""
        for item_id, ts, weight in self._pending:
            super().add(item_id, ts, weight)
        self._pending.clear()


def load_variant(artifacts: Path, settings: Settings, variant: Variant) -> Engine:
    """The engine of one variant (rule and reranker file swapped, all else from settings)."""
    changed = settings.model_copy(update={"engine_reranker": RERANKERS[variant.reranker]})
    config = dataclasses.replace(EngineConfig.from_settings(changed), rule=variant.rule)
    engine = load_engine(artifacts, changed, config=config)
    engine.popular = BatchStartPopular(config.popular_half_life_s, config.popular_top)
    if variant.reranker != "none" and engine.scorer is None:
        raise ValueError(f"variant {variant.name}: the engine loaded no reranker")
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
    ) -> None:
        """``warmup_keep(batch)`` masks the warm-up events the engine needs (see
        :func:`warmup_filter`); by default all."""
        if not isinstance(engine.popular, BatchStartPopular):
            raise TypeError("replay needs an engine from load_variant (batch-start popularity)")
        self.popular: BatchStartPopular = engine.popular
        self.name = name
        self.engine = engine
        self.items = items
        self.k = k
        self.states: dict[str, UserState] = {}
        self._hash = hashlib.sha256()
        self._warming = True
        self._warmup_keep = warmup_keep

    def cold_items(self) -> np.ndarray:
        """What a user never seen gets: the engine's recently-popular items in the index."""
        ids, _ = self.engine.popular.top()
        top: list[int] = []
        for item in ids:
            if item in self.engine.index:
                top.append(self.items.add(item))
                if len(top) == self.k:
                    break
        return np.asarray(top, dtype=np.int64)

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        events = batch.events
        out: list[np.ndarray | None] = [None] * len(events)
        if self._warming:
            keep = self._warmup_keep(batch) if self._warmup_keep else np.ones(len(events), bool)
            keep |= want
            if not want.any():  # nothing of this batch is kept: state updates only
                self.engine.apply([e for e, k in zip(events, keep, strict=True) if k], self.states)
                self.popular.flush()
                return out
            positions = np.flatnonzero(keep).tolist()
        else:
            positions = list(range(len(events)))
        recs = self.engine.process([events[p] for p in positions], self.states)
        self.popular.flush()
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
    """Variants from CLI text (comma-separated or repeated), duplicates dropped, order kept."""
    out: dict[str, Variant] = {}
    for text in texts:
        for part in text.split(","):
            if part.strip():
                variant = Variant.parse(part)
                out[variant.name] = variant
    return list(out.values())
