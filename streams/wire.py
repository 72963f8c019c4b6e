"""The wire format: events and recommendations as msgpack maps (DESIGN.md "Wire format").

Decoding never raises anything but :class:`InvalidRecord`, whose ``reason`` says exactly
what is wrong (not msgpack, truncated, missing field, wrong type, unknown action,
oversize; :class:`TsWindow` adds a ``ts`` outside the accepted window), so every caller —
the Faust agent, ``replay``, ``POST /events`` — can route a bad record to the dead-letter
topic or a reject file with the same words.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: Actions a user can take on an item; anything else is rejected as an unknown action.
ACTIONS: frozenset[str] = frozenset({"click", "save"})

#: Default upper bound on one encoded event, matching ``Settings.max_event_bytes``.
DEFAULT_MAX_EVENT_BYTES = 4096


class Reason(enum.StrEnum):
    """Why a record was rejected; the value is what lands in the DLQ and reject files."""

    NOT_MSGPACK = "not_msgpack"
    TRUNCATED = "truncated"
    NOT_A_MAP = "not_a_map"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_ACTION = "unknown_action"
    BAD_VALUE = "bad_value"
    OVERSIZE = "oversize"
    TS_OUT_OF_RANGE = "ts_out_of_range"


class InvalidRecord(ValueError):
    """A record that is not a valid event; ``reason`` is machine-readable, ``detail`` human."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Event:
    """One user action on one item, as it travels on topic ``events`` (key = user_id)."""

    event_id: str
    user_id: str
    item_id: str
    action: str
    ts: int  # milliseconds since the epoch
    surface: str | None = None
    weight: float | None = None

    def to_map(self) -> dict[str, Any]:
        """The msgpack map of this event; optional fields appear only when set."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "action": self.action,
            "ts": self.ts,
        }
        if self.surface is not None:
            out["surface"] = self.surface
        if self.weight is not None:
            out["weight"] = self.weight
        return out


@dataclass(frozen=True, slots=True)
class Recommendation:
    """Fresh recommendations for one user, emitted on ``recommendations`` (key = user_id).

    ``event_id``/``event_ts`` name the event that caused them, so a consumer can measure
    event → recommendation latency and correlate.
    """

    user_id: str
    items: list[str]
    scores: list[float]
    event_id: str | None
    event_ts: int | None
    emitted_ts: int
    model_version: str
    source: str  # "personalized" | "popular"
    extra: dict[str, Any] = field(default_factory=dict)
    #: The A/B variant that served it (streams/variants.py); every worker message has one.
    variant: str | None = None

    def to_map(self) -> dict[str, Any]:
        """The msgpack map of this recommendation; ``extra`` adds fields but never replaces
        one of the schema's; ``variant`` appears when set."""
        out = {
            **self.extra,
            "user_id": self.user_id,
            "items": list(self.items),
            "scores": [float(s) for s in self.scores],
            "event_id": self.event_id,
            "event_ts": self.event_ts,
            "emitted_ts": self.emitted_ts,
            "model_version": self.model_version,
            "source": self.source,
        }
        if self.variant is not None:
            out["variant"] = self.variant
        return out


#: Required string fields, in the order they are checked.
_STR_FIELDS = ("event_id", "user_id", "item_id", "action")


def pack(obj: Any) -> bytes:
    """msgpack-encode a map (str keys, UTF-8 strings, binary type for bytes)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode exactly one msgpack value, or raise :class:`InvalidRecord` saying why not."""
    # strict_map_key=False: a map with non-string keys is valid msgpack and gets its precise
    # reason (a missing field) from the validator; records are size-bounded, so no hash-DoS.
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        if not data:
            raise InvalidRecord(Reason.TRUNCATED, "empty record") from None
        raise InvalidRecord(
            Reason.TRUNCATED, f"msgpack value ends early ({len(data)} bytes)"
        ) from None
    # FormatError, StackError, bad UTF-8; TypeError for an unhashable (array or map) map key
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidRecord(
            Reason.NOT_MSGPACK, f"cannot decode: {str(exc) or type(exc).__name__}"
        ) from None
    if unpacker.tell() != len(data):
        raise InvalidRecord(
            Reason.NOT_MSGPACK, f"{len(data) - unpacker.tell()} trailing bytes after one value"
        )
    return obj


