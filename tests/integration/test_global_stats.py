"""Issue 15, point 3: popularity and co-visitation are global across workers and durable.

(a) Two workers of one group, each owning half of the partitions, end with the same global
    statistics (``GET /stats/global``: events counted, popular counts, co-visitation) and
    give a never-seen user the same popular list.
(b) A worker killed with ``kill -9`` mid-replay and restarted restores the newest stats
    checkpoint, replays only the deltas after it, and ends with the statistics of an
    uninterrupted worker that read the same stream: every event counted once.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pytest
import requests
from worker_support import Topics, Worker, first_events, paced_replay, produce_events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Co-visitation on (the seed is in the artifacts), so both global statistics are kept.
# Co-visitation on, with rows wide enough that none fills up: below its bound the top-M table
# holds exact (decayed) counts whatever order batches arrive in, while under eviction which
# pair a full row keeps depends on arrival order, so workers and restarts agree only roughly.
COVIS = {"engine_covis_weight": "1", "engine_covis_neighbours": "2048"}


def global_stats(worker: Worker) -> dict[str, Any]:
    try:
        response = worker.get("/stats/global", k=1000)
    except requests.RequestException:
        return {}
    return response.json() if response.status_code == 200 else {}


def counted(worker: Worker, n: int) -> bool:
    return global_stats(worker).get("events") == n


def assert_same_statistics(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Same events, same popular items with the same counts (summed in another order: equal
    to rounding), same co-visitation scores (to float32 rounding)."""
    assert a["events"] == b["events"]
    pa = dict(zip(a["popular"]["items"], a["popular"]["counts"], strict=True))
    pb = dict(zip(b["popular"]["items"], b["popular"]["counts"], strict=True))
    assert pa.keys() == pb.keys()
    for item, count in pa.items():
        assert math.isclose(count, pb[item], rel_tol=1e-9), item
    assert a["covis"]["items"] == b["covis"]["items"]
    for x, y in zip(a["covis"]["scores"], b["covis"]["scores"], strict=True):
        assert math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-9)  # a float32 table


def delay_summary(worker: Worker) -> str:
    """Mean and bucket counts of the worker's propagation-delay histogram."""
    total = worker.metric("streamrec_stats_delta_delay_seconds_sum")
    count = worker.metric("streamrec_stats_delta_delay_seconds_count")
    buckets = {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'streamrec_stats_delta_delay_seconds_bucket\{le="([^"]+)"\} (\S+)',
            worker.get("/metrics").text,
        )
    }
    return (
        f"mean {1000 * total / max(count, 1):.1f} ms over {count:.0f} deltas, cumulative {buckets}"
    )


def test_two_workers_end_with_the_same_global_statistics(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 3_000)
    topics = Topics.make(make_topic, partitions=4)
    first = new_worker(topics, art, **COVIS).start()
    second = new_worker(topics, art, app_id=first.app_id, **COVIS).start()
    first.wait_ready()
    second.wait_ready()

    produce_events(kafka_bootstrap, topics.events, events)
    wait_for(lambda: counted(first, len(events)) and counted(second, len(events)), timeout=120)

    # Each processed only its own partitions' events; the rest came from the other's deltas.
    # (Both count every event once: an event both processed around a rebalance is dropped by
    # the keys the second time, so own + remote may exceed the events, never the count.)
    # The statistics count a batch when the engine commits it, the processed counter when its
    # write-out has finished, so the counter may trail the statistics by the batches still
    # being written: wait for it rather than read it at the moment the statistics are full.
    def tallies() -> tuple[list[float], list[float]]:
        own = [w.metric("streamrec_events_processed_total") for w in (first, second)]
        remote = [w.metric("streamrec_stats_remote_events_total") for w in (first, second)]
        return own, remote

    def covered() -> bool:
        own, remote = tallies()
        return all(o + r >= len(events) for o, r in zip(own, remote, strict=True))

    wait_for(covered, timeout=60, describe=tallies)
    own, remote = tallies()
    assert all(0 < n < len(events) for n in own), own
    assert all(0 < n < len(events) for n in remote), remote
    assert_same_statistics(global_stats(first), global_stats(second))
    cold = [
        w.get("/recommendations/never-seen-user", k=20).json()["items"] for w in (first, second)
    ]
    assert cold[0] == cold[1] and len(cold[0]) == 20
    print(f"\npropagation delay, first worker: {delay_summary(first)}")
    print(f"propagation delay, second worker: {delay_summary(second)}")


def test_worker_killed_mid_replay_recovers_the_global_statistics(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    data, art = artifacts
    events = first_events(data, 8_000)
    reference_topics = Topics.make(make_topic, partitions=4)
    victim_topics = Topics.make(make_topic, partitions=4, events=reference_topics.events)
    reference = new_worker(reference_topics, art, **COVIS).start()
    # Rare offset commits: the kill lands on processed, uncommitted events, redelivered after
    # the restart; frequent checkpoints: the restart has one to restore.
    victim = new_worker(
        victim_topics,
        art,
        worker_commit_interval_s="60",
        worker_stats_checkpoint_s="3",
        **COVIS,
    ).start()
    reference.wait_ready()
    victim.wait_ready()

    producer = paced_replay(kafka_bootstrap, reference_topics.events, events)
    deadline = time.monotonic() + 180
    while victim.metric("streamrec_events_processed_total") < len(events) // 3 or (
        victim.metric("streamrec_stats_checkpoints_total") < 1
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.kill9()
    first_life = victim.log()
    victim.start()
    producer.join()
    victim.wait_ready(timeout=120)

    wait_for(lambda: counted(reference, len(events)) and counted(victim, len(events)), timeout=180)
    assert_same_statistics(global_stats(victim), global_stats(reference))
    second_life = victim.log()
    assert "global statistics caught up" in first_life
    restored = re.search(r"stats checkpoint \w+ restored: (\d+) events", second_life)
    assert restored, second_life[-3000:]
    caught_up = re.search(
        r"global statistics caught up in (\S+) s: (\d+) events, deltas-topic "
        r"offsets (\d+) to (\d+)",
        second_life,
    )
    assert caught_up
    # Only the tail after the checkpoint was replayed.
    assert int(caught_up.group(3)) > 0
    print(
        f"\nrestart: checkpoint of {restored.group(1)} events restored, deltas offsets "
        f"{caught_up.group(3)}..{caught_up.group(4)} replayed, caught up in {caught_up.group(1)} s "
        f"with {caught_up.group(2)} events; checkpoint bytes "
        f"{victim.metric('streamrec_stats_checkpoint_bytes'):.0f} (after restart)"
    )
