"""Reject files: where replay and record put what they could not pass on, with the reason.

A reject is a msgpack map ``{position, reason, detail, raw, ...where}``: ``where`` names
the exact place (``index``/``offset`` in a file, ``partition``/``offset`` in a topic),
``reason`` is a :class:`~streamrec.streams.wire.Reason` value (or ``delivery_failed``) and
``raw`` the record's bytes when they could be read, so a fixed record can be replayed. The
file is a recorded-stream file of maps, readable with the same reader.
"""

from __future__ import annotations

from pathlib import Path

from streamrec.streams.recorded import RecordedWriter


def default_rejects_path(path: Path) -> Path:
    """Where rejects of ``path`` go unless told otherwise: ``FILE.rejects.msgpack`` beside it."""
    return path.with_name(path.name + ".rejects.msgpack")


class RejectFile:
    """The reject file of one run, created only when the first reject arrives (a clean run
    leaves no empty file behind)."""

    def __init__(self, path: Path, *, keep: int = 10) -> None:
        self.path = path
        self.count = 0
        #: The first ``keep`` rejects as ``position: reason: detail`` lines, to show a user.
        self.first: list[str] = []
        self._keep = keep
        self._writer: RecordedWriter | None = None

    def write(self, position: str, reason: str, detail: str, raw: bytes, **where: int) -> None:
        """Append one reject; ``position`` is the human-readable place, ``where`` its parts."""
        if self._writer is None:
            self._writer = RecordedWriter(self.path)
        self._writer.write_map(
            {**where, "position": position, "reason": reason, "detail": detail, "raw": raw}
        )
        self.count += 1
        if len(self.first) < self._keep:
            self.first.append(f"{position}: {reason}: {detail}")

    def close(self) -> None:
        """Close the file if one was opened."""
        if self._writer is not None:
            self._writer.close()
