"""The personalize agent's logic under Faust's test_context (no broker): validation and
DLQ routing, one recommendation per valid event, state stored per user, idempotence.

The engine is real (flat FAISS index, update rule, popularity); only the two output topics
are replaced by sinks that keep what the agent sends. Real Kafka behaviour (partitions,
changelogs, crashes, HTTP) is covered by tests/integration/test_worker_*.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from streamrec.config import Settings
from streamrec.index import build_index
from streamrec.streams.app import create_app, runtime_of
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.loader import rule_of
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.dlq import DeadLetterFailed, decode_dlq_record
from streamrec.streams.emit import BatchedSender
from streamrec.streams.shared_stats import GlobalStats
from streamrec.streams.wire import Event, decode_recommendation, encode_event


class Sink:
    """Stands in for a Kafka topic: keeps every (key, value) sent to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send_soon(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        """Keeps the record; the future stands for the broker's acknowledgement."""
        self.sent.append((key, value))
        acked = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        return self.send_soon(key=key, value=value)


class SinkSender(BatchedSender):
    """Stands in for the broker behind the worker's batched sends: keeps every record per
    topic; each send is acknowledged at once, or once ``acks`` are released (``gated``)."""

    def __init__(self, app, gated: bool = False) -> None:
        super().__init__(lambda: None, app.serializers)
        self.sent: dict[str, list[tuple[bytes | None, bytes | None, int | None]]] = {}
        self.gated = gated
        self.acks: list[asyncio.Future[None]] = []

    async def send(self, topic, records):
        records = list(records)
        self.sent.setdefault(topic, []).extend(records)
        if self.gated:
            self.acks.append(asyncio.get_running_loop().create_future())
            await self.acks[-1]
        return {p: 0 for _, _, p in records if p is not None}

    def values(self, topic: str) -> list[bytes | None]:
        return [value for _, value, _ in self.sent.get(topic, [])]


def small_engine(settings: Settings) -> Engine:
    config = EngineConfig.from_settings(settings)
    rng = np.random.default_rng(0)
    ids = [f"i{i}" for i in range(300)]
    index = build_index(ids, rng.standard_normal((300, 16)).astype(np.float32), kind="flat")
    return Engine(index, None, rule_of(config), Popular(config.popular_half_life_s), config)


def unit_settings(tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap="127.0.0.1:1",  # nothing may reach a broker
        worker_store="memory://",
        worker_app_id=f"unit-{tmp_path.name}",
        worker_data_dir=tmp_path,
        engine_k=10,
        worker_stats_global=False,  # no deltas topic without a broker
    )


@pytest.fixture
def agent_run(tmp_path: Path):
    """``agent_run(records, engine=None) -> (recs, dead, runtime)`` pushes (key, value)
    records through the personalize agent and returns what it emitted."""
    settings = unit_settings(tmp_path)
    engines: list[Engine] = []
    app = create_app(settings, load_engine=lambda: engines[0])
    rt = runtime_of(app)
    sender, dead = SinkSender(app), Sink()
    rt.sender = sender
    rt.dead_letters.topic = dead  # type: ignore[assignment]
    answered = settings.topic_recommendations

    def run(records: list[tuple[bytes | None, bytes]], engine: Engine | None = None):
        engines.append(engine or small_engine(settings))

        async def push() -> None:
            async with app.agents["personalize"].test_context() as agent:
                for key, value in records:
                    await agent.put(value, key=key)
                while len(sender.values(answered)) + len(dead.sent) < len(records):
                    await asyncio.sleep(0.01)

        asyncio.run(asyncio.wait_for(push(), timeout=30))
        return (
            [decode_recommendation(v) for v in sender.values(answered)],
            [decode_dlq_record(v) for _, v in dead.sent],
            rt,
        )

    return run


#: An event time inside the worker's accepted window (2023-11-14).
TS = 1_700_000_000_000


def event(n: int, user: str = "u1", item: str | None = None) -> tuple[bytes, bytes]:
    e = Event(f"e{n}", user, item or f"i{n}", "click", TS + n)
    return user.encode(), encode_event(e)


def test_each_valid_event_gets_one_recommendation_and_bad_ones_go_to_the_dlq(agent_run):
    records = [event(1), (b"u1", b"\xc1 not msgpack"), event(2, "u2"), event(3)]
    records.append((b"u3", event(4, "u4")[1]))  # key is not the event's user
    records.append((None, event(5, "u5")[1]))  # no key: it landed on a random partition
    recs, dead, _ = agent_run(records)
    assert [r["event_id"] for r in recs] == ["e1", "e2", "e3"]
    assert all(len(r["items"]) == 10 for r in recs)
    assert [(d["reason"], d["value"], d["key"]) for d in dead] == [
        ("not_msgpack", b"\xc1 not msgpack", b"u1"),
        ("key_mismatch", records[4][1], b"u3"),
        ("key_mismatch", records[5][1], None),
    ]
    assert all(d["detail"] and d["offset"] >= 0 for d in dead)


def test_state_and_latest_recommendation_are_stored_per_user(agent_run):
    recs, _, rt = agent_run([event(1, item="i7"), event(2, item="i8"), event(3, "u2")])
    state = UserState.from_map(rt.user_state["u1"])
    assert state.n_events == 2
    assert {"i7", "i8"} <= state.exclude
    assert rt.recs["u1"]["event_id"] == "e2"
    assert rt.recs["u1"]["items"] == recs[1]["items"]
    assert not {"i7", "i8"} & set(recs[1]["items"])


def test_a_redelivered_event_is_answered_but_not_applied_twice(agent_run):
    recs, _, rt = agent_run([event(1), event(2), event(1), event(2)])
    assert [r["event_id"] for r in recs] == ["e1", "e2", "e1", "e2"]
    assert UserState.from_map(rt.user_state["u1"]).n_events == 2


class BrokenEngine(Engine):
    """A real engine with a bug in its micro-batch step."""

    def process(self, events, states, **kwargs):
        raise RuntimeError("bug in the engine")


def test_a_failing_batch_goes_to_the_dlq_instead_of_being_lost(agent_run, tmp_path):
    good = small_engine(Settings())
    broken = BrokenEngine(good.index, None, good.rule, good.popular, good.config)
    recs, dead, _ = agent_run([event(1), event(2, "u2")], engine=broken)
    assert recs == []
    assert [(d["reason"], d["detail"]) for d in dead] == [
        ("processing_failed", "RuntimeError: bug in the engine")
    ] * 2


class FailsAfterCommitEngine(Engine):
    """A real engine whose ranking fails after the batch's delta is committed (serving
    commits before retrieval: freshest popularity)."""

    def _rank(self, candidates, ranker):
        raise RuntimeError("bug in ranking")


def test_a_batch_failing_after_its_commit_still_publishes_its_delta(agent_run, monkeypatch):
    """The engine counts the failed batch's events; unpublished, the other workers never
    would, and every stats checkpoint would wait for their acknowledgement in vain."""
    good = small_engine(Settings())
    assert good.config.popular_as_of == "batch_end"
    failing = FailsAfterCommitEngine(good.index, None, good.rule, good.popular, good.config)
    published: list[int] = []

    async def publish(deltas) -> None:
        published.extend(len(d) for d in deltas)

    monkeypatch.setattr(GlobalStats, "publish", lambda self, deltas: publish(deltas))
    recs, dead, _ = agent_run([event(1), event(2, "u2")], engine=failing)
    assert recs == []
    assert [d["reason"] for d in dead] == ["processing_failed"] * 2
    assert sum(published) == 2 == failing.stats.events


def test_events_are_acked_only_once_their_recommendations_and_states_are_acknowledged(
    tmp_path,
):
    """Faust commits acked offsets; acking before the broker has the recommendation (or
    the state changelog record) would let a crash lose it (tests/integration: kill -9)."""
    settings = unit_settings(tmp_path)
    app = create_app(settings, load_engine=lambda: small_engine(settings))
    rt = runtime_of(app)
    sender = rt.sender = SinkSender(app, gated=True)

    async def push() -> None:
        async with app.agents["personalize"].test_context() as agent:
            events = [await agent.put(value, key=key) for key, value in (event(1), event(2))]
            while len(sender.acks) < 3:  # state changelog, recs changelog, recommendations
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the agent would ack now if it did not wait
            assert not any(e.message.acked for e in events)
            for acked in sender.acks[:-1]:
                acked.set_result(None)
            await asyncio.sleep(0.05)
            assert not any(e.message.acked for e in events)  # one send still unacknowledged
            sender.acks[-1].set_result(None)
            while not all(e.message.acked for e in events):
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(push(), timeout=30))


