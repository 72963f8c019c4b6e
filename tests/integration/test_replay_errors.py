"""Replay's failures on the real broker are one clear line and a non-zero exit: a topic that
does not exist (at once, not after a 60 s metadata timeout), a file with nothing valid in it;
and its pace is never a surprise."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_replay_record import cli, generated_events, read_topic

from streamrec.config import Settings
from streamrec.streams.recorded import RecordedWriter, write_events
from streamrec.streams.topics import admin_client, delete_topics, describe_topics
from streamrec.streams.wire import Event

pytestmark = pytest.mark.integration


def error_line(output: str) -> str:
    """The last line of ``output``, which must be the one error line."""
    last = output.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in output, output
    return last


def topic_exists(settings: Settings, topic: str) -> bool:
    with admin_client(settings.kafka_connection) as admin:
        return topic in describe_topics(admin, [topic])


def stream_of(tmp_path: Path, n: int) -> Path:
    """A recorded stream of ``n`` good events."""
    source = tmp_path / "s.msgpack"
    write_events(source, generated_events(n))
    return source


def test_a_missing_topic_stops_the_replay_at_once_and_says_how_to_create_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    topic = "replay-missing-topic-x1"
    code, output = cli(kafka_settings, "replay", str(stream_of(tmp_path, 10)), "--topic", topic)
    assert code == 1
    assert error_line(output) == (
        f"error: topic {topic!r} does not exist on {kafka_settings.bootstrap_servers} (this "
        "cluster does not create topics on first use): --create-topic creates it with "
        f"{kafka_settings.partitions} partitions; `streamrec topics create` makes streamrec's "
        "own topics"
    )
    assert not topic_exists(kafka_settings, topic)


def test_create_topic_makes_the_missing_topic_and_replays_into_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    topic = "replay-created-topic-x1"
    replay = ("replay", str(stream_of(tmp_path, 25)), "--topic", topic)
    try:
        code, output = cli(kafka_settings, *replay, "--create-topic")
        assert code == 0, output
        assert f"created topic {topic!r} ({kafka_settings.partitions} partitions)" in output
        assert "sent 25 · rejected 0" in output
        assert len(read_topic(kafka_settings, topic)) == 25
        # A second run finds it: nothing is created twice.
        code, output = cli(kafka_settings, *replay, "--create-topic")
        assert code == 0 and "created topic" not in output
    finally:
        with admin_client(kafka_settings.kafka_connection) as admin:
            delete_topics(admin, [topic])


def random_bytes(path: Path) -> None:
    path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(4000)))


def text(path: Path) -> None:
    path.write_text("user_id,item_id,ts\nu1,i1,1\nu2,i2,2\n")


def corrupt_zst(path: Path) -> None:
    with RecordedWriter(path) as writer:
        writer.write_all(generated_events(200))
    data = bytearray(path.read_bytes())
    data[8:40] = bytes(32)  # the frame's first block, overwritten
    path.write_bytes(bytes(data))


def bad_events_only(path: Path) -> None:
    write_events(path, [Event(f"e{i}", "u1", "i1", "click", i) for i in range(3)])
    path.write_bytes(path.read_bytes().replace(b"click", b"klick"))


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("random.msgpack", random_bytes),
        ("ratings.msgpack", text),
        ("broken.msgpack.zst", corrupt_zst),
        ("unknown-actions.msgpack", bad_events_only),
    ],
)
def test_a_file_with_no_valid_event_sends_nothing_and_exits_1(
    kafka_settings: Settings, make_topic, tmp_path: Path, name: str, make
) -> None:
    source = tmp_path / name
    make(source)
    topic = make_topic("replay-nothing", partitions=1)
    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic)
    assert code == 1
    line = error_line(output)
    assert line.startswith("error: nothing was sent: none of the ")
    assert f"records of {source} is a valid event (a recorded stream is concatenated" in line
    assert "sent 0 · rejected" in output
    assert read_topic(kafka_settings, topic) == []


@pytest.mark.parametrize("name", ["empty.msgpack", "empty.msgpack.zst"])
def test_an_empty_file_sends_nothing_and_exits_1(
    kafka_settings: Settings, make_topic, tmp_path: Path, name: str
) -> None:
    source = tmp_path / name
    source.write_bytes(b"")
    code, output = cli(kafka_settings, "replay", str(source), "--topic", make_topic("replay-empty"))
    assert code == 1
    assert error_line(output) == f"error: nothing was sent: {source} holds no records"


def hourly(n: int) -> list[Event]:
    return [Event(f"h{i}", f"u{i}", "i1", "click", i * 3_600_000) for i in range(n)]


def test_by_default_replay_sends_as_fast_as_possible(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    """Events an hour apart: at the old real-time default this replay took two hours."""
    source = tmp_path / "hourly.msgpack"
    write_events(source, hourly(3))
    code, output = cli(kafka_settings, "replay", str(source), "--topic", make_topic("replay-fast"))
    assert code == 0, output
    assert "sent 3 · rejected 0" in output and "pacing" not in output


def test_a_paced_replay_first_says_how_long_it_will_take(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    source = tmp_path / "s.msgpack"
    write_events(source, [Event(f"s{i}", "u1", "i1", "click", i * 1000) for i in range(20)])
    topic = make_topic("replay-paced", partitions=1)
    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--speed", "100")
    assert code == 0, output
    assert (
        "pacing: 20 events spanning 19.0 s of event time: at --speed 100 that takes about 0.2 s "
        "(--max sends as fast as possible)"
    ) in output
    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--rate", "40")
    assert code == 0, output
    assert "pacing: 20 events at 40/s take about 0.5 s (--max sends" in output
