"""Replay and record on the real broker: what goes in comes back, exactly; bad records are
reported at their exact position and never stop a good one; failed deliveries are counted.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.config import Settings
from streamrec.streams.pacing import AsFastAsPossible, Pacer
from streamrec.streams.record import Recorder, make_consumer, messages_to_end
from streamrec.streams.recorded import Record, RecordedWriter, read_events, read_records
from streamrec.streams.rejects import RejectFile
from streamrec.streams.replay import Replayer, close_producer, make_producer
from streamrec.streams.wire import Event, encode_event, pack

pytestmark = pytest.mark.integration


def generated_events(
    n: int, seed: int = 0, users: int = 2_000, items: int = 5_000
) -> Iterator[Event]:
    """A seeded stream: skewed users and items, click/save mix, non-decreasing ms times."""
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    for i in range(n):
        ts += rng.randint(0, 50)
        user = min(int(rng.paretovariate(1.1)), users) - 1
        item = rng.randrange(items) if rng.random() < 0.5 else rng.randrange(items // 50)
        action = "save" if rng.random() < 0.2 else "click"
        yield Event(f"e{seed}-{i}", f"u{user}", f"i{item}", action, ts)


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    """Run the streamrec CLI in-process against the test cluster; (exit code, output)."""
    env = {"STREAMREC_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "COLUMNS": "300"}
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def record_all(settings: Settings, topic: str, out: Path) -> list[bytes]:
    """Everything in ``topic`` now, recorded through the CLI; the recorded values."""
    code, output = cli(settings, "record", topic, str(out), "--from-beginning", "--to-end")
    assert code == 0, output
    return [r.raw for r in read_records(out) if r.event is not None]


def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every message now in ``topic`` (with keys and partitions), read up to the end offsets."""
    return list(messages_to_end(settings.kafka_connection, topic))