def test_a_near_limit_record_is_cut_in_the_dlq_and_the_events_after_it_are_answered(agent_run):
    huge = b"\xc1" * 1_048_400  # one byte under what made the DLQ record too big to send
    recs, dead, rt = agent_run([event(1), (b"u1", huge), event(2), event(3, "u2")])
    assert [r["event_id"] for r in recs] == ["e1", "e2", "e3"]
    [cut] = dead
    kept = rt.settings.worker_dlq_max_kept_bytes
    assert cut["reason"] == "oversize" and cut["value"] == huge[:kept]
    assert cut["value_truncated"] and cut["value_size"] == len(huge)
    assert cut["value_sha256"] == hashlib.sha256(huge).hexdigest()
    assert (cut["topic"], cut["offset"]) == (rt.settings.topic_events, 1)


def test_timestamps_outside_the_window_go_to_the_dlq_and_leave_popularity_alone(agent_run):
    far = [
        (b"u1", encode_event(Event("future", "u1", "i5", "click", 2**64 - 1))),
        (b"u1", encode_event(Event("micros", "u1", "i6", "click", TS * 1000))),
        (b"u1", encode_event(Event("seconds", "u1", "i7", "click", TS // 1000))),
    ]
    engine = small_engine(Settings())
    recs, dead, _ = agent_run([event(1), *far, event(2)], engine=engine)
    assert [r["event_id"] for r in recs] == ["e1", "e2"]
    assert [d["reason"] for d in dead] == ["ts_out_of_range"] * 3
    assert engine.popular.now == TS + 2
    assert engine.popular.top()[0] == ["i2", "i1"]  # the newer first, neither reset


class RefusingSink(Sink):
    """A DLQ topic whose broker refuses every record."""

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[None]:
        refused = asyncio.get_running_loop().create_future()
        refused.set_exception(RuntimeError("broker refused the record"))
        return refused


def test_a_batch_whose_dlq_records_are_refused_is_held_back_and_stops_the_app(tmp_path):
    """Faust's take_events acks a batch's events even when the agent raises, and acked
    offsets get committed; held back first, Faust's ack skips them. (Under test_context
    messages never reach a consumer; the restart side is in tests/integration.)"""
    settings = unit_settings(tmp_path).model_copy(update={"worker_dlq_send_attempts": 2})
    app = create_app(settings, load_engine=lambda: small_engine(settings))
    rt = runtime_of(app)
    rt.sender = SinkSender(app)
    rt.dead_letters.topic = RefusingSink()  # type: ignore[assignment]
    events: list = []
    held_at_crash: list[bool] = []
    crash = app.crash

    async def observed_crash(reason: BaseException) -> None:
        held_at_crash.extend(e.message.acked for e in events)
        await crash(reason)

    app.crash = observed_crash  # type: ignore[method-assign]

    async def push() -> None:
        async with app.agents["personalize"].test_context() as agent:
            events.extend([await agent.put(v, key=k) for k, v in (event(1), (b"u1", b"\xc1"))])
            while not app._crashed.is_set():
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(push(), timeout=30))
    assert isinstance(app.crash_reason, DeadLetterFailed)
    assert "after 2 attempts" in str(app.crash_reason)
    assert held_at_crash == [True, True]


@pytest.mark.parametrize("recs_changelog", [True, False])
def test_the_recs_changelog_is_written_only_when_kept(tmp_path, recs_changelog):
    """``worker_recs_changelog`` off: table ``recs`` still holds each user's latest list,
    but only ``user_state`` writes go to a changelog (one message per user per batch)."""
    settings = unit_settings(tmp_path).model_copy(update={"worker_recs_changelog": recs_changelog})
    app = create_app(settings, load_engine=lambda: small_engine(settings))
    rt = runtime_of(app)
    sender = rt.sender = SinkSender(app)

    async def push() -> None:
        async with app.agents["personalize"].test_context() as agent:
            for key, value in (event(1), event(2, "u2")):
                await agent.put(value, key=key)
            while len(sender.values(settings.topic_recommendations)) < 2:
                await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(push(), timeout=30))
    assert {rt.recs["u1"]["event_id"], rt.recs["u2"]["event_id"]} == {"e1", "e2"}
    changelog = sorted(
        (topic, key) for topic, records in sender.sent.items() for key, _, _ in records
    )
    states = rt.user_state.changelog_topic.get_topic_name()
    latest = rt.recs.changelog_topic.get_topic_name()
    assert changelog == sorted(
        [(states, b"u1"), (states, b"u2")]
        + [(latest, b"u1"), (latest, b"u2")] * recs_changelog
        + [(settings.topic_recommendations, b"u1"), (settings.topic_recommendations, b"u2")]
    )
    assert not app.producer.buffer.pending._queue  # nothing went Faust's one-by-one way
