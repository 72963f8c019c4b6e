"""Locust load tests for a running streamrec worker.

Two kinds of user, pick one or both with locust's class selection:

* ``HttpFeedUser`` — reads ``GET /recommendations/{user_id}`` (the feed, tag ``read``) and
  posts events to ``POST /events`` (tag ``write``), as a front end would. ``--host`` is the
  worker's web address; ``--tags read`` makes it GET-only.
* ``KafkaEventUser`` — produces events straight to topic ``events`` and measures
  **event → recommendation latency**: a background consumer on ``recommendations`` matches
  each message's ``event_id`` to the send time and reports it to locust as request
  ``kafka event→recommendation`` (a missing answer after ``--answer-timeout`` is a failure).

``--user-rate R`` gives every user a fixed schedule of R tasks per second (locust's
``constant_throughput``) in place of its think time, so ``-u N`` users make a fixed-rate
load of N x R per second (``make load`` runs GET-only at 1,000/s this way).

Events come from a recorded stream (``--events-file``, cycled, with fresh event ids so the
engine's idempotence does not drop them) or, without one, from synthetic ids.

Example (worker on 127.0.0.1:6066, local broker; the first command writes the events file,
``make demo`` leaves the same data in ``out/demo/``)::

    streamrec data movielens --variant 100k --out data/ml100k.msgpack
    locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 60s \\
        --host http://127.0.0.1:6066 --events-file data/ml100k.msgpack

A missing or unreadable ``--events-file`` stops locust at start with one line.

The Kafka settings (bootstrap, topic names) come from the usual ``STREAMREC_`` variables.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from locust import User, between, constant_throughput, events, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from streamrec.config import Settings
from streamrec.streams.reach import checked
from streamrec.streams.recorded import read_events
from streamrec.streams.wire import Event, decode_recommendation, encode_event

SETTINGS = Settings()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--events-file", default="", help="Recorded stream to draw events from.")
    parser.add_argument("--users-count", type=int, default=1000, help="Synthetic user ids.")
    parser.add_argument("--items-count", type=int, default=1000, help="Synthetic item ids.")
    parser.add_argument(
        "--answer-timeout", type=float, default=10.0, help="Seconds to wait for a recommendation."
    )
    parser.add_argument(
        "--user-rate", type=float, default=0.0, help="Tasks per second per user (0: think time)."
    )


class EventSource:
    """An endless, thread-safe supply of fresh events (recorded ones cycled, or synthetic)."""

    def __init__(self, path: str, users: int, items: int) -> None:
        self._lock = threading.Lock()
        self._it: Iterator[Event]
        if path:
            recorded = list(itertools.islice(read_events(path), 200_000))
            if not recorded:
                raise ValueError(f"{path}: holds no events")
            self._it = itertools.cycle(recorded)
        else:
            rng = random.Random(7)
            self._it = (
                Event(
                    "",
                    f"u{rng.randrange(users)}",
                    f"i{rng.randrange(items)}",
                    rng.choice(("click", "click", "save")),
                    0,
                )
                for _ in itertools.count()
            )

    def next(self) -> Event:
        """The next event with a fresh id and the current time."""
        with self._lock:
            base = next(self._it)
        return Event(
            f"load-{uuid.uuid4().hex}",
            base.user_id,
            base.item_id,
            base.action,
            int(time.time() * 1000),
            base.surface,
            base.weight,
        )


class LatencyTracker:
    """Matches recommendations to the events that caused them and reports the latency."""

    def __init__(self, environment: Environment, timeout_s: float) -> None:
        self._env = environment
        self._timeout = timeout_s
        self._sent: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = checked(KafkaConsumer, SETTINGS.kafka_connection)(
            enable_auto_commit=False, group_id=None
        )
        self._listen_from_now()
        self._thread = threading.Thread(target=self._run, name="recs-consumer", daemon=True)
        self._thread.start()

    def _listen_from_now(self) -> None:
        """Hold every partition of ``recommendations`` at its current end before any event
        is sent.

        Subscribing with ``auto_offset_reset="latest"`` left the partitions unassigned and
        their start offsets unresolved until the first polls, while users were already
        sending: answers written before a partition's "latest" was looked up were never
        read and timed out (13 of 9,810 in a 15 s run). ``position`` blocks until each
        offset is resolved, so every answer to an event sent after this returns is read.
        """
        topic = SETTINGS.topic_recommendations
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic!r} not found on {SETTINGS.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:
            self._consumer.position(tp)

    def sent(self, event_id: str) -> None:
        with self._lock:
            self._sent[event_id] = time.perf_counter()

    def _fire(self, name: str, started: float, exc: Exception | None, length: int = 0) -> None:
        self._env.events.request.fire(
            request_type="kafka",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                for record in records:
                    event_id = decode_recommendation(record.value).get("event_id")
                    with self._lock:
                        started = self._sent.pop(event_id, None)
                    if started is not None:
                        self._fire("event→recommendation", started, None, len(record.value))
            self._expire()

    def _expire(self) -> None:
        deadline = time.perf_counter() - self._timeout
        with self._lock:
            late = [(eid, t) for eid, t in self._sent.items() if t < deadline]
            for eid, _ in late:
                del self._sent[eid]
        for _, started in late:  # one message for all: locust lists each distinct one
            self._fire("event→recommendation", started, TimeoutError("no answer in time"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


_shared: dict[str, Any] = {}


@events.init.add_listener
def _fresh_clock(**_: Any) -> None:
    """Refresh gevent's cached loop time before locust sets its ``--run-time`` timer.

    The loop reads the clock only when it runs; on a busy machine locust's start-up (its
    imports, ours) took 17 s before the loop first ran, the timer was set from the clock as
    it was then and fired 0.3 s into a 5 s run, before any request was made.
    """
    gevent.get_hub().loop.update_now()


@events.init.add_listener
def _load_events(environment: Environment, **_: Any) -> None:
    """Apply ``--user-rate`` and read ``--events-file`` once, as locust starts: a missing or
    bad file is one line and exit 1 here (raised at test start it would be a traceback in
    the middle of the run)."""
    opts = environment.parsed_options
    if opts is not None and opts.user_rate > 0:
        for cls in environment.user_classes:
            cls.wait_time = constant_throughput(opts.user_rate)
    if opts is None or not opts.events_file:
        return
    path = Path(opts.events_file)
    if not path.is_file():
        raise SystemExit(
            f"error: --events-file {path}: no such file; write one with `streamrec data "
            f"movielens --variant 100k --out {path}` or `streamrec record`"
        )
    try:
        _shared["source"] = EventSource(str(path), opts.users_count, opts.items_count)
    except (OSError, ValueError) as exc:  # BadRecord names the file and the record
        raise SystemExit(f"error: --events-file {exc}") from None


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # only the locust command line parses our options
        raise RuntimeError("run this file with the locust command: it needs --events-file etc.")
    if "source" not in _shared:  # synthetic events (a file is read at init)
        _shared["source"] = EventSource(opts.events_file, opts.users_count, opts.items_count)
    if any(cls.__name__ == "KafkaEventUser" for cls in environment.user_classes):
        _shared["tracker"] = LatencyTracker(environment, opts.answer_timeout)
        _shared["producer"] = checked(KafkaProducer, SETTINGS.kafka_connection)(linger_ms=1, acks=1)


@events.test_stop.add_listener
def _stop(environment: Environment, **_: Any) -> None:
    if "producer" in _shared:
        _shared.pop("producer").close()
    if "tracker" in _shared:
        _shared.pop("tracker").close()


class HttpFeedUser(FastHttpUser):
    """A front end: mostly reads the feed, sometimes reports an action (locust's fast HTTP
    client: one locust process then makes thousands of requests per second)."""

    wait_time = between(0.01, 0.1)

    @tag("read")
    @task(5)
    def read_feed(self) -> None:
        event = _shared["source"].next()
        self.client.get(f"/recommendations/{event.user_id}?k=20", name="/recommendations/{user}")

    @tag("write")
    @task(1)
    def post_event(self) -> None:
        event = _shared["source"].next()
        self.client.post("/events", json=event.to_map(), name="/events")


class KafkaEventUser(User):
    """A producer of events; latency is measured until the matching recommendation."""

    wait_time = between(0.001, 0.01)

    @task
    def produce_event(self) -> None:
        event = _shared["source"].next()
        _shared["tracker"].sent(event.event_id)
        _shared["producer"].send(
            SETTINGS.topic_events, key=event.user_id.encode(), value=encode_event(event)
        )
