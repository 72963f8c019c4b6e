"""Done-means 2 and 3 of the worker (issue 6): several workers, and crashes.

2. Two workers in one group: every user's recommendations are readable through either
   worker's HTTP port (``table_route`` forwards to the key's owner).
3. ``kill -9`` a worker in the middle of a replay and restart it: its final user state
   (the latest value per key of its ``user_state`` changelog) equals the state of an
   uninterrupted worker that read the same stream — nothing lost, nothing applied twice —
   and every event still has a recommendation message (at least one: events redelivered
   after the crash are answered again).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
import worker_support
from worker_support import (
    Topics,
    changelog_states,
    connection_to,
    first_events,
    paced_replay,
    produce_events,
    read_topic,
)

from streamrec.streams.record import messages_to_end
from streamrec.streams.wire import decode_recommendation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def served_items(worker: worker_support.Worker, user: str, k: int, timeout: float = 30.0):
    """The items ``worker`` serves for ``user``, retrying while a rebalance settles."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = worker.get(f"/recommendations/{user}", k=k)
            if response.status_code == 200:
                return response.json()["items"]
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{worker.url}: no answer for {user}"
        time.sleep(0.5)


def test_two_workers_serve_every_users_recommendations_through_either_port(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 3_000)
    topics = Topics.make(make_topic, partitions=4)
    first = new_worker(topics, art).start()
    second = new_worker(topics, art, app_id=first.app_id).start()
    first.wait_ready()
    second.wait_ready()

    produce_events(kafka_bootstrap, topics.events, events)
    ids = {e.event_id for e in events}
    recs = read_topic(
        kafka_bootstrap, topics.recommendations, lambda v: ids <= {r["event_id"] for r in v}
    )
    assert ids <= {r["event_id"] for r in recs}
    # Both took a share of the partitions.
    assert first.metric("streamrec_events_processed_total") > 0
    assert second.metric("streamrec_events_processed_total") > 0

    latest = {r["user_id"]: r["items"] for r in recs}
    for user, items in sorted(latest.items()):
        assert served_items(first, user, len(items)) == items, user
        assert served_items(second, user, len(items)) == items, user


def answers(bootstrap: str, topic: str, ids: set[str]) -> Counter[str]:
    """How many recommendation messages ``topic`` holds per event id, read once every id
    of ``ids`` has at least one (all partitions, to their end offsets at that moment)."""
    read_topic(bootstrap, topic, lambda v: ids <= {r["event_id"] for r in v})
    return Counter(
        decode_recommendation(r.value)["event_id"]
        for r in messages_to_end(connection_to(bootstrap), topic)
    )


def test_worker_killed_mid_replay_ends_with_the_state_of_an_uninterrupted_run(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 8_000)
    reference_topics = Topics.make(make_topic, partitions=4)
    victim_topics = Topics.make(make_topic, partitions=4, events=reference_topics.events)
    reference = new_worker(reference_topics, art).start()
    # The victim commits rarely, so the kill lands on events it has processed (and
    # emitted) but not yet committed, whatever the machine's pace: those must be delivered
    # again after the restart, and applied to the user state only once.
    victim = new_worker(victim_topics, art, worker_commit_interval_s="60").start()
    reference.wait_ready()
    victim.wait_ready()

    # Replay at a steady pace so the kill lands mid-stream, with work in flight.
    producer = paced_replay(kafka_bootstrap, reference_topics.events, events)
    deadline = time.monotonic() + 180  # a wait limit for a busy machine, not a speed check
    while victim.metric("streamrec_events_processed_total") < len(events) // 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.kill9()
    victim.start()
    producer.join()
    victim.wait_ready(timeout=120)

    ids = {e.event_id for e in events}
    uninterrupted = answers(kafka_bootstrap, reference_topics.recommendations, ids)
    recovered = answers(kafka_bootstrap, victim_topics.recommendations, ids)
    # Uninterrupted: exactly one recommendation message per event.
    assert uninterrupted == Counter(ids)
    # Killed: at least one per event, never none. The worker commits an event's offset only
    # once the broker has its recommendation, so a kill -9 loses none; the events it had
    # processed since its last commit are delivered again and answered again, so a second
    # message for one of them is expected (at-least-once emit), a missing one is a bug.
    missing = ids - recovered.keys()
    assert not missing, f"{len(missing)} events without a recommendation, e.g. {min(missing)}"
    assert recovered.keys() == ids
    # The kill did land on processed but uncommitted events (else this test proves nothing;
    # the 60 s commit interval makes sure of it)...
    assert max(recovered.values()) > 1

    expected = changelog_states(kafka_bootstrap, reference.app_id)
    restored = changelog_states(kafka_bootstrap, victim.app_id)
    # ...and yet each event was applied once: states equal the uninterrupted run's.
    per_user = Counter(e.user_id for e in events)
    assert {u: s["n_events"] for u, s in expected.items()} == dict(per_user)
    assert restored.keys() == expected.keys()
    for user in expected:
        assert restored[user] == expected[user], user


def test_a_worker_restarted_on_waiting_events_answers_every_one(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    """Events that wait on the topic while the worker is stopped are all answered after
    its restart. A stock Faust app restarted on waiting messages occasionally skipped one
    and committed past it (6 of 14 runs under load, ``test_local_kafka.py``); the worker
    takes its events through ``take_events`` with deferred acks, so it must not. Three
    stops and starts, each on a fresh backlog."""
    data, art = artifacts
    events = first_events(data, 4_500)
    topics = Topics.make(make_topic, partitions=4)
    worker = new_worker(topics, art).start()
    worker.wait_ready()
    for round_events in (events[:1_500], events[1_500:3_000], events[3_000:]):
        worker.stop()
        produce_events(kafka_bootstrap, topics.events, round_events)
        worker.start()
        worker.wait_ready(timeout=120)
        ids = {e.event_id for e in round_events}
        missing = ids - answers(kafka_bootstrap, topics.recommendations, ids).keys()
        assert not missing, f"{len(missing)} waiting events never answered, e.g. {min(missing)}"
    worker.stop()
