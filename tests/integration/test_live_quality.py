"""Live HR@k (issue 16) on the real broker with a real worker serving two A/B variants.

The worker's live counters must equal, exactly, HR@k recomputed offline from what it
published: each event joined with the recommendation message its user got just before it
on topic ``recommendations``. Every message and HTTP response says its variant, which is
the user's bucket.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
import requests
from worker_support import Topics, first_events, produce_events, read_topic

from streamrec.cli.live import parse_live
from streamrec.config import VariantSpec
from streamrec.streams.core.hits import is_hit, rank_of
from streamrec.streams.variants import Experiment
from streamrec.streams.wire import Event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VARIANTS = [
    {"name": "control", "share": 0.5},
    {"name": "b", "share": 0.5, "engine": {"covis_weight": 2.0, "k": 15}},
]
SALT = "live-test"


def offline_counts(events: list[Event], recs: list[dict[str, Any]], ks: tuple[int, ...]):
    """Per variant: events scored, hits per k and the rank of each hit, from the topic."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in recs:  # one user's messages share a partition: this is their order
        by_user[rec["user_id"]].append(rec)
    previous: dict[str, dict[str, Any]] = {}  # event_id -> the message before its own
    for messages in by_user.values():
        for before, own in zip(messages, messages[1:], strict=False):
            previous[own["event_id"]] = before
    scored: dict[str, int] = defaultdict(int)
    hits: dict[tuple[str, int], int] = defaultdict(int)
    ranks: dict[str, list[int]] = defaultdict(list)
    for event in events:
        served = previous.get(event.event_id)
        if served is None:  # the user's first event: nothing served yet
            continue
        rank = rank_of(served["items"], event.item_id)
        scored[served["variant"]] += 1
        for k in ks:
            hits[served["variant"], k] += is_hit(rank, k)
        if 0 <= rank < max(ks):
            ranks[served["variant"]].append(rank + 1)
    return scored, hits, ranks


def test_live_hr_equals_hr_recomputed_from_the_recommendations_topic(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 5_000)
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(
        topics,
        art,
        partitions=2,
        variants=json.dumps(VARIANTS),
        experiment_salt=SALT,
    ).start()
    worker.wait_ready()

    produce_events(kafka_bootstrap, topics.events, events)
    recs = read_topic(kafka_bootstrap, topics.recommendations, lambda v: len(v) >= len(events))
    assert len(recs) == len(events)
    experiment = Experiment.from_specs([VariantSpec(**v) for v in VARIANTS], SALT)
    assert all(r["variant"] == experiment.bucket(r["user_id"]).name for r in recs)
    assert all(len(r["items"]) == (15 if r["variant"] == "b" else 20) for r in recs)

    live = parse_live(worker.get("/metrics").text)
    scored, hits, ranks = offline_counts(events, recs, (10, 20))
    assert set(scored) == {"control", "b"}
    for variant in ("control", "b"):
        assert live[variant].scored == scored[variant]
        for k in (10, 20):
            assert live[variant].hits[k] == hits[variant, k], (variant, k)
        for r in (1, 5, 20):
            assert live[variant].rank_le[r] == sum(x <= r for x in ranks[variant]), (variant, r)
    assert sum(hits[v, 10] for v in scored) > 0  # the comparison is not of zeros
    first = len({e.user_id for e in events})
    assert worker.metric("streamrec_live_events_without_list_total") == first

    user = recs[-1]["user_id"]
    served = worker.get(f"/recommendations/{user}").json()
    assert served["variant"] == experiment.bucket(user).name
    cold = requests.get(f"{worker.url}/recommendations/never-seen-user", timeout=10).json()
    assert cold["source"] == "popular"
    assert cold["variant"] == experiment.bucket("never-seen-user").name
