"""The pipelined worker (issue 14): batch n+1 is computed while batch n's outputs are on
their way to the broker, on the session's real broker.

- Ordering: a user whose events fall in consecutive micro-batches gets each batch's state
  built on the previous batch's, whether or not that one was stored yet.
- Commits: nothing is committed past a batch whose recommendations the broker has not
  acknowledged, and the worker computes at most one batch beyond it meanwhile.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import msgpack
import pytest
from worker_support import (
    Topics,
    Worker,
    connection_to,
    produce_events,
    read_topic,
    wait_for,
)

from streamrec.streams.record import messages_to_end
from streamrec.streams.topics import admin_client, delete_topics, describe_topics, ensure_topics
from streamrec.streams.wire import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Small micro-batches, so a short stream is many consecutive batches per user.
SMALL_BATCHES = {"worker_max_batch": "4", "worker_batch_window_ms": "2"}


def user_events(users: int, per_user: int, items: list[str]) -> list[Event]:
    """``per_user`` events of each user, the users interleaved (one event each in turn)."""
    ts = int(time.time() * 1000) - 60_000
    return [
        Event(f"p{n}-{u}", f"pipe-u{u}", items[(7 * n + u) % len(items)], "click", ts + n)
        for n in range(per_user)
        for u in range(users)
    ]


def catalog_items(worker: Worker, n: int) -> list[str]:
    """``n`` items the worker's catalog holds (from its cold list)."""
    return worker.get("/recommendations/nobody-yet", k=n).json()["items"]


def engine_batches(worker: Worker) -> float:
    """How many micro-batches the worker's engine has computed."""
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith('streamrec_stage_seconds_count{stage="engine"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_consecutive_batches_of_a_user_build_on_each_others_state(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    _, art = artifacts
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(topics, art, partitions=2, **SMALL_BATCHES).start()
    worker.wait_ready()
    events = user_events(users=3, per_user=24, items=catalog_items(worker, 50))
    produce_events(kafka_bootstrap, topics.events, events)  # a backlog: back-to-back batches
    ids = {e.event_id for e in events}
    recs = read_topic(
        kafka_bootstrap, topics.recommendations, lambda v: ids <= {r["event_id"] for r in v}
    )
    assert Counter(r["event_id"] for r in recs) == Counter(ids)  # one each, none lost
    assert engine_batches(worker) >= 3 * 24 / 4  # many batches per user, not one

    # Every state the worker stored, in order: each builds on the one before it (a batch
    # that read a state older than its predecessor's would count fewer events).
    counts: dict[str, list[int]] = defaultdict(list)
    changelog = f"{worker.app_id}-user_state-changelog"
    for record in messages_to_end(connection_to(kafka_bootstrap), changelog):
        counts[record.key.decode()].append(msgpack.unpackb(record.value)["n_events"])
    per_user = Counter(e.user_id for e in events)
    assert counts.keys() == per_user.keys()
    for user, seen in counts.items():
        assert len(seen) > 1, user  # written by several batches
        assert seen == sorted(set(seen)), (user, seen)  # strictly growing
        assert seen[-1] == per_user[user], (user, seen)
    # ...and each recommendation leaves out what its user did in earlier batches.
    done: dict[str, set[str]] = defaultdict(set)
    by_id = {e.event_id: e for e in events}
    for rec in sorted(recs, key=lambda r: by_id[r["event_id"]].ts):
        event = by_id[rec["event_id"]]
        assert not done[event.user_id] & set(rec["items"]), rec["event_id"]
        done[event.user_id].add(event.item_id)


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offsets the consumer group ``group`` has committed on ``topic``, summed."""
    with admin_client(connection_to(bootstrap)) as admin:
        offsets = admin.list_group_offsets(group).get(group, {})
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def test_nothing_is_committed_past_a_batch_the_broker_has_not_acknowledged(
    kafka_bootstrap, kafka_connection, make_topic, new_worker, artifacts
):
    _, art = artifacts
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(topics, art, partitions=2, worker_commit_interval_s="0.2", **SMALL_BATCHES)
    worker.start().wait_ready()
    items = catalog_items(worker, 50)
    # No recommendations topic (the broker creates none by itself): every recommendation
    # waits, unacknowledged, until there is one again.
    with admin_client(kafka_connection) as admin:
        delete_topics(admin, [topics.recommendations])
        wait_for(lambda: not describe_topics(admin, [topics.recommendations]))
    events = user_events(users=2, per_user=20, items=items)
    produce_events(kafka_bootstrap, topics.events, events)

    # The first batch's recommendations hang; the next batch is computed meanwhile, and
    # then the worker waits: no third batch, and not one offset committed.
    wait_for(lambda: engine_batches(worker) >= 2)
    for _ in range(10):  # commits every 0.2 s would have happened by now
        time.sleep(0.3)
        assert engine_batches(worker) == 2
        assert committed(kafka_bootstrap, worker.app_id, topics.events) == 0
    assert worker.alive()

    with admin_client(kafka_connection) as admin:
        [made] = ensure_topics(admin, [topics.recommendations], 2)
    assert made.created
    ids = {e.event_id for e in events}
    recs = read_topic(
        kafka_bootstrap, topics.recommendations, lambda v: ids <= {r["event_id"] for r in v}
    )
    assert Counter(r["event_id"] for r in recs) == Counter(ids)
    wait_for(lambda: committed(kafka_bootstrap, worker.app_id, topics.events) == len(ids))
