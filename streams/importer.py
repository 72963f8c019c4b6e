"""Import CSV/TSV/JSONL rows into a recorded stream, through a column mapping.

A :class:`Mapping` says which source column feeds each event field, how to read the
timestamp (unit or ISO-8601) and where the action comes from: a column, a constant, or a
threshold rule such as ``rating>=4:save,click`` (MovieLens: rating ≥ 4 is a save). Every
row is built into an event map and validated by the same validator as the wire format, so
a bad row is rejected with the same reasons (missing field, wrong type, unknown action…),
reported with its line number and written to a JSONL reject file with the row itself.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from streamrec.streams.recorded import RecordedWriter
from streamrec.streams.wire import InvalidRecord, Reason, encode_event, event_from_map

#: Event fields a column can be mapped to.
FIELDS = ("event_id", "user_id", "item_id", "action", "ts", "surface", "weight")

#: Milliseconds per unit of a numeric timestamp column.
TS_UNITS: dict[str, float] = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*([^<>=!:]+?)\s*(>=|<=|==|!=|>|<)\s*([^:]+?)\s*:\s*(\w+)\s*,\s*(\w+)\s*$")


class MappingError(ValueError):
    """A mapping that cannot work (bad ``--map``, rule or unit); raised before any row is read."""


@dataclass(frozen=True, slots=True)
class ActionRule:
    """``COLUMN OP NUMBER:IF_TRUE,OTHERWISE``, e.g. ``rating>=4:save,click``."""

    column: str
    op: str
    threshold: float
    if_true: str
    otherwise: str

    @classmethod
    def parse(cls, text: str) -> ActionRule:
        """Parse a rule, or raise :class:`MappingError` saying what a rule looks like."""
        match = _RULE.match(text)
        if match is None:
            raise MappingError(
                f"bad action rule {text!r}: expected COLUMN OP NUMBER:IF_TRUE,OTHERWISE "
                "(e.g. rating>=4:save,click)"
            )
        column, op, threshold, if_true, otherwise = match.groups()
        try:
            value = float(threshold)
        except ValueError:
            raise MappingError(f"bad action rule {text!r}: {threshold!r} is not a number") from None
        return cls(column, op, value, if_true, otherwise)

    def apply(self, row: dict[str, Any]) -> str:
        """The action for one row; a missing or non-numeric column is an :class:`InvalidRecord`."""
        value = _number(_column(row, self.column), self.column)
        return self.if_true if _OPS[self.op](value, self.threshold) else self.otherwise


@dataclass(frozen=True, slots=True)
class Mapping:
    """How source rows become events.

    ``columns`` maps an event field to its source column; an unmapped field is read from a
    column of its own name when the row has one. Without an ``event_id`` column, ids are
    ``<id_prefix><line>``: stable across re-imports, so replaying twice is idempotent.
    """

    columns: dict[str, str] = field(default_factory=dict)
    ts_unit: str = "ms"
    action_rule: ActionRule | None = None
    action: str | None = None
    id_prefix: str = ""

    @classmethod
    def parse(
        cls,
        maps: list[str],
        *,
        ts_unit: str = "ms",
        action_from: str | None = None,
        action: str | None = None,
        id_prefix: str = "",
    ) -> Mapping:
        """Build a mapping from ``FIELD=COLUMN`` strings and options, checking them all."""
        columns: dict[str, str] = {}
        for item in maps:
            name, sep, column = item.partition("=")
            name, column = name.strip(), column.strip()
            if not sep or not column:
                raise MappingError(
                    f"bad --map {item!r}: expected FIELD=COLUMN, e.g. item_id=movieId"
                )
            if name not in FIELDS:
                raise MappingError(
                    f"bad --map {item!r}: unknown field {name!r} (fields: {', '.join(FIELDS)})"
                )
            columns[name] = column
        if ts_unit not in TS_UNITS and ts_unit != "iso":
            raise MappingError(f"unknown ts unit {ts_unit!r} (units: {', '.join(TS_UNITS)}, iso)")
        if sum(("action" in columns, action_from is not None, action is not None)) > 1:
            raise MappingError(
                "give the action one way: --map action=COLUMN, --action-from or --action"
            )
        rule = ActionRule.parse(action_from) if action_from is not None else None
        return cls(columns, ts_unit, rule, action, id_prefix)

    def column_of(self, name: str) -> str:
        """The source column of an event field."""
        return self.columns.get(name, name)

    def event_map(self, row: dict[str, Any], line: int) -> dict[str, Any]:
        """The event map of one row (not yet validated); conversion problems raise
        :class:`InvalidRecord` naming the source column."""
        out: dict[str, Any] = {}
        if "event_id" in self.columns:
            out["event_id"] = _text(_column(row, self.columns["event_id"]), "event_id")
        else:
            out["event_id"] = f"{self.id_prefix}{line}"
        for name in ("user_id", "item_id"):
            out[name] = _text(_column(row, self.column_of(name)), self.column_of(name))
        if self.action_rule is not None:
            out["action"] = self.action_rule.apply(row)
        elif self.action is not None:
            out["action"] = self.action
        else:
            out["action"] = _text(_column(row, self.column_of("action")), self.column_of("action"))
        out["ts"] = self._ts(_column(row, self.column_of("ts")))
        for name in ("surface", "weight"):
            column = self.column_of(name)
            value = row.get(column)
            if value is None or value == "":
                if name in self.columns and column not in row:
                    raise InvalidRecord(Reason.MISSING_FIELD, f"column {column!r} is missing")
                continue
            out[name] = _text(value, column) if name == "surface" else _number(value, column)
        return out

    def _ts(self, value: Any) -> int:
        column = self.column_of("ts")
        if self.ts_unit == "iso":
            if not isinstance(value, str):
                raise InvalidRecord(
                    Reason.WRONG_TYPE, f"column {column!r}: expected an ISO-8601 time"
                )
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise InvalidRecord(
                    Reason.WRONG_TYPE, f"column {column!r}: {value!r} is not an ISO-8601 time"
                ) from None
            if moment.tzinfo is None:  # naive times are taken as UTC
                moment = moment.replace(tzinfo=UTC)
            return round(moment.timestamp() * 1000)
        number = _number(value, column)
        if not math.isfinite(number):
            raise InvalidRecord(Reason.BAD_VALUE, f"column {column!r}: {value!r} is not finite")
        return round(number * TS_UNITS[self.ts_unit])


def _column(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    if value is None:
        raise InvalidRecord(Reason.MISSING_FIELD, f"column {column!r} is missing")
    return value


def _text(value: Any, column: str) -> str:
    """Ids and labels as text: strings as they are, integers (JSON ids) as digits."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(
        Reason.WRONG_TYPE, f"column {column!r}: expected text, got {type(value).__name__}"
    )


