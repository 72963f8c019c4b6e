"""Recorded event streams: files of concatenated msgpack event maps in time order.

``*.msgpack`` files are plain; ``*.msgpack.zst`` are zstd-compressed. Reading and writing
stream through the file in fixed-size chunks, so memory stays constant for any file size.
A bad record is *reported* with its position (index and byte offset) rather than skipped,
so replay, import and evaluation can keep it in a reject file and go on.
"""

from __future__ import annotations

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
        # read_across_frames: a file of several zstd frames (e.g. concatenated recordings)
        # is one stream, not just its first frame.
        return zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=True
        )
    return raw


def _unpacker() -> msgpack.Unpacker:
    # strict_map_key=False: a map with int keys is a well-framed bad record (reported as a
    # missing field), not a reason to give up on the rest of the file.
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=0)


def _frame_length(data: memoryview) -> int | None:
    """Byte length of the one msgpack value at the start of ``data``, found without decoding
    it (no UTF-8, no map keys), or None when ``data`` ends inside it.

    Raises ``ValueError``/``msgpack.UnpackException`` when the bytes are not msgpack framing
    at all (then nothing after them can be found).
    """
    probe = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=0)
    probe.feed(data)
    try:
        probe.skip()
    except msgpack.OutOfData:
        return None
    return probe.tell()


class _Window:
    """The bytes of a stream from the current record on, read in chunks.

    ``base`` is the stream offset of ``buf[0]``; bytes before the current record are
    dropped on each read, so memory stays at one chunk plus one record.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.base = 0
        self.eof = False
        self.corrupt: str | None = None  # set when the zstd stream itself is damaged

    @property
    def end(self) -> int:
        """Stream offset just past the bytes read so far."""
        return self.base + len(self.buf)

    def view(self, start: int, stop: int | None = None) -> memoryview:
        """The bytes from stream offset ``start`` (to ``stop``) without copying."""
        return memoryview(self.buf)[start - self.base : None if stop is None else stop - self.base]

    def read_more(self, keep_from: int) -> bool:
        """Read one more chunk, dropping bytes before ``keep_from``; False at the end of the
        stream or when it is corrupt."""
        if self.eof or self.corrupt:
            return False
        del self.buf[: keep_from - self.base]
        self.base = keep_from
        try:
            chunk = self.stream.read(_CHUNK)
        except zstandard.ZstdError as exc:
            self.corrupt = f"corrupt zstd data ({exc})"
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf.extend(chunk)
        return True


def read_records(path: Path | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Iterator[Record]:
    """Yield every record of a recorded stream, valid or not, with its position and bytes.

    ``raw`` is the record's exact bytes in the file (replay sends them as they are). A
    well-framed record that does not decode (bad UTF-8, unhashable map keys) is reported
    and skipped. Bytes that are not msgpack framing, a record larger than the read buffer
    or a corrupt zstd stream are reported as the last record, since msgpack has no marks to
    find the next record by. Memory stays bounded by the read chunk plus one record.
    """
    path = Path(path)
    limit = max(4 * _CHUNK, 2 * max_bytes)  # the largest record the reader buffers
    with _open_read(path) as stream:
        window = _Window(stream)
        unpacker = _unpacker()
        ubase = 0  # stream offset where `unpacker` started
        index = 0
        offset = 0  # stream offset of the current record
        while True:
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                fed = window.end
                if window.read_more(offset):
                    unpacker.feed(window.view(fed))
                    if window.end - offset > limit:
                        yield _unreadable(index, offset, Reason.OVERSIZE,
                                          f"record exceeds {limit} bytes")  # fmt: skip
                        return
                    continue
                if window.corrupt:
                    yield _unreadable(index, offset, Reason.NOT_MSGPACK, window.corrupt)
                elif window.end > offset:
                    left = window.end - offset
                    error = InvalidRecord(
                        Reason.TRUNCATED, f"file ends inside a record ({left} bytes left)"
                    )
                    yield Record(index, offset, None, error, bytes(window.view(offset)))
                return
            except (ValueError, TypeError, msgpack.UnpackException) as exc:
                # It does not decode; if it is still framed, skip it and go on after it.
                detail = _decode_detail(exc)
                try:
                    while (length := _frame_length(window.view(offset))) is None:
                        if not window.read_more(offset):
                            break
                except (ValueError, msgpack.UnpackException):
                    length = None
                if length is None:
                    yield _unreadable(index, offset, Reason.NOT_MSGPACK, window.corrupt or detail)
                    return
                end = offset + length
                error = InvalidRecord(Reason.NOT_MSGPACK, detail)
                yield Record(index, offset, None, error, bytes(window.view(offset, end)))
                index += 1
                offset = ubase = end
                unpacker = _unpacker()  # the old one lost its place inside the bad record
                unpacker.feed(window.view(offset))
                continue
            end = ubase + unpacker.tell()
            raw = bytes(window.view(offset, end))
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


def _decode_detail(exc: Exception) -> str:
    """Why a well-framed record does not decode, saying what was expected."""
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"a string holds bytes that are not UTF-8 (0x{exc.object[exc.start]:02x} at its "
            f"byte {exc.start}): event fields must be UTF-8 text"
        )
    return f"cannot decode ({str(exc) or type(exc).__name__})"


def _unreadable(index: int, offset: int, reason: Reason, detail: str) -> Record:
    """The last record of a file whose remainder cannot be read."""
    error = InvalidRecord(reason, f"{detail}; the rest of the file is unreadable")
    return Record(index, offset, None, error, b"")


#: What a file whose very first record is one of these is not.
_NOT_A_STREAM = (Reason.NOT_MSGPACK, Reason.NOT_A_MAP, Reason.TRUNCATED)


#: What a recorded stream is, for errors about a file that is none.
RECORDED_STREAM = (
    "concatenated msgpack event maps, .msgpack or .msgpack.zst; `streamrec import` converts "
    "CSV/TSV/JSONL"
)


class BadRecord(InvalidRecord):
    """A bad record in a file that must be clean: the message leads with the file and the
    record's position, then the reason and what was expected."""

    def __init__(self, path: Path | str, record: Record) -> None:
        assert record.error is not None
        reason = record.error.reason
        detail = f"{path}: {record.position}: {reason.value}: {record.error.detail}"
        if record.index == 0 and reason in _NOT_A_STREAM:
            detail += f"; not a recorded stream ({RECORDED_STREAM})"
        super().__init__(reason, detail)

    def __str__(self) -> str:
        return self.detail


