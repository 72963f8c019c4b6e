"""One cold-start path: a user without recommendations gets the same items over HTTP as a
cold user's event gets on the stream, and never an item deleted from the index, even one
that is popular again because people still act on it."""

from __future__ import annotations

import time

import pytest
from worker_support import Topics, produce, produce_events, read_topic, wait_for

from streamrec.streams.items import encode_delete
from streamrec.streams.wire import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_cold_user_gets_the_same_items_over_http_and_over_kafka(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    _, art = artifacts
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(topics, art, partitions=2).start()
    worker.wait_ready()
    seeded = worker.get("/recommendations/never-seen").json()["items"]
    gone, kept = seeded[0], seeded[1:3]
    produce(kafka_bootstrap, topics.items, [(gone.encode(), encode_delete(gone))])
    wait_for(lambda: worker.metric("streamrec_catalog_changes_total") >= 1)

    now = int(time.time() * 1000)  # far after the training stream: these counts lead
    fans = [
        Event(f"fan-{u}-{j}", f"fan-{u}", item, "click", now + j)
        for u in range(4)
        for j, item in enumerate([gone, *kept])  # popularity counts the deleted item again
    ]
    produce_events(kafka_bootstrap, topics.events, fans)
    read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(fans))
    newcomer = Event("cold-1", "cold-over-kafka", "not-in-the-catalog", "click", now + 10)
    produce_events(kafka_bootstrap, topics.events, [newcomer])
    recs = read_topic(
        kafka_bootstrap,
        topics.recommendations,
        lambda v: any(r["user_id"] == newcomer.user_id for r in v),
    )
    [over_kafka] = [r for r in recs if r["user_id"] == newcomer.user_id]
    over_http = worker.get("/recommendations/cold-over-http").json()

    assert over_kafka["source"] == over_http["source"] == "popular"
    assert over_http["items"] == over_kafka["items"]
    assert set(over_http["items"][:2]) == set(kept) and gone not in over_http["items"]