def _number(value: Any, column: str) -> float:
    if isinstance(value, bool):
        raise InvalidRecord(Reason.WRONG_TYPE, f"column {column!r}: expected a number, got bool")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidRecord(Reason.WRONG_TYPE, f"column {column!r}: {value!r} is not a number")


# --- sources -------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """``jsonl`` for ``.jsonl``/``.ndjson`` files, ``tsv`` for ``.tsv``/``.inter``, else ``csv``."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".inter", ".tab"):
        return "tsv"
    return "csv"


#: (line, row, raw, problem): ``row`` is None when the line is unreadable, and then
#: ``problem`` is (reason, detail).
Row = tuple[int, dict[str, Any] | None, Any, tuple[str, str] | None]


def _csv_rows(stream: IO[str], delimiter: str) -> Iterator[Row]:
    """Rows of a delimited file with a header; ``line`` is where the row starts (1-based)."""
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    # RecBole's files (e.g. MovieLens ml-1m.inter) type their columns, ``user_id:token``.
    header = [name.split(":", 1)[0] for name in header]
    end = reader.line_num
    for values in reader:
        line, end = end + 1, reader.line_num
        if not values:
            continue
        if len(values) != len(header):
            detail = f"{len(values)} columns where the header has {len(header)}"
            yield line, None, values, ("bad_row", detail)
            continue
        yield line, dict(zip(header, values, strict=True)), values, None


