"""The locust file's latency tracker (loadtest/locustfile.py) on the real broker.

Run in a subprocess: importing locust monkey-patches sockets and threads with gevent,
which must not leak into the rest of the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"

#: Creates a tracker, then at once writes the answer to an event to `recommendations`, as a
#: fast worker does; prints how many of the tracker's reports were answers (no timeout).
SCRIPT = textwrap.dedent(
    """
    import locust  # gevent's patching first, as the locust command does
    import importlib.util, sys, time
    from kafka import KafkaProducer
    from locust.env import Environment
    from streamrec.streams.wire import Recommendation, pack

    spec = importlib.util.spec_from_file_location("locustfile", sys.argv[1])
    locustfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(locustfile)
    settings = locustfile.SETTINGS
    env = Environment()
    reports = []
    env.events.request.add_listener(lambda exception, **_: reports.append(exception))
    tracker = locustfile.LatencyTracker(env, timeout_s=5.0)
    tracker.sent("e1")
    rec = Recommendation("u1", ["i1"], [1.0], "e1", 0, 0, "m", "popular")
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    producer.send(settings.topic_recommendations, key=b"u1", value=pack(rec.to_map())).get(30)
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        time.sleep(0.05)
    tracker.close()
    print("answered", sum(exc is None for exc in reports), "of", len(reports))
    """
)


def test_the_tracker_reads_the_answer_to_an_event_sent_right_after_it_starts(
    kafka_bootstrap, make_topic
):
    """Before, the tracker subscribed with offset reset "latest" and looked the offsets up
    only at its first polls: answers written in between were never read (they timed out)."""
    env = {
        "STREAMREC_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "STREAMREC_TOPIC_RECOMMENDATIONS": make_topic("loc-rec", 4),
        "PATH": str(Path(sys.executable).parent),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(LOCUSTFILE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-4:] == ["answered", "1", "of", "1"], done.stdout
