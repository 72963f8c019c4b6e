"""Time split: first share to train, rest to test, order and bytes kept, bad input refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.data import DataError
from streamrec.data.split import split_stream
from streamrec.streams.recorded import read_events, write_events
from streamrec.streams.wire import Event


def _events(n: int) -> list[Event]:
    return [Event(f"e{i}", f"u{i % 7}", f"i{i % 11}", "click", 1_000 + i // 3) for i in range(n)]


@pytest.mark.parametrize("name", ["feed.msgpack", "feed.msgpack.zst"])
def test_split_puts_the_earliest_share_in_train_and_the_rest_in_test(
    tmp_path: Path, name: str
) -> None:
    source = tmp_path / name
    events = _events(1001)
    write_events(source, events)
    result = split_stream(source, 0.8)
    suffix = name.removeprefix("feed")
    assert result.train_path == tmp_path / f"feed.train{suffix}"
    assert result.test_path == tmp_path / f"feed.test{suffix}"
    assert (result.train_events, result.test_events) == (800, 201)
    train, test = list(read_events(result.train_path)), list(read_events(result.test_path))
    assert train + test == events
    assert result.last_train_ts == train[-1].ts and result.first_test_ts == test[0].ts


def test_split_writes_under_out_dir_when_given(tmp_path: Path) -> None:
    source = tmp_path / "feed.msgpack"
    write_events(source, _events(10))
    result = split_stream(source, 0.5, out_dir=tmp_path / "parts")
    assert result.train_path.parent == tmp_path / "parts"
    assert result.test_path.is_file()


def test_split_refuses_a_stream_that_goes_back_in_time(tmp_path: Path) -> None:
    source = tmp_path / "feed.msgpack"
    events = _events(10)
    write_events(source, [*events[:5], events[0], *events[5:]])
    with pytest.raises(DataError, match="record 5 .*time-ordered"):
        split_stream(source, 0.8)


@pytest.mark.parametrize(
    ("n", "fraction", "why"),
    [(0, 0.8, "no events to split"), (3, 0.2, "3 events leave no training part")],
)
def test_split_refuses_a_stream_too_short_for_a_training_part(
    tmp_path: Path, n: int, fraction: float, why: str
) -> None:
    source = tmp_path / "feed.msgpack"
    write_events(source, _events(n))
    with pytest.raises(DataError, match=why):
        split_stream(source, fraction)
    assert not (tmp_path / "feed.train.msgpack").exists()  # nothing half-written


def test_split_refuses_a_fraction_outside_zero_to_one(tmp_path: Path) -> None:
    source = tmp_path / "feed.msgpack"
    write_events(source, _events(10))
    with pytest.raises(DataError, match="between 0 and 1"):
        split_stream(source, 1.0)