def _jsonl_rows(stream: IO[str]) -> Iterator[Row]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, None, text.rstrip("\n"), ("not_json", f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            detail = f"expected a JSON object, got {type(obj).__name__}"
            yield line, None, obj, (Reason.NOT_A_MAP.value, detail)
            continue
        yield line, obj, obj, None


# --- import --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowReject:
    """A row that did not become an event."""

    line: int
    reason: str
    detail: str
    row: Any

    def to_json(self) -> str:
        """One line of the JSONL reject file."""
        return json.dumps(
            {"line": self.line, "reason": self.reason, "detail": self.detail, "row": self.row},
            ensure_ascii=False,
        )


@dataclass(slots=True)
class ImportStats:
    """What one import did; ``out_of_order`` counts events older than the one before."""

    rows: int = 0
    written: int = 0
    rejected: int = 0
    out_of_order: int = 0
    first_rejects: list[RowReject] = field(default_factory=list)


class StrictImportAbort(Exception):
    """``--strict`` met a bad row."""

    def __init__(self, reject: RowReject) -> None:
        super().__init__(f"line {reject.line}: {reject.reason}: {reject.detail}")
        self.reject = reject


def default_rejects_path(source: Path) -> Path:
    """Where bad rows of ``source`` go unless told otherwise: ``SOURCE.rejects.jsonl``."""
    return source.with_name(source.name + ".rejects.jsonl")


def import_rows(
    source: Path,
    output: Path,
    mapping: Mapping,
    *,
    rejects_path: Path | None = None,
    fmt: str | None = None,
    delimiter: str | None = None,
    sort: bool = False,
    strict: bool = False,
    keep_rejects: int = 10,
    progress: Callable[[ImportStats], None] | None = None,
) -> ImportStats:
    """Import ``source`` into the recorded stream ``output``.

    With ``sort`` the events are stably sorted by ``ts`` before writing (in memory: the
    encoded events of the whole file); otherwise they are written in file order, streaming.
    The reject file is created only when a row is rejected.
    """
    fmt = fmt or detect_format(source)
    if fmt not in ("csv", "tsv", "jsonl"):
        raise MappingError(f"unknown format {fmt!r} (csv, tsv, jsonl)")
    rejects_path = rejects_path or default_rejects_path(source)
    stats = ImportStats()
    held: list[tuple[int, bytes]] = []
    last_ts = -1
    rejects_file: IO[str] | None = None
    try:
        with source.open(newline="", encoding="utf-8") as stream, RecordedWriter(output) as writer:
            if fmt == "jsonl":
                rows = _jsonl_rows(stream)
            else:
                rows = _csv_rows(stream, delimiter or ("\t" if fmt == "tsv" else ","))
            for line, row, raw, problem in rows:
                stats.rows += 1
                try:
                    if row is None:
                        assert problem is not None
                        raise _Unreadable(*problem)
                    event = event_from_map(mapping.event_map(row, line))
                except (InvalidRecord, _Unreadable) as error:
                    reject = RowReject(
                        line, _reason(error), error.detail, row if row is not None else raw
                    )
                    if strict:
                        raise StrictImportAbort(reject) from None
                    if rejects_file is None:
                        rejects_file = rejects_path.open("w", encoding="utf-8")
                    rejects_file.write(reject.to_json() + "\n")
                    stats.rejected += 1
                    if len(stats.first_rejects) < keep_rejects:
                        stats.first_rejects.append(reject)
                    continue
                if event.ts < last_ts:
                    stats.out_of_order += 1
                last_ts = event.ts
                if sort:
                    held.append((event.ts, encode_event(event)))
                else:
                    writer.write_raw(encode_event(event))
                stats.written += 1
                if progress is not None and stats.rows % 10_000 == 0:
                    progress(stats)
            if sort:
                held.sort(key=lambda item: item[0])  # stable: equal ts keep file order
                for _, data in held:
                    writer.write_raw(data)
    finally:
        if rejects_file is not None:
            rejects_file.close()
    return stats


class _Unreadable(Exception):
    """A line that is not a row at all (bad JSON, wrong column count)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _reason(error: InvalidRecord | _Unreadable) -> str:
    return error.reason.value if isinstance(error, InvalidRecord) else error.reason
