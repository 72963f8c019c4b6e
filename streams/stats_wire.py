"""The wire format of the global statistics (streams/shared_stats.py): messages of the
deltas topic and the chunked checkpoints of the compacted checkpoints topic.

A delta message is ``{"origin", "seq", "delta": StatsDelta.to_map()}``, keyed by its origin.
A checkpoint of writer ``w`` is its chunks ``w/<slot>/<i>`` (``{"id", "data"}``: a slice of
the zstd-compressed :meth:`SharedStats.snapshot`) and then its manifest ``w/manifest``
(id, slot, chunk count, the deltas-topic offsets covered, origin and sequence number). A
writer alternates between two slots and writes its manifest last, so whatever is read back
either holds one complete checkpoint per writer or none for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import zstandard

from streamrec.streams.core.statistics import StatsDelta
from streamrec.streams.wire import pack, unpack

log = logging.getLogger(__name__)

#: Most events in one deltas-topic message (a bigger batch's delta is sent in pieces):
#: about 60 bytes an event, so a message stays far under the 1 MB message limit.
MAX_DELTA_EVENTS = 4096
#: Largest checkpoint chunk (bytes of compressed snapshot per message).
CHUNK_BYTES = 512 * 1024
_MANIFEST = "manifest"


# --- wire codec: deltas -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeltaMessage:
    """One deltas-topic message: ``origin``'s ``seq``-th delta (seq counts from 1)."""

    origin: str
    seq: int
    delta: StatsDelta


def encode_delta(message: DeltaMessage) -> bytes:
    return pack({"origin": message.origin, "seq": message.seq, "delta": message.delta.to_map()})


def decode_delta(value: bytes) -> DeltaMessage:
    """Read :func:`encode_delta`'s bytes; ``ValueError`` saying what is wrong otherwise."""
    try:
        data = unpack(value)
        return DeltaMessage(
            str(data["origin"]), int(data["seq"]), StatsDelta.from_map(data["delta"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a stats delta: {type(exc).__name__}: {exc}") from None


def pieces(delta: StatsDelta, size: int = MAX_DELTA_EVENTS) -> list[StatsDelta]:
    """``delta`` cut into consecutive pieces of at most ``size`` events (none when empty)."""
    return [
        delta.select(range(start, min(start + size, len(delta))))
        for start in range(0, len(delta), size)
    ]


# --- wire codec: checkpoints ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A snapshot of the statistics and what it covers: deltas-topic partition → next offset,
    and its writer's own deltas up to ``seq`` of ``origin``."""

    id: str
    created_ms: int
    offsets: dict[int, int]
    origin: str
    seq: int
    snapshot: bytes  # SharedStats.snapshot(), uncompressed
    slot: int = 0


def checkpoint_records(
    writer: str, checkpoint: Checkpoint, chunk_bytes: int = CHUNK_BYTES
) -> list[tuple[bytes, bytes]]:
    """(key, value) records of one checkpoint: its chunks, then its manifest (written last:
    a manifest names complete chunks only)."""
    data = zstandard.ZstdCompressor(level=3).compress(checkpoint.snapshot)
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    records = [
        (f"{writer}/{checkpoint.slot}/{i}".encode(), pack({"id": checkpoint.id, "data": chunk}))
        for i, chunk in enumerate(chunks)
    ]
    manifest = {
        "id": checkpoint.id,
        "created_ms": checkpoint.created_ms,
        "slot": checkpoint.slot,
        "chunks": len(chunks),
        "offsets": [[p, o] for p, o in sorted(checkpoint.offsets.items())],
        "origin": checkpoint.origin,
        "seq": checkpoint.seq,
    }
    records.append((f"{writer}/{_MANIFEST}".encode(), pack(manifest)))
    return records


def latest_values(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes, bytes]:
    """The last value per key of a compacted topic read in order (tombstones remove)."""
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return latest


def read_checkpoints(latest: Mapping[bytes, bytes]) -> dict[str, Checkpoint]:
    """Every writer's complete checkpoint in the topic's latest values (a writer whose chunks
    do not all match its manifest has none)."""
    out: dict[str, Checkpoint] = {}
    for key, value in latest.items():
        writer, _, name = key.decode("utf-8", "replace").rpartition("/")
        if name != _MANIFEST:
            continue
        try:
            manifest = unpack(value)
            chunks = [
                unpack(latest[f"{writer}/{manifest['slot']}/{i}".encode()])
                for i in range(int(manifest["chunks"]))
            ]
            if any(c["id"] != manifest["id"] for c in chunks):
                continue
            snapshot = zstandard.ZstdDecompressor().decompress(
                b"".join(c["data"] for c in chunks), max_output_size=1 << 34
            )
            out[writer] = Checkpoint(
                str(manifest["id"]),
                int(manifest["created_ms"]),
                {int(p): int(o) for p, o in manifest["offsets"]},
                str(manifest["origin"]),
                int(manifest["seq"]),
                snapshot,
                int(manifest["slot"]),
            )
        except (KeyError, TypeError, ValueError, zstandard.ZstdError) as exc:
            log.warning("stats checkpoint of %s unreadable (%s); ignored", writer, exc)
    return out


def newest(checkpoints: Mapping[str, Checkpoint]) -> Checkpoint | None:
    return max(checkpoints.values(), key=lambda c: c.created_ms, default=None)
