"""Done-means 5 of the worker (issue 6): the live catalog on topic ``items``.

An item deleted via ``items`` never appears in recommendations emitted after the worker
applied the delete; an upserted item can appear; a worker started later applies the same
changes before it reports ready.
"""

from __future__ import annotations

from collections import Counter

import pytest
from worker_support import (
    Topics,
    first_events,
    produce,
    produce_events,
    read_topic,
    wait_for,
)

from streamrec.index import load_index
from streamrec.streams.items import encode_delete, encode_upsert

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_deleted_item_is_never_recommended_after_the_delete_and_upserted_one_can_be(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 6_000)
    before, after = events[:3_000], events[3_000:]
    topics = Topics.make(make_topic, partitions=4)
    # Every retrieved candidate is returned (k = candidates), so retrieval decides.
    worker = new_worker(topics, art, engine_k="50", engine_candidates="50").start()
    worker.wait_ready()

    produce_events(kafka_bootstrap, topics.events, before)
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(before))
    counts = Counter(item for r in recs for item in r["items"])
    target, times = counts.most_common(1)[0]
    assert times > 100  # a staple of the recommendations so far

    index = load_index(art / "index", device="cpu")
    vectors, found = index.get_vectors([target])
    assert found.all()
    new_item = "new-item-1"
    produce(
        kafka_bootstrap,
        topics.items,
        [
            (target.encode(), encode_delete(target)),
            (new_item.encode(), encode_upsert(new_item, (3.0 * vectors[0]).tolist())),
        ],
    )
    wait_for(lambda: worker.metric("streamrec_catalog_changes_total") >= 2)

    produce_events(kafka_bootstrap, topics.events, after)
    later_ids = {e.event_id for e in after}
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(events))
    later = [r for r in recs if r["event_id"] in later_ids]
    assert len(later) == len(after)
    assert not [r["event_id"] for r in later if target in r["items"]]
    assert any(new_item in r["items"] for r in later)
    assert worker.metric("streamrec_catalog_items") == len(index)  # one out, one in

    # A worker started later replays the catalog changes before it reports ready.
    late_topics = Topics.make(make_topic, partitions=4)
    late_topics.items = topics.items
    late = new_worker(late_topics, art, engine_k="50", engine_candidates="50").start()
    late.wait_ready()
    assert late.metric("streamrec_catalog_changes_total") == 2
    produce_events(kafka_bootstrap, late_topics.events, after)
    recs = read_topic(kafka_bootstrap, late_topics.recommendations, lambda v: len(v) >= len(after))
    assert len(recs) == len(after)
    assert not [r["event_id"] for r in recs if target in r["items"]]
    assert any(new_item in r["items"] for r in recs)
