"""The raw library floor of the engine's work: what its library calls cost on their own.

:class:`CallRecorder` wraps an engine's index search and reranker call and keeps what each
micro-batch asked of them (queries, k and the longest exclusion list; feature matrices).
:func:`measure_floor` then times the same work as bare library calls, one thread:

- ``search``: the raw faiss ``index.search`` over the recorded queries with the ``k`` the
  engine's first faiss pass uses (``k + min(longest exclusion, k)``) and the index's nprobe
  / efSearch; no id mapping, no exclusion filter;
- ``rerank``: the ONNX Runtime session over the recorded feature matrices;
- ``msgpack``: ``msgpack.packb`` of each recommendation's map;
- ``produce``: aiokafka's ``send`` of those bytes to a scratch topic, awaited in batches
  (only when a broker is given).

Each is milliseconds of CPU per event (this process's CPU time, so a neighbour that takes
the CPU does not inflate it); their sum is the floor a worker cannot beat on one core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from streamrec.streams.core.engine import Engine
from streamrec.streams.wire import Recommendation

#: Messages in flight per produce batch (a micro-batch's worth, as the worker emits them).
PRODUCE_BATCH = 256


@dataclass
class CallRecorder:
    """Keeps the inputs of an engine's library calls while ``active``."""

    searches: list[tuple[np.ndarray, int, int]] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    active: bool = False

    def attach(self, engine: Engine) -> None:
        """Wrap ``engine.index.search`` and ``engine.scorer.score`` (instance attributes,
        so the engine's code runs unchanged and only this engine is affected)."""
        search = engine.index.search

        def recorded_search(queries: np.ndarray, k: int, exclude: Any = None, **kw: Any) -> Any:
            if self.active:
                longest = max((len(e) for e in exclude), default=0) if exclude else 0
                self.searches.append((np.array(queries, np.float32), k, longest))
            return search(queries, k, exclude, **kw)

        engine.index.search = recorded_search  # type: ignore[method-assign,unused-ignore]
        if engine.scorer is not None:
            score = engine.scorer.score

            def recorded_score(features: np.ndarray) -> np.ndarray:
                if self.active:
                    self.features.append(np.array(features, np.float32))
                return score(features)

            engine.scorer.score = recorded_score  # type: ignore[method-assign,unused-ignore]


def _cpu_ms(work: Callable[[], object], events: int) -> float:
    """CPU milliseconds per event of ``work()`` (run once, after the caller's warm-up)."""
    started = time.process_time()
    work()
    return 1000 * (time.process_time() - started) / max(1, events)


def measure_floor(
    engine: Engine,
    recorder: CallRecorder,
    recs: Sequence[Recommendation],
    events: int,
    *,
    produce: Callable[[list[bytes]], float] | None = None,
) -> dict[str, float]:
    """Floor ms of CPU per event of each stage over the recorded work of ``events`` events,
    and ``total``; ``produce`` (see :func:`aiokafka_produce`) adds the produce stage."""
    raw = engine.index._seg.index  # the bare faiss index the engine searches

    def search() -> None:
        for queries, k, longest in recorder.searches:
            raw.search(queries, min(raw.ntotal, k + min(longest, k)))

    scorer = engine.scorer

    def rerank() -> None:
        for x in recorder.features:  # recorded only when there is a scorer
            if scorer is not None:
                scorer.score(x)

    maps = [rec.to_map() for rec in recs]
    packed: list[bytes] = []

    def pack() -> None:
        packed.extend(msgpack.packb(m) for m in maps)

    search()  # warm-up: faiss's and ORT's first calls allocate
    if recorder.features:
        rerank()
    floor = {"search": _cpu_ms(search, events)}
    if recorder.features:
        floor["rerank"] = _cpu_ms(rerank, events)
    floor["msgpack"] = _cpu_ms(pack, events)
    if produce is not None:
        floor["produce"] = produce(packed) * len(packed) / max(1, events)
    floor["total"] = sum(floor.values())
    return floor


def aiokafka_produce(
    bootstrap_options: dict[str, Any], topic: str
) -> Callable[[list[bytes]], float]:
    """A ``produce`` for :func:`measure_floor`: CPU ms per message of sending ``values`` to
    ``topic`` with one aiokafka producer, :data:`PRODUCE_BATCH` sends awaited together."""

    async def run(values: list[bytes]) -> float:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**bootstrap_options)
        await producer.start()
        try:
            await (await producer.send(topic, values[0]))  # connection, metadata
            started = time.process_time()
            for at in range(0, len(values), PRODUCE_BATCH):
                sent = [await producer.send(topic, v) for v in values[at : at + PRODUCE_BATCH]]
                await asyncio.gather(*sent)
            return 1000 * (time.process_time() - started) / len(values)
        finally:
            await producer.stop()

    return lambda values: asyncio.run(run(values))
