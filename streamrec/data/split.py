"""Time-ordered train/test split of a recorded stream (DESIGN.md "Data").

Models learn on the first part of a stream and the rest is replayed for prequential
evaluation, so the split is by position in time order, never random. Two streaming passes
(count and check order, then copy each record, as its msgpack map, into one of the
two files) keep memory constant for any stream size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from streamrec.data.files import DataError, stream_stem, tracker
from streamrec.streams.recorded import RecordedWriter, is_compressed, read_records


@dataclass(frozen=True, slots=True)
class SplitResult:
    """Where the two parts went and what is in them."""

    train_path: Path
    test_path: Path
    train_events: int
    test_events: int
    last_train_ts: int | None  # ts of the last training event
    first_test_ts: int | None  # ts of the first test event


def split_paths(path: Path, out_dir: Path | None = None) -> tuple[Path, Path]:
    """``<stem>.train.msgpack`` and ``<stem>.test.msgpack`` (``.zst`` kept) in ``out_dir``
    or beside ``path``."""
    directory = out_dir if out_dir is not None else path.parent
    suffix = ".msgpack.zst" if is_compressed(path) else ".msgpack"
    stem = stream_stem(path)
    return directory / f"{stem}.train{suffix}", directory / f"{stem}.test{suffix}"


def _count_ordered(path: Path, progress: Progress | None) -> int:
    """Number of events in ``path``; raises if a record is bad or time goes backwards."""
    advance = tracker(progress, f"checking {path.name}", None)
    last_ts = -1
    count = 0
    for record in read_records(path):
        if record.event is None:
            assert record.error is not None
            raise DataError(f"{path}: {record.position}: {record.error}")
        if record.event.ts < last_ts:
            raise DataError(
                f"{path}: {record.position}: ts {record.event.ts} is before the previous "
                f"event's {last_ts}; a time split needs a time-ordered stream"
            )
        last_ts = record.event.ts
        count += 1
        if count % 65536 == 0:
            advance(65536)
    advance(count % 65536)
    return count


def split_stream(
    path: Path, train_fraction: float, out_dir: Path | None = None, progress: Progress | None = None
) -> SplitResult:
    """Write the first ``floor(train_fraction * n)`` events of ``path`` to the train file and
    the rest to the test file; refuses a stream with too few events for a training part."""
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train fraction must be between 0 and 1 (exclusive), got {train_fraction}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    train_path, test_path = split_paths(path, out_dir)
    if path.resolve() in (train_path.resolve(), test_path.resolve()):
        raise DataError(f"{path} would be overwritten by its own split; rename it or use --out-dir")
    total = _count_ordered(path, progress)
    n_train = int(total * train_fraction)
    if total == 0:
        raise DataError(f"{path}: no events to split")
    if n_train == 0:
        raise DataError(
            f"{path}: {total} events leave no training part at a train fraction of {train_fraction}"
        )
    advance = tracker(progress, f"splitting {path.name}", total)
    last_train_ts = first_test_ts = None
    with RecordedWriter(train_path) as train, RecordedWriter(test_path) as test:
        for record in read_records(path):
            assert record.event is not None  # checked by the first pass
            if record.index < n_train:
                train.write_raw(record.raw)
                last_train_ts = record.event.ts
            else:
                test.write_raw(record.raw)
                if first_test_ts is None:
                    first_test_ts = record.event.ts
            if record.index % 65536 == 65535:
                advance(65536)
        advance(total % 65536)
    return SplitResult(
        train_path, test_path, n_train, total - n_train, last_train_ts, first_test_ts
    )
