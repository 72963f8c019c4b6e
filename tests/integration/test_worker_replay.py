"""Done-means 1 and 4 of the worker (issue 6), on the real broker with a real worker.

1. Replaying 20,000 MovieLens-100k events yields exactly one recommendation message per
   event, carrying its event_id; no recommended item is one the user already interacted
   with; ``GET /recommendations/{user}`` returns the latest message's list.
4. 1,000 malformed records mixed into the stream all land in the DLQ with a reason, every
   good event is processed, and the worker never restarts.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import msgpack
import pytest
from worker_support import (
    Topics,
    first_events,
    produce,
    produce_events,
    read_topic,
)

from streamrec.streams.dlq import decode_dlq_record
from streamrec.streams.wire import Event, Reason, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_event_gets_one_fresh_recommendation_without_seen_items(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 20_000)
    topics = Topics.make(make_topic, partitions=4)
    worker = new_worker(topics, art).start()
    worker.wait_ready()

    produce_events(kafka_bootstrap, topics.events, events)
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(events))

    by_event = Counter(r["event_id"] for r in recs)
    assert len(recs) == len(events)
    assert set(by_event) == {e.event_id for e in events}
    assert max(by_event.values()) == 1

    # Items each user had interacted with up to and including each event.
    seen: dict[str, set[str]] = defaultdict(set)
    seen_at: dict[str, frozenset[str]] = {}
    for event in events:
        seen[event.user_id].add(event.item_id)
        seen_at[event.event_id] = frozenset(seen[event.user_id])
    for rec in recs:
        assert rec["items"], rec
        assert not seen_at[rec["event_id"]] & set(rec["items"]), rec["event_id"]

    latest = {r["user_id"]: r for r in recs}  # one user's messages share a partition, in order
    users = sorted(latest)
    for user in random.Random(6).sample(users, 40):
        served = worker.get(f"/recommendations/{user}", k=len(latest[user]["items"])).json()
        assert served["items"] == latest[user]["items"]
        assert served["event_id"] == latest[user]["event_id"]
    assert worker.alive()


def malformed_records(n: int, rng: random.Random) -> list[tuple[bytes | None, bytes, str]]:
    """``n`` bad records of every kind, each with the reason the worker must give."""
    kinds = [
        (lambda i: b"\xc1" + rng.randbytes(20), Reason.NOT_MSGPACK),
        (lambda i: msgpack.packb({"event_id": f"bad-{i}", "user_id": "u"}), Reason.MISSING_FIELD),
        (
            lambda i: msgpack.packb(
                {"event_id": f"bad-{i}", "user_id": "u", "item_id": 7, "action": "click", "ts": 1}
            ),
            Reason.WRONG_TYPE,
        ),
        (
            lambda i: encode_event(Event(f"bad-{i}", "u", "1", "purchase", 1)),
            Reason.UNKNOWN_ACTION,
        ),
        (
            lambda i: encode_event(Event(f"bad-{i}", "u", "1", "click", 1, surface="x" * 5000)),
            Reason.OVERSIZE,
        ),
        (lambda i: msgpack.packb([1, 2, 3]), Reason.NOT_A_MAP),
        (lambda i: b"", Reason.TRUNCATED),
    ]
    out = []
    for i in range(n):
        make, reason = kinds[i % len(kinds)]
        out.append((b"u", make(i), reason.value))
    return out


def test_malformed_records_go_to_the_dlq_and_good_ones_are_all_processed(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    rng = random.Random(4)
    good = first_events(data, 4_000)
    bad = malformed_records(1_000, rng)
    stream: list[tuple[bytes | None, bytes]] = [(e.user_id.encode(), encode_event(e)) for e in good]
    for key, value, _ in bad:
        stream.insert(rng.randrange(len(stream) + 1), (key, value))
    topics = Topics.make(make_topic, partitions=4)
    worker = new_worker(topics, art).start()
    worker.wait_ready()
    pid = worker.proc.pid

    produce(kafka_bootstrap, topics.events, stream)
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(good))
    dead = read_topic(
        kafka_bootstrap, topics.dlq, lambda v: len(v) >= len(bad), decode=decode_dlq_record
    )

    assert sorted(r["event_id"] for r in recs) == sorted(e.event_id for e in good)
    assert len(dead) == len(bad)
    assert Counter(d["reason"] for d in dead) == Counter(reason for _, _, reason in bad)
    assert sorted(d["value"] for d in dead) == sorted(value for _, value, _ in bad)
    assert all(d["topic"] == topics.events and d["offset"] >= 0 and d["detail"] for d in dead)
    assert worker.alive() and worker.proc.pid == pid
    assert worker.metric("streamrec_dlq_total") == len(bad)
    assert worker.metric("streamrec_events_in_total") == len(stream)
    assert "Traceback" not in worker.log()
