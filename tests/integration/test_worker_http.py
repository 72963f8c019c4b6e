"""The worker's HTTP API on a real worker: probes, bearer-token auth, POST /events (202,
400 with the reason, 413), GET /recommendations (k, exclude, cold users), /metrics."""

from __future__ import annotations

import time

import pytest
import requests
from worker_support import Topics

from streamrec.streams.wire import Event, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "s3cret-token"
NOW = int(time.time() * 1000)


def test_http_api_with_auth(make_topic, new_worker, artifacts):
    _, art = artifacts
    worker = new_worker(Topics.make(make_topic, partitions=4), art, worker_auth_token=TOKEN)
    worker.start().wait_ready()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = worker.url

    assert requests.get(f"{url}/healthz").status_code == 200
    assert requests.get(f"{url}/readyz").json()["ready"] is True
    # No scrape token set: /metrics is open (STREAMREC_WORKER_METRICS_TOKEN closes it).
    assert "streamrec_events_in_total" in requests.get(f"{url}/metrics").text
    assert requests.get(f"{url}/recommendations/1").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(f"{url}/recommendations/1", headers=wrong).status_code == 401

    event = {"event_id": "http-1", "user_id": "7", "item_id": "50", "action": "save", "ts": NOW}
    assert requests.post(f"{url}/events", json=event).status_code == 401
    accepted = requests.post(f"{url}/events", json=event, headers=auth)
    assert accepted.status_code == 202 and accepted.json()["event_id"] == "http-1"
    packed = encode_event(Event("http-2", "7", "100", "click", NOW + 1))
    headers = {**auth, "Content-Type": "application/msgpack"}
    assert requests.post(f"{url}/events", data=packed, headers=headers).status_code == 202

    bad = {**event, "action": "purchase"}
    refused = requests.post(f"{url}/events", json=bad, headers=auth)
    assert refused.status_code == 400 and refused.json()["reason"] == "unknown_action"
    garbage = requests.post(f"{url}/events", data=b"\xc1\x00", headers=headers)
    assert garbage.status_code == 400 and garbage.json()["reason"] == "not_msgpack"
    huge = {**event, "surface": "x" * 10_000}
    too_big = requests.post(f"{url}/events", json=huge, headers=auth)
    assert too_big.status_code == 413 and too_big.json()["reason"] == "oversize"

    deadline = time.monotonic() + 30
    while True:
        rec = requests.get(f"{url}/recommendations/7", params={"k": 5}, headers=auth).json()
        if rec["event_id"] == "http-2":
            break
        assert time.monotonic() < deadline, rec
        time.sleep(0.2)
    assert rec["source"] == "personalized" and len(rec["items"]) == 5
    assert not {"50", "100"} & set(rec["items"])
    dropped = rec["items"][:2]
    fewer = requests.get(
        f"{url}/recommendations/7", params={"k": 5, "exclude": ",".join(dropped)}, headers=auth
    ).json()
    assert not set(dropped) & set(fewer["items"])
    assert fewer["items"] == [i for i in rec["items"] if i not in dropped] + fewer["items"][3:]
    assert (
        requests.get(f"{url}/recommendations/7", params={"k": 0}, headers=auth).status_code == 400
    )
