"""The global statistics' checkpoints without a broker: a checkpoint is written only once
this worker's deltas in it are acknowledged, so a restarted worker never holds events the
other workers were not sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from streamrec.streams.core.popular import Popular
from streamrec.streams.core.statistics import SharedStats, StatsDelta
from streamrec.streams.shared_stats import AckedEvents, GlobalStats, StatsConfig
from streamrec.streams.stats_wire import (
    Checkpoint,
    DeltaMessage,
    encode_delta,
    latest_values,
    read_checkpoints,
)
from streamrec.streams.wire import unpack

CONFIG = StatsConfig("app-stats-deltas", "app-stats-checkpoints")


def delta(*keys: int) -> StatsDelta:
    """One batch's delta: event ``k`` acted on item ``i{k}``."""
    n = len(keys)
    return StatsDelta(tuple(f"i{k}" for k in keys), (1000,) * n, (1.0,) * n, ((),) * n, keys)


class Producer:
    """Stands in for the stats producer: a delta's acknowledgement waits for :meth:`ack`, a
    checkpoint record's comes at once."""

    def __init__(self) -> None:
        self.unacked: list[asyncio.Future[None]] = []
        self.checkpoint_records: list[tuple[bytes | None, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        acked = asyncio.get_running_loop().create_future()
        if topic == CONFIG.checkpoints_topic:
            self.checkpoint_records.append((key, value))
            acked.set_result(None)
        else:
            self.unacked.append(acked)
        return acked

    def ack(self) -> None:
        for acked in self.unacked:
            acked.set_result(None)
        self.unacked = []

    def written(self) -> Checkpoint | None:
        return read_checkpoints(latest_values(self.checkpoint_records)).get("w1")


class Runtime:
    """What :class:`GlobalStats` needs of the worker's runtime; the compute thread is the
    event loop itself."""

    worker_name = "w1"

    def __init__(self) -> None:
        self.metrics = type("Metrics", (), {"registry": CollectorRegistry()})()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


def run(scenario: Callable[[GlobalStats, Producer], Awaitable[None]]) -> None:
    """Run ``scenario`` against a worker's global statistics, attached and started."""

    async def main() -> None:
        stats = GlobalStats(Runtime(), CONFIG)  # type: ignore[arg-type]
        stats.shared = SharedStats([Popular(3600.0)], dedupe=1000)
        producer = Producer()
        stats._producer = producer  # type: ignore[assignment]
        await asyncio.wait_for(scenario(stats, producer), timeout=10)

    asyncio.run(main())


def events_in(checkpoint: Checkpoint | None) -> int:
    assert checkpoint is not None
    return int(unpack(checkpoint.snapshot)["events"])


def test_a_checkpoint_waits_for_the_deltas_it_holds_to_be_acknowledged() -> None:
    async def scenario(stats: GlobalStats, producer: Producer) -> None:
        assert stats.shared is not None
        batch = stats.shared.commit(delta(1, 2, 3))  # the engine commits batch n ...
        publishing = asyncio.create_task(stats.publish([batch]))  # ... its write-out sends it
        await asyncio.sleep(0)
        assert producer.unacked
        writing = asyncio.create_task(stats._checkpoint())
        await asyncio.sleep(0.05)
        # Written now, it would hold batch n's keys: after a failed publish and a restart,
        # the redelivered batch would be dropped as counted, and never reach the others.
        assert producer.written() is None
        producer.ack()
        await publishing
        await writing
        assert events_in(producer.written()) == 3

    run(scenario)


def test_a_checkpoint_whose_deltas_are_not_acknowledged_in_time_is_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(stats: GlobalStats, producer: Producer) -> None:
        assert stats.shared is not None
        stats.ack_wait_s = 0.2
        publishing = asyncio.create_task(stats.publish([stats.shared.commit(delta(1, 2))]))
        await asyncio.sleep(0)
        with caplog.at_level(logging.WARNING, "streamrec.streams.shared_stats"):
            await stats._checkpoint()
        assert producer.written() is None
        assert [r.getMessage() for r in caplog.records] == [
            "stats checkpoint skipped: 2 of its 2 own events not acknowledged by the broker "
            "after 0.2 s"
        ]
        producer.ack()
        await publishing
        await stats._checkpoint()  # the next turn
        assert events_in(producer.written()) == 2

    run(scenario)


def test_restored_events_and_other_workers_events_need_no_acknowledgement() -> None:
    async def scenario(stats: GlobalStats, producer: Producer) -> None:
        assert stats.shared is not None
        stats.ack_wait_s = 0.05
        earlier = SharedStats([Popular(3600.0)], dedupe=1000)
        earlier.commit(delta(1, 2, 3))
        stats._restore_now(Checkpoint("c0", 1, {0: 5}, "old", 2, earlier.snapshot()))
        value = encode_delta(DeltaMessage("other", 1, delta(3, 4, 5)))  # 3: counted already
        record = ConsumerRecord(CONFIG.deltas_topic, 0, 5, 0, 0, None, value, None, 0, 0, [])
        assert stats._commit_records([record]) == [2]
        publishing = asyncio.create_task(stats.publish([stats.shared.commit(delta(6))]))
        await asyncio.sleep(0)
        producer.ack()
        await publishing
        await stats._checkpoint()  # its own event acknowledged: no wait for the others'
        assert events_in(producer.written()) == 6

    run(scenario)


def test_acked_events_wakes_a_waiter_once_its_count_is_reached() -> None:
    async def scenario() -> None:
        acked = AckedEvents()
        assert await acked.reach(0, timeout=0)
        waiting = asyncio.create_task(acked.reach(5, timeout=5))
        acked.add(3)
        await asyncio.sleep(0)
        assert not waiting.done()
        acked.add(2)
        assert await waiting
        assert not await acked.reach(6, timeout=0.01)

    asyncio.run(scenario())
