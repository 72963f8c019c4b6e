"""Recorded event streams: files of concatenated msgpack event maps in time order.

``*.msgpack`` files are plain; ``*.msgpack.zst`` are zstd-compressed. Reading and writing
stream through the file in fixed-size chunks, so memory stays constant for any file size.
A bad record is *reported* with its position (index and byte offset) rather than skipped,
so replay, import and evaluation can keep it in a reject file and go on.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import msgpack
import zstandard

from streamrec.streams.wire import (
    DEFAULT_MAX_EVENT_BYTES,
    Event,
    InvalidRecord,
    Reason,
    event_from_map,
    pack,
)

_CHUNK = 1 << 20


def is_compressed(path: Path | str) -> bool:
    """Whether a recorded-stream path is zstd-compressed (by its ``.zst`` suffix)."""
    return str(path).endswith(".zst")


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a recorded stream: either a valid ``event`` or an ``error``.

    ``index`` is the 0-based record number and ``offset`` the byte offset in the
    (decompressed) stream where it starts: together they are its exact position.
    ``raw`` holds the record's bytes when they could be read, for reject files.
    """

    index: int
    offset: int
    event: Event | None
    error: InvalidRecord | None
    raw: bytes

    @property
    def position(self) -> str:
        """Human-readable position, e.g. ``record 17 (byte 1234)``."""
        return f"record {self.index} (byte {self.offset})"


def _open_read(path: Path) -> BinaryIO:
    raw = path.open("rb")
    if is_compressed(path):
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[return-value]
    return raw


class _CountingReader:
    """Counts the bytes msgpack pulls from a stream, to size a truncated last record."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.consumed += len(data)
        return data


def read_records(path: Path | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Iterator[Record]:
    """Yield every record of a recorded stream, valid or not, with its position.

    An undecodable byte sequence cannot be skipped (msgpack has no record framing), so
    after reporting it, or a truncated final record, the iteration ends.
    """
    path = Path(path)
    with _open_read(path) as stream:
        counter = _CountingReader(stream)
        unpacker = msgpack.Unpacker(counter, raw=False, strict_map_key=False, read_size=_CHUNK,
                                    max_buffer_size=max(4 * _CHUNK, 2 * max_bytes))
        index = 0
        offset = 0
        while True:
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                left = counter.consumed - offset
                if left:
                    error = InvalidRecord(
                        Reason.TRUNCATED, f"file ends inside a record ({left} bytes left)"
                    )
                    yield Record(index, offset, None, error, b"")
                return
            except (ValueError, msgpack.UnpackException) as exc:
                error = InvalidRecord(
                    Reason.NOT_MSGPACK, f"cannot decode ({str(exc) or type(exc).__name__}); the rest of the file is unreadable"
                )
                yield Record(index, offset, None, error, b"")
                return
            end = unpacker.tell()
            raw = pack(obj)
            try:
                if end - offset > max_bytes:
                    raise InvalidRecord(
                        Reason.OVERSIZE, f"{end - offset} bytes exceeds the limit of {max_bytes}"
                    )
                yield Record(index, offset, event_from_map(obj), None, raw)
            except InvalidRecord as error:
                yield Record(index, offset, None, error, raw)
            index += 1
            offset = end


def read_events(path: Path | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Iterator[Event]:
    """Yield the events of a file that must be clean; the first bad record raises,
    naming its position."""
    for record in read_records(path, max_bytes):
        if record.error is not None:
            raise InvalidRecord(
                record.error.reason, f"{path}: {record.position}: {record.error.detail}"
            )
        assert record.event is not None
        yield record.event


class RecordedWriter:
    """Append events (or raw msgpack records) to a recorded-stream file.

    Use as a context manager; the file is complete only after ``close()``, which also
    finishes the zstd frame for ``.zst`` paths.
    """

    def __init__(self, path: Path | str, *, level: int = 3) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._out: BinaryIO
        if is_compressed(self.path):
            self._out = zstandard.ZstdCompressor(level=level).stream_writer(self._file)  # type: ignore[assignment]
        else:
            self._out = io.BufferedWriter(self._file, buffer_size=_CHUNK)  # type: ignore[arg-type]
        self.count = 0

    def write(self, event: Event) -> None:
        """Append one event."""
        self._out.write(pack(event.to_map()))
        self.count += 1

    def write_map(self, obj: dict[str, Any]) -> None:
        """Append one map as it is (used for reject files and imports)."""
        self._out.write(pack(obj))
        self.count += 1

    def write_raw(self, data: bytes) -> None:
        """Append bytes that already are one msgpack record (e.g. a Kafka message value)."""
        self._out.write(data)
        self.count += 1

    def write_all(self, events: Iterable[Event]) -> int:
        """Append many events; returns how many."""
        before = self.count
        for event in events:
            self.write(event)
        return self.count - before

    def close(self) -> None:
        """Flush and close; idempotent."""
        if self._out.closed:
            return
        self._out.flush()
        self._out.close()
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RecordedWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_events(path: Path | str, events: Iterable[Event]) -> int:
    """Write a whole recorded stream; returns the number of events written."""
    with RecordedWriter(path) as writer:
        return writer.write_all(events)