def by_user(values: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for value in values:
        out[msgpack.unpackb(value)["user_id"]].append(value)
    return out


@pytest.mark.slow
def test_100k_events_replayed_and_recorded_back_are_the_same_stream(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    source = tmp_path / "stream.msgpack"
    with RecordedWriter(source) as writer:
        writer.write_all(generated_events(100_000, seed=1))
    original = [encode_event(e) for e in read_events(source)]
    topic = make_topic("replay-100k", partitions=8)

    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--max")
    assert code == 0, output
    assert "sent 100,000 · rejected 0 · failed 0 · unknown 0" in output

    recorded = record_all(kafka_settings, topic, tmp_path / "back.msgpack.zst")
    assert len(recorded) == len(original) == 100_000
    assert Counter(recorded) == Counter(original)
    assert by_user(recorded) == by_user(original)  # per user: the original order
    assert not (tmp_path / "stream.msgpack.rejects.msgpack").exists()


def bad_input_file(path: Path) -> tuple[list[bytes], dict[int, tuple[int, str]]]:
    """A stream with good events, wrong types, unknown actions, a missing field, an
    undecodable string and a truncated last record. Returns the good events' bytes and,
    per bad record index, its (byte offset, reason)."""
    good = [encode_event(e) for e in generated_events(40, seed=2, users=7)]
    records: list[tuple[bytes, str | None]] = [(g, None) for g in good]
    base = {"event_id": "bad", "user_id": "u1", "item_id": "i1", "action": "click", "ts": 1}
    records.insert(3, (pack({**base, "ts": "yesterday"}), "wrong_type"))
    records.insert(10, (pack({**base, "action": "purchase"}), "unknown_action"))
    records.insert(11, (pack({**base, "user_id": 17}), "wrong_type"))
    records.insert(25, (pack({k: v for k, v in base.items() if k != "item_id"}), "missing_field"))
    records.insert(30, (pack({**base, "action": "like"}), "unknown_action"))
    records.insert(33, (b"\xa2\xff\xfe", "not_msgpack"))  # well framed, but not UTF-8
    truncated = encode_event(Event("cut", "u2", "i2", "save", 5))[:-4]
    records.append((truncated, "truncated"))
    bad: dict[int, tuple[int, str]] = {}
    offset = 0
    with path.open("wb") as f:
        for index, (data, reason) in enumerate(records):
            if reason is not None:
                bad[index] = (offset, reason)
            f.write(data)
            offset += len(data)
    return good, bad


def test_bad_records_are_rejected_at_their_exact_position_and_good_ones_delivered(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.msgpack"
    good, bad = bad_input_file(source)
    topic = make_topic("replay-bad", partitions=8)

    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--rate", "5000")
    assert code == 0, output
    assert f"sent {len(good)} · rejected {len(bad)} · failed 0 · unknown 0" in output
    for index, (offset, reason) in bad.items():
        assert f"record {index} (byte {offset}): {reason}:" in output

    with (tmp_path / "mixed.msgpack.rejects.msgpack").open("rb") as f:
        rejects = list(msgpack.Unpacker(f))
    assert {r["index"]: (r["offset"], r["reason"]) for r in rejects} == bad
    assert all(r["raw"] for r in rejects if r["reason"] != "truncated")

    # Every good record is in Kafka, once, keyed by its user id, per user in file order.
    messages = read_topic(kafka_settings, topic)
    assert Counter(m.value for m in messages) == Counter(good)
    assert all(m.key.decode() == msgpack.unpackb(m.value)["user_id"] for m in messages)
    partitions_of_user: dict[bytes, set[int]] = defaultdict(set)
    for m in messages:
        partitions_of_user[m.key].add(m.partition)
    assert all(len(p) == 1 for p in partitions_of_user.values())
    in_offset_order = sorted(messages, key=lambda m: (m.partition, m.offset))
    assert by_user([m.value for m in in_offset_order]) == by_user(good)


def test_strict_replay_stops_at_the_first_bad_record(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.msgpack"
    good, bad = bad_input_file(source)
    first = min(bad)
    topic = make_topic("replay-strict", partitions=2)

    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--max", "--strict")
    assert code == 1
    assert f"record {first} (byte {bad[first][0]})" in output
    assert Counter(record_all(kafka_settings, topic, tmp_path / "back.msgpack")) == Counter(
        good[:first]
    )


def test_events_the_broker_refuses_are_counted_and_kept_never_dropped_silently(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    """Every 10th event is bigger than the topic accepts. kafka-python 3.0 treats that as
    a fatal producer error and leaves the batch's futures unresolved, so its events end up
    ``delivery_unknown`` (or ``delivery_failed`` where the client does resolve them): never
    counted as sent, never missing from the reject file."""
    topic = make_topic("replay-refused", partitions=1)
    admin = KafkaAdminClient(**kafka_settings.kafka_connection.client_options())
    admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "400"})]
    )
    admin.close()
    events = [
        Event(f"e{i}", "u1", "i1", "click", i, surface="x" * (600 if i % 10 == 3 else 5))
        for i in range(50)
    ]
    too_big = {encode_event(e) for e in events if len(e.surface or "") == 600}
    source = tmp_path / "big.msgpack"
    with RecordedWriter(source) as writer:
        writer.write_all(events)

    code, output = cli(kafka_settings, "replay", str(source), "--topic", topic, "--max")
    assert code == 1, output
    with (tmp_path / "big.msgpack.rejects.msgpack").open("rb") as f:
        rejects = list(msgpack.Unpacker(f))
    assert {r["reason"] for r in rejects} <= {"delivery_failed", "delivery_unknown"}
    not_acked = Counter(r["raw"] for r in rejects)
    acked = Counter(encode_event(e) for e in events) - not_acked
    assert too_big <= set(not_acked)
    assert sum(not_acked.values()) + sum(acked.values()) == len(events)
    failed = sum(r["reason"] == "delivery_failed" for r in rejects)
    unknown = len(rejects) - failed
    assert (
        f"sent {sum(acked.values())} · rejected 0 · failed {failed} · unknown {unknown}" in output
    )
    delivered = Counter(record_all(kafka_settings, topic, tmp_path / "back.msgpack"))
    assert acked <= delivered  # what was counted sent is in Kafka
    assert not set(delivered) & too_big
    assert not set(delivered) & {r["raw"] for r in rejects if r["reason"] == "delivery_failed"}


def test_record_from_now_sees_only_new_messages_and_rejects_non_events(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    topic = make_topic("record-now", partitions=3)
    producer = KafkaProducer(**kafka_settings.kafka_connection.client_options())
    old = [encode_event(e) for e in generated_events(20, seed=3)]
    for value in old:
        producer.send(topic, value)
    producer.flush()

    out = tmp_path / "now.msgpack"
    rejects = RejectFile(tmp_path / "now.rejects.msgpack")
    consumer = make_consumer(kafka_settings)
    recorder = Recorder(consumer, topic, rejects, limit=30, idle_timeout_s=20)
    recorder.attach(from_beginning=False)
    new = [encode_event(e) for e in generated_events(30, seed=4)]
    for value in new[:15]:
        producer.send(topic, value, partition=0)
    producer.send(topic, b"\xc1 not msgpack", partition=0)
    for value in new[15:]:
        producer.send(topic, value, partition=0)
    producer.flush()
    with RecordedWriter(out) as writer:
        stats = recorder.run(writer)
    consumer.close()
    rejects.close()
    producer.close()

    assert stats.stopped == "limit"
    assert (stats.written, stats.rejected) == (30, 1)
    assert [encode_event(e) for e in read_events(out)] == new  # one partition: exact order
    with rejects.path.open("rb") as f:
        (reject,) = msgpack.Unpacker(f)
    assert (reject["partition"], reject["reason"]) == (0, "not_msgpack")
    assert reject["raw"] == b"\xc1 not msgpack"


def test_record_stops_after_the_idle_timeout_with_a_complete_file(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    topic = make_topic("record-idle", partitions=2)
    out = tmp_path / "idle.msgpack.zst"
    code, output = cli(kafka_settings, "record", topic, str(out), "--idle-timeout", "0.5")
    assert code == 0, output
    assert "stopped: idle" in output
    assert list(read_records(out)) == []  # an empty but valid (complete zstd frame) file


def test_record_of_a_missing_topic_is_one_line_error(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    code, output = cli(kafka_settings, "record", "no-such-topic-x1", str(tmp_path / "x.msgpack"))
    assert code == 1
    assert "topic 'no-such-topic-x1' does not exist" in output
    assert not (tmp_path / "x.msgpack").exists()


def test_ctrl_c_flushes_what_was_sent_and_stops_cleanly(
    kafka_settings: Settings, make_topic, tmp_path: Path
) -> None:
    source = tmp_path / "stream.msgpack"
    with RecordedWriter(source) as writer:
        writer.write_all(generated_events(5_000, seed=5))

    def interrupted_after(n: int) -> Iterator[Record]:
        for record in read_records(source):
            if record.index == n:
                raise KeyboardInterrupt  # what Ctrl-C raises in the replaying thread
            yield record

    topic = make_topic("replay-ctrl-c", partitions=4)
    producer = make_producer(kafka_settings)
    replayer = Replayer(
        producer, topic, Pacer(AsFastAsPossible()), RejectFile(tmp_path / "rejects.msgpack")
    )
    stats = replayer.run(interrupted_after(3_000))
    close_producer(producer)
    assert stats.interrupted and (stats.queued, stats.sent) == (3_000, 3_000)
    sent = [r.raw for r in read_records(source)][:3_000]
    assert Counter(record_all(kafka_settings, topic, tmp_path / "back.msgpack")) == Counter(sent)