def read_events(path: Path | str, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Iterator[Event]:
    """Yield the events of a file that must be clean; the first bad record raises
    :class:`BadRecord`, naming the file and the record's position."""
    for record in read_records(path, max_bytes):
        if record.error is not None:
            raise BadRecord(path, record)
        assert record.event is not None
        yield record.event


@dataclass(frozen=True, slots=True)
class TimeSpan:
    """How many events a file holds and the event time they span (ms)."""

    events: int
    first_ts: int
    last_ts: int  # the latest timestamp, wherever it is in the file


def time_span(path: Path | str) -> TimeSpan | None:
    """Count the maps with an integer ``ts`` and their time span in one quick pass that
    decodes nothing else (no UTF-8, no validation): what a paced replay will take. Stops at
    the first undecodable byte; None when no event is found."""
    count, first, last = 0, 0, 0
    with _open_read(Path(path)) as stream:
        unpacker = msgpack.Unpacker(stream, raw=True, strict_map_key=False, max_buffer_size=0)
        try:
            for obj in unpacker:
                ts = obj.get(b"ts") if isinstance(obj, dict) else None
                if isinstance(ts, int):
                    first, last = (ts, ts) if count == 0 else (first, max(last, ts))
                    count += 1
        except (ValueError, msgpack.UnpackException, zstandard.ZstdError):
            pass  # the replay itself reports where the file goes bad
    return TimeSpan(count, first, last) if count else None


class RecordedWriter:
    """Append events (or raw msgpack records) to a recorded-stream file.

    Use as a context manager; the file is complete only after ``close()``, which also
    finishes the zstd frame for ``.zst`` paths.
    """

    def __init__(self, path: Path | str, *, level: int = 3) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO
        self._out: BinaryIO
        if is_compressed(self.path):
            self._file = self.path.open("wb")
            self._out = zstandard.ZstdCompressor(level=level).stream_writer(self._file)
        else:
            self._file = self._out = self.path.open("wb", buffering=_CHUNK)
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
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_events(path: Path | str, events: Iterable[Event]) -> int:
    """Write a whole recorded stream; returns the number of events written."""
    with RecordedWriter(path) as writer:
        return writer.write_all(events)
