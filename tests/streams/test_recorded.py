"""Recorded streams: files round-trip exactly, every bad record is reported at its exact
position while every good one is still delivered, and reading streams in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgpack
import pytest
import zstandard

from streamrec.streams import recorded
from streamrec.streams.recorded import (
    RecordedWriter,
    TimeSpan,
    is_compressed,
    read_events,
    read_records,
    time_span,
    write_events,
)
from streamrec.streams.wire import Event, InvalidRecord, Reason, encode_event, pack


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(f"e{i}", f"u{i % 7}", f"i{i % 11}", "save" if i % 3 else "click", 1_000 + i)
        for i in range(start, start + n)
    ]


def decompressed(path: Path) -> bytes:
    data = path.read_bytes()
    if is_compressed(path):
        return zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    return data


@pytest.mark.parametrize("name", ["s.msgpack", "s.msgpack.zst"])
def test_events_round_trip_in_order_and_raw_bytes_are_the_files_bytes(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "nested" / name
    original = events(5000)
    assert write_events(path, original) == 5000
    assert list(read_events(path)) == original
    records = list(read_records(path))
    assert [r.index for r in records] == list(range(5000))
    assert b"".join(r.raw for r in records) == decompressed(path)
    assert records[1].offset == len(encode_event(original[0]))


def test_a_zst_file_of_several_frames_is_read_to_its_end(tmp_path: Path) -> None:
    first, second = tmp_path / "a.msgpack.zst", tmp_path / "b.msgpack.zst"
    write_events(first, events(10))
    write_events(second, events(5, start=10))
    both = tmp_path / "ab.msgpack.zst"
    both.write_bytes(first.read_bytes() + second.read_bytes())
    assert list(read_events(both)) == events(15)


def bad_file(path: Path) -> tuple[list[tuple[int, int, Reason | None]], list[Event]]:
    """A file mixing good events with every well-framed kind of bad record; returns the
    expected (index, offset, reason) of each record and the good events."""
    good = events(4)
    parts: list[tuple[bytes, Reason | None]] = [
        (encode_event(good[0]), None),
        (pack({**good[1].to_map(), "ts": "yesterday"}), Reason.WRONG_TYPE),
        (encode_event(good[1]), None),
        (pack({**good[2].to_map(), "action": "purchase"}), Reason.UNKNOWN_ACTION),
        (msgpack.packb({1: "int keys"}), Reason.MISSING_FIELD),
        (b"\xa7user_id", Reason.NOT_A_MAP),
        (msgpack.packb({(1, 2): "array key"}), Reason.NOT_MSGPACK),
        (pack({**good[2].to_map(), "surface": "x" * 5000}), Reason.OVERSIZE),
        (encode_event(good[2]).replace(b"\xa2u2", b"\xa2\xff\xfe"), Reason.NOT_MSGPACK),
        (encode_event(good[2]), None),
        (encode_event(good[3]), None),
    ]
    expected = []
    offset = 0
    for index, (data, reason) in enumerate(parts):
        expected.append((index, offset, reason))
        offset += len(data)
    path.write_bytes(b"".join(data for data, _ in parts))
    return expected, good


@pytest.mark.parametrize("chunk", [1 << 20, 7])  # 7: every record straddles reads
def test_each_bad_record_is_reported_at_its_exact_position_and_every_good_one_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(recorded, "_CHUNK", chunk)
    path = tmp_path / "bad.msgpack"
    expected, good = bad_file(path)
    records = list(read_records(path))
    got = [(r.index, r.offset, r.error.reason if r.error else None) for r in records]
    assert got == expected
    assert [r.event for r in records if r.event is not None] == good
    assert b"".join(r.raw for r in records) == path.read_bytes()
    assert records[1].position == f"record 1 (byte {expected[1][1]})"


def test_a_truncated_last_record_is_reported_with_its_position_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.msgpack"
    write_events(path, events(3))
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    *good, last = read_records(path)
    assert [r.event for r in good] == events(2)
    assert last.error is not None and last.error.reason is Reason.TRUNCATED
    assert (last.index, last.offset) == (2, good[-1].offset + len(good[-1].raw))
    assert last.raw == data[last.offset : -5]
    left = len(data) - 5 - last.offset
    assert last.error.detail == f"file ends inside a record ({left} bytes left)"


def test_bytes_that_are_not_msgpack_end_the_file_after_being_reported(tmp_path: Path) -> None:
    path = tmp_path / "g.msgpack"
    path.write_bytes(encode_event(events(1)[0]) + b"\xc1garbage" + encode_event(events(1)[0]))
    first, garbage = read_records(path)
    assert first.event == events(1)[0]
    assert garbage.error is not None and garbage.error.reason is Reason.NOT_MSGPACK
    assert "rest of the file is unreadable" in garbage.error.detail
    assert garbage.offset == len(first.raw)


def test_a_record_too_large_to_buffer_is_reported_not_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorded, "_CHUNK", 1024)
    path = tmp_path / "huge.msgpack"
    path.write_bytes(encode_event(events(1)[0]) + pack({"blob": b"x" * 100_000}))
    first, huge = read_records(path, max_bytes=4096)
    assert first.event is not None
    assert huge.error is not None and huge.error.reason is Reason.OVERSIZE
    assert huge.offset == len(first.raw)


def test_a_corrupt_zst_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "c.msgpack.zst"
    path.write_bytes(b"this is not zstd")
    (record,) = read_records(path)
    assert record.error is not None and record.error.reason is Reason.NOT_MSGPACK
    assert "zstd" in record.error.detail


def test_read_events_raises_at_the_first_bad_record_naming_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.msgpack"
    expected, _ = bad_file(path)
    reader = read_events(path)
    assert next(reader) == events(1)[0]
    with pytest.raises(InvalidRecord) as caught:
        next(reader)
    assert caught.value.reason is Reason.WRONG_TYPE
    assert f"record 1 (byte {expected[1][1]})" in caught.value.detail
    assert str(path) in caught.value.detail


def test_a_string_that_is_not_utf8_says_so_and_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "latin1.msgpack"
    path.write_bytes(encode_event(events(1)[0]) + b"\xa4caf\xe9")  # "café" in Latin-1
    good, bad = read_records(path)
    assert good.event is not None and bad.error is not None
    assert bad.error.reason is Reason.NOT_MSGPACK
    assert bad.error.detail == (
        "a string holds bytes that are not UTF-8 (0xe9 at its byte 3): event fields must be "
        "UTF-8 text"
    )
    assert "codec" not in bad.error.detail


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"user_id,item_id\nu1,i1\n", "record 0 (byte 0): not_a_map: expected a map, got int"),
        (b"\xa2\xff\xfe", "record 0 (byte 0): not_msgpack: a string holds bytes that are not"),
        (b"\xc1\xc1", "record 0 (byte 0): not_msgpack: cannot decode"),
    ],
)
def test_a_file_that_is_no_recorded_stream_is_one_line_saying_what_one_is(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "ratings.msgpack"
    path.write_bytes(content)
    with pytest.raises(InvalidRecord) as caught:
        list(read_events(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: {says}")
    assert message.endswith(
        "; not a recorded stream (concatenated msgpack event maps, .msgpack or .msgpack.zst; "
        "`streamrec import` converts CSV/TSV/JSONL)"
    )
    assert "\n" not in message


def test_a_bad_record_after_good_ones_is_not_called_a_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "s.msgpack"
    path.write_bytes(encode_event(events(1)[0]) + pack({"ts": 1}))
    with pytest.raises(InvalidRecord) as caught:
        list(read_events(path))
    assert str(caught.value) == f"{path}: record 1 (byte {len(encode_event(events(1)[0]))}): " + (
        "missing_field: missing field 'event_id'"
    )


@pytest.mark.parametrize("name", ["s.msgpack", "s.msgpack.zst"])
def test_the_time_span_counts_events_up_to_the_latest_timestamp(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    stream = events(50)
    stream[10] = Event("late", "u1", "i1", "click", 9_000)  # out of order: the latest ts
    write_events(path, stream)
    assert time_span(path) == TimeSpan(events=50, first_ts=1_000, last_ts=9_000)
    write_events(path, [])
    assert time_span(path) is None


def test_the_time_span_stops_where_the_file_goes_bad(tmp_path: Path) -> None:
    path = tmp_path / "s.msgpack"
    path.write_bytes(
        b"".join(encode_event(e) for e in events(3))
        + b"\xc1"
        + encode_event(events(1, start=40)[0])
    )
    assert time_span(path) == TimeSpan(events=3, first_ts=1_000, last_ts=1_002)


def test_an_empty_file_has_no_records(tmp_path: Path) -> None:
    for name in ("e.msgpack", "e.msgpack.zst"):
        write_events(tmp_path / name, [])
        assert list(read_records(tmp_path / name)) == []


def test_the_writer_counts_events_maps_and_raw_records_and_closes_once(tmp_path: Path) -> None:
    path = tmp_path / "w.msgpack.zst"
    one, two, three = events(3)
    with RecordedWriter(path) as writer:
        writer.write(one)
        writer.write_map(two.to_map())
        writer.write_raw(encode_event(three))
        assert writer.count == 3
    writer.close()
    assert list(read_events(path)) == [one, two, three]


def peak_memory_of_reading(path: Path) -> int:
    """Peak bytes Python allocated while reading every record of ``path``."""
    tracemalloc.start()
    try:
        for _ in read_records(path):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_memory_does_not_grow_with_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorded, "_CHUNK", 16 << 10)
    small, big = tmp_path / "small.msgpack", tmp_path / "big.msgpack"
    write_events(small, events(5_000))
    write_events(big, events(40_000))
    assert big.stat().st_size > 2 << 20
    small_peak, big_peak = peak_memory_of_reading(small), peak_memory_of_reading(big)
    assert big_peak < small_peak + (64 << 10)  # 8x the file, the same few read buffers
    assert big_peak < big.stat().st_size // 2
