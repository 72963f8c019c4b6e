"""MovieLens conversion: exact counts on the real files, and the mapping on a hand-made one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.data import DataError
from streamrec.data.files import companion, sha256_file
from streamrec.data.movielens import VARIANTS, convert, parse_ratings, to_events
from streamrec.streams.recorded import read_events


def _check_converted(out: Path, events: int, users: int, items: int) -> None:
    """Read the stream back (streaming) and check counts, order, ids and the manifest."""
    user_ids: set[str] = set()
    item_ids: set[str] = set()
    event_ids: set[str] = set()
    saves = count = 0
    first_ts = last_ts = -1
    for event in read_events(out):
        assert event.ts >= last_ts
        first_ts = event.ts if count == 0 else first_ts
        last_ts = event.ts
        user_ids.add(event.user_id)
        item_ids.add(event.item_id)
        event_ids.add(event.event_id)
        saves += event.action == "save"
        count += 1
    assert (count, len(user_ids), len(item_ids), len(event_ids)) == (events, users, items, events)
    manifest = json.loads(companion(out, ".manifest.json").read_text())
    assert (manifest["events"], manifest["users"], manifest["items"]) == (events, users, items)
    assert manifest["saves"] == saves
    assert (manifest["ts_min"], manifest["ts_max"]) == (first_ts, last_ts)
    assert manifest["output"]["sha256"] == sha256_file(out)


def test_movielens_100k_converts_to_100000_events_943_users_1682_items(
    tmp_path: Path, data_cache: Path
) -> None:
    out = tmp_path / "ml100k.msgpack.zst"
    convert("100k", out, data_cache)
    _check_converted(out, 100_000, 943, 1_682)


@pytest.mark.slow
def test_movielens_1m_converts_to_1000209_events_6040_users_3706_items(
    tmp_path: Path, data_cache: Path
) -> None:
    out = tmp_path / "ml1m.msgpack"
    convert("1m", out, data_cache)
    _check_converted(out, 1_000_209, 6_040, 3_706)


HAND_MADE = [
    "user_id:token\titem_id:token\trating:float\ttimestamp:float",
    "u1\tHeat (1995)\t5\t200",  # row 0
    "u2\tAlien (1979)\t3\t100",  # row 1
    "u1\tAlien (1979)\t4\t200",  # row 2: same second as row 0, after it in the file
    "u3\tHeat (1995)\t1\t50.5",  # row 3: fractional seconds
    "u2\tJaws (1975)\t3.5\t200",  # row 4: also at 200
]


def test_conversion_maps_ratings_to_actions_and_keeps_file_order_on_ties() -> None:
    events = list(to_events(parse_ratings(HAND_MADE, VARIANTS["1m"]), "t"))
    assert [e.event_id for e in events] == ["t-3", "t-1", "t-0", "t-2", "t-4"]
    assert [e.ts for e in events] == [50_500, 100_000, 200_000, 200_000, 200_000]
    assert [e.action for e in events] == ["click", "click", "save", "save", "click"]
    assert events[2].item_id == "Heat (1995)" and events[2].user_id == "u1"


def test_unexpected_header_is_refused_with_the_columns_named() -> None:
    with pytest.raises(DataError, match="header"):
        parse_ratings(["User,Item,Rating,Timestamp", "1,2,3,4"], VARIANTS["1m"])


def test_malformed_row_is_refused_with_its_line_number() -> None:
    with pytest.raises(DataError, match="line 3"):
        parse_ratings([*HAND_MADE[:2], "u9\tonly-two"], VARIANTS["1m"])
