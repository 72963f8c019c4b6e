"""A real worker against bad input and its HTTP surface: a near-limit record and bad
timestamps never stop the stream or touch the statistics, every route refuses a request
without a token (enumerated from the running app's router), and fuzzing the served
OpenAPI description gives no 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import msgpack
import pytest
import requests
from worker_support import Topics, produce, produce_events, read_topic

from streamrec.streams.connection import KafkaConnection
from streamrec.streams.dlq import decode_dlq_record
from streamrec.streams.topics import admin_client, delete_topics, ensure_topics
from streamrec.streams.wire import Event, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "s3cret-token"
SCRAPE = "scrape-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def now_ms() -> int:
    return int(time.time() * 1000)


def good_events(n: int, prefix: str, users: int = 20) -> list[Event]:
    ts = now_ms()
    return [
        Event(f"{prefix}-{i}", f"u{i % users}", str(1 + i % 50), "click", ts + i) for i in range(n)
    ]


def ready_worker(make_topic, new_worker, artifacts, **env: str):
    """(topics, worker) of a ready worker on two-partition topics of its own."""
    topics = Topics.make(make_topic, partitions=2)
    worker = new_worker(topics, artifacts[1], partitions=2, **env)
    worker.start().wait_ready()
    return topics, worker


def answered(bootstrap: str, topic: str, ids: set[str], timeout: float = 120) -> set[str]:
    recs = read_topic(
        bootstrap, topic, lambda v: ids <= {r["event_id"] for r in v}, timeout=timeout
    )
    return ids & {r["event_id"] for r in recs}


def test_a_near_limit_event_then_good_events_all_answered_and_it_in_the_dlq(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    topics, worker = ready_worker(make_topic, new_worker, artifacts)
    before = [Event(f"pre-{i}", "u1", str(1 + i), "click", now_ms()) for i in range(5)]
    near = Event("near", "u1", "1", "click", now_ms(), surface="x" * 1_048_300)
    value = encode_event(near)
    assert len(value) > 1_048_300  # with the metadata a copy of it no longer fits 1 MB
    after = good_events(300, "post")
    produce_events(kafka_bootstrap, topics.events, before)
    produce(kafka_bootstrap, topics.events, [(b"u1", value)])
    produce_events(kafka_bootstrap, topics.events, after)

    ids = {e.event_id for e in before + after}
    assert answered(kafka_bootstrap, topics.recommendations, ids) == ids
    [dead] = read_topic(kafka_bootstrap, topics.dlq, lambda v: len(v) >= 1, decode_dlq_record)
    assert dead["reason"] == "oversize" and dead["value_truncated"] is True
    assert dead["value_size"] == len(value) and dead["value"] == value[: len(dead["value"])]
    assert worker.alive() and worker.get("/readyz").status_code == 200


def test_a_dlq_record_the_broker_refuses_stops_the_worker_without_committing(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    """The DLQ topic takes 4000-byte messages at most; a worker keeping 16 KiB of a rejected
    record cannot dead-letter a 10 kB one: after its retries it exits with an error and
    commits nothing of that batch. Restarted keeping 1 KiB, it gets the same records again
    (none was lost), dead-letters the bad one and answers all the others."""
    _, art = artifacts
    topics = Topics.make(make_topic, partitions=1)
    topics.dlq = f"w-small-dlq-{topics.events[-10:]}"
    with admin_client(KafkaConnection(kafka_bootstrap)) as admin:
        ensure_topics(admin, [topics.dlq], 1, configs={"max.message.bytes": "4000"})
    good = good_events(40, "good")
    produce_events(kafka_bootstrap, topics.events, good[:20])
    produce(kafka_bootstrap, topics.events, [(b"u1", b"\xc1" * 10_000)])
    produce_events(kafka_bootstrap, topics.events, good[20:])
    worker = new_worker(topics, art, partitions=1, worker_dlq_send_attempts="2")
    worker.start()
    assert worker.proc.wait(timeout=180) == 1, worker.log()[-3000:]
    assert "could not be finished" in worker.log()

    worker.extra_env["STREAMREC_WORKER_DLQ_MAX_KEPT_BYTES"] = "1024"
    worker.start().wait_ready()
    ids = {e.event_id for e in good}
    assert answered(kafka_bootstrap, topics.recommendations, ids) == ids
    [dead] = read_topic(kafka_bootstrap, topics.dlq, lambda v: len(v) >= 1, decode_dlq_record)
    assert dead["reason"] == "oversize" and dead["value_size"] == 10_000
    assert (dead["offset"], len(dead["value"])) == (20, 1024)
    with admin_client(KafkaConnection(kafka_bootstrap)) as admin:
        delete_topics(admin, [topics.dlq])


def test_bad_timestamps_go_to_the_dlq_and_leave_the_popular_list_alone(
    kafka_bootstrap, make_topic, new_worker, artifacts
):
    topics, worker = ready_worker(make_topic, new_worker, artifacts)
    warm = good_events(100, "warm")
    produce_events(kafka_bootstrap, topics.events, warm)
    ids = {e.event_id for e in warm}
    assert answered(kafka_bootstrap, topics.recommendations, ids) == ids
    popular = worker.get("/recommendations/never-seen", k=20).json()
    assert popular["source"] == "popular" and len(popular["items"]) == 20

    bad = [
        Event("future", "u1", "2", "click", 2**64 - 1),
        Event("micros", "u2", "3", "save", now_ms() * 1000),
    ]
    produce_events(kafka_bootstrap, topics.events, bad)
    dead = read_topic(kafka_bootstrap, topics.dlq, lambda v: len(v) >= 2, decode_dlq_record)
    assert sorted((d["reason"], msgpack.unpackb(d["value"])["event_id"]) for d in dead) == [
        ("ts_out_of_range", "future"),
        ("ts_out_of_range", "micros"),
    ]
    again = worker.get("/recommendations/never-seen", k=20).json()
    assert again["items"] == popular["items"]

    refused = requests.post(f"{worker.url}/events", json={**bad[0].to_map()}, timeout=10)
    assert refused.status_code == 400 and refused.json()["reason"] == "ts_out_of_range"
    body = '{"event_id": "big", "user_id": "u", "item_id": "1", "action": "click", "ts": 1'
    overflow = requests.post(
        f"{worker.url}/events",
        data=body + "0" * 30 + "}",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert overflow.status_code == 400 and overflow.json()["reason"] == "bad_value"


def concrete(path: str) -> str:
    """A request path for a route template: each ``{param}`` becomes a plausible value."""
    return re.sub(r"{(\w+)}", lambda m: "user_state" if m.group(1) == "name" else "7", path)


def test_every_route_refuses_a_request_without_the_token(make_topic, new_worker, artifacts):
    _, worker = ready_worker(
        make_topic,
        new_worker,
        artifacts,
        worker_auth_token=TOKEN,
        worker_metrics_token=SCRAPE,
        worker_faust_views="true",  # Faust's /router and /table: guarded like the rest
    )
    assert requests.get(f"{worker.url}/openapi.json", timeout=10).status_code == 401
    document = requests.get(f"{worker.url}/openapi.json", headers=AUTH, timeout=10).json()
    routes = [(p, m) for p, ops in document["paths"].items() for m in ops]
    assert {"/table/{name}/{key}/", "/router/{name}/{key}/", "/events"} <= {p for p, _ in routes}

    refusals = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN})
    answered_anyway = []
    for path, method in routes:
        url = f"{worker.url}{concrete(path)}"
        for headers in refusals:
            status = requests.request(method, url, headers=headers, timeout=10).status_code
            if status != 401:
                answered_anyway.append((method.upper(), path, status))
    probes = [(m.upper(), p, 200) for p, m in routes if p in ("/healthz", "/readyz")]
    assert answered_anyway == [probe for probe in probes for _ in refusals]
    assert requests.get(f"{worker.url}/table/", headers=AUTH, timeout=10).ok
    metrics = f"{worker.url}/metrics"
    assert requests.get(metrics, headers={"Authorization": f"Bearer {SCRAPE}"}, timeout=10).ok
    assert requests.get(metrics, headers=AUTH, timeout=10).ok


def test_fuzzing_the_openapi_description_gives_no_server_error(
    make_topic, new_worker, artifacts, tmp_path
):
    _, worker = ready_worker(make_topic, new_worker, artifacts, worker_auth_token=TOKEN)
    run = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis as s; s()"]
    result = subprocess.run(
        [
            *run,
            "run",
            f"{worker.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            "150",
            "--seed",
            "15",
            "--workers",
            "1",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,  # its example cache (.schemathesis/) stays out of the checkout
    )
    print(result.stdout[-1500:])  # schemathesis' summary: operations, requests, failures
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert worker.alive()