def event_from_map(obj: Any) -> Event:
    """Validate a decoded map as an event; the first problem found is the reason."""
    if not isinstance(obj, dict):
        raise InvalidRecord(Reason.NOT_A_MAP, f"expected a map, got {type(obj).__name__}")
    for name in (*_STR_FIELDS, "ts"):
        if name not in obj:
            raise InvalidRecord(Reason.MISSING_FIELD, f"missing field {name!r}")
    for name in _STR_FIELDS:
        value = obj[name]
        if not isinstance(value, str):
            raise InvalidRecord(
                Reason.WRONG_TYPE, f"field {name!r} must be a string, got {type(value).__name__}"
            )
        if not value:
            raise InvalidRecord(Reason.BAD_VALUE, f"field {name!r} is empty")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InvalidRecord(
            Reason.WRONG_TYPE, f"field 'ts' must be an integer (ms), got {type(ts).__name__}"
        )
    if ts < 0:
        raise InvalidRecord(Reason.BAD_VALUE, f"field 'ts' is negative ({ts})")
    if obj["action"] not in ACTIONS:
        raise InvalidRecord(
            Reason.UNKNOWN_ACTION,
            f"unknown action {obj['action']!r} (known: {', '.join(sorted(ACTIONS))})",
        )
    surface = obj.get("surface")
    if surface is not None and not isinstance(surface, str):
        raise InvalidRecord(
            Reason.WRONG_TYPE, f"field 'surface' must be a string, got {type(surface).__name__}"
        )
    weight = obj.get("weight")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidRecord(
                Reason.WRONG_TYPE, f"field 'weight' must be a number, got {type(weight).__name__}"
            )
        if not math.isfinite(weight) or weight < 0:
            raise InvalidRecord(
                Reason.BAD_VALUE, f"field 'weight' must be finite and >= 0 ({weight})"
            )
        weight = float(weight)
    return Event(
        obj["event_id"], obj["user_id"], obj["item_id"], obj["action"], ts, surface, weight
    )


@dataclass(frozen=True, slots=True)
class TsWindow:
    """The event times a worker accepts: from ``min_ms`` up to ``max_future_ms`` past its
    clock. One event far in the future (a ts in microseconds, 2^64 − 1) would otherwise move
    the event-time clock of the decayed statistics and reset them for every user; one far in
    the past (a ts in seconds) is a unit mistake."""

    min_ms: int = 631_152_000_000  # 1990-01-01
    max_future_ms: int = 300_000

    def check(self, ts: int, now_ms: int) -> None:
        """Raise :class:`InvalidRecord` (``ts_out_of_range``) unless ``ts`` is accepted."""
        if ts < self.min_ms:
            raise InvalidRecord(
                Reason.TS_OUT_OF_RANGE, f"field 'ts' ({ts} ms) is before {self.min_ms} ms"
            )
        if ts > now_ms + self.max_future_ms:
            raise InvalidRecord(
                Reason.TS_OUT_OF_RANGE,
                f"field 'ts' ({ts} ms) is more than {self.max_future_ms} ms after now "
                f"({now_ms} ms); milliseconds since the epoch expected",
            )


def decode_event(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Event:
    """Decode and validate one encoded event, or raise :class:`InvalidRecord`."""
    if len(data) > max_bytes:
        raise InvalidRecord(Reason.OVERSIZE, f"{len(data)} bytes exceeds the limit of {max_bytes}")
    return event_from_map(unpack(data))


def encode_event(event: Event) -> bytes:
    """The msgpack bytes of one event."""
    return pack(event.to_map())


def encode_recommendation(rec: Recommendation) -> bytes:
    """The msgpack bytes of one recommendation message."""
    return pack(rec.to_map())


def decode_recommendation(data: bytes) -> dict[str, Any]:
    """Decode a recommendation message to its map (consumers read it as plain data)."""
    obj = unpack(data)
    if not isinstance(obj, dict) or "user_id" not in obj or "items" not in obj:
        raise InvalidRecord(Reason.NOT_A_MAP, "not a recommendation map")
    return obj
