"""Worker run-time pieces that need no broker: repeated log lines held back with a count."""

from __future__ import annotations

import logging

from streamrec.streams.runtime import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", level, __file__, 1, msg, args, None)


def test_one_line_per_kind_per_interval_then_the_count_of_those_held_back() -> None:
    clock = Clock()
    repeat = RepeatFilter(10.0, clock)
    passed = []
    for second in range(25):
        clock.now = float(second)
        for node in (1, 2):  # one kind: only the node number differs
            r = record(f"Unable connect to node with id {node}: %s", "refused")
            if repeat.filter(r):
                passed.append((second, r.getMessage()))
    assert [s for s, _ in passed] == [0, 10, 20]
    assert passed[0][1] == "Unable connect to node with id 1: refused"
    assert passed[1][1].endswith("[19 more like this held back]")


def test_other_kinds_and_info_lines_are_not_held_back() -> None:
    repeat = RepeatFilter(10.0, Clock())
    assert repeat.filter(record("broker down"))
    assert repeat.filter(record("commit failed"))
    assert repeat.filter(record("broker down", level=logging.WARNING))
    assert all(repeat.filter(record("fetching", level=logging.INFO)) for _ in range(5))
    assert not repeat.filter(record("broker down"))


def test_a_record_seen_by_several_handlers_is_judged_once() -> None:
    repeat = RepeatFilter(10.0, Clock())
    r = record("broker down")
    assert repeat.filter(r) and repeat.filter(r)
