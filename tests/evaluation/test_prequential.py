"""Test-then-train semantics of the replay, checked with a system that scripts its lists.

The scripted system recommends, after each event, a list naming that event (its item
index, then a marker), so the test can tell exactly which emitted list each event was
scored against.
"""

from __future__ import annotations

import numpy as np

from streamrec.evaluation.metrics import MISS
from streamrec.evaluation.prequential import Batch, History, Stream, Vocab, replay
from streamrec.streams.wire import Event


class Echo:
    """After event e (item i), recommends [i+1]: it predicts "the next item index".

    Its cold list is [COLD]. It records every batch it saw, for the batching checks.
    """

    name = "echo"
    COLD = 0

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []
        self.warm_calls = 0

    def cold_items(self) -> np.ndarray:
        return np.array([self.COLD])

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        self.batches.append((batch.start, batch.stop))
        return [np.array([item + 1]) for item in batch.items.tolist()]

    def end_warmup(self) -> None:
        self.warm_calls += 1

    def digest(self) -> str:
        return "echo"


def _stream(pairs: list[tuple[str, int]], users: Vocab, items: Vocab) -> Stream:
    events = [
        Event(f"e{n}", user, f"i{item}", "click", 1000 * n) for n, (user, item) in enumerate(pairs)
    ]
    return Stream.encode(events, users, items)


def _vocab(n: int) -> Vocab:
    return Vocab(f"i{i}" for i in range(n))


def test_each_event_is_scored_against_the_list_emitted_after_the_users_previous_event() -> None:
    users, items = Vocab(), _vocab(10)
    # a: 1 -> 2 (hit: echo predicted 2), b: 5 (cold, COLD=0 miss), a: 2 -> 4 (miss: predicted 3),
    # b: 6 (hit), a: 0 — scored against [5]: miss
    test = _stream([("a", 1), ("a", 2), ("b", 5), ("a", 4), ("b", 6), ("a", 0)], users, items)
    echo = Echo()
    out = replay(
        [echo], test, warmup=None, history=History(), users=users, items=items,
        max_batch=4, max_k=10,
    )  # fmt: skip
    assert out.outcomes["echo"].ranks.tolist() == [MISS, 0, MISS, MISS, 0, MISS]


def test_a_repeat_inside_one_batch_is_scored_against_the_list_of_its_earlier_event() -> None:
    """With one batch holding all events, a's second event must still see the list emitted
    after a's first event, not the cold list and not its own."""
    users, items = Vocab(), _vocab(10)
    test = _stream([("a", 3), ("a", 4), ("a", 5)], users, items)
    echo = Echo()
    out = replay(
        [echo], test, warmup=None, history=History(), users=users, items=items,
        max_batch=256, max_k=10,
    )  # fmt: skip
    assert echo.batches == [(0, 3)]
    assert out.outcomes["echo"].ranks.tolist() == [MISS, 0, 0]


def test_warm_up_is_applied_not_scored_and_hands_over_the_last_list() -> None:
    users, items = Vocab(), _vocab(10)
    warm = _stream([("a", 1), ("a", 7)], users, items)
    test = _stream([("a", 8), ("a", 2)], users, items)
    echo = Echo()
    out = replay(
        [echo], test, warmup=warm, history=History(), users=users, items=items,
        max_batch=1, max_k=10,
    )  # fmt: skip
    assert len(out.outcomes["echo"].ranks) == 2
    assert out.outcomes["echo"].ranks.tolist() == [0, MISS]  # 8 was predicted after 7
    assert out.history_length.tolist() == [2, 3]
    assert echo.warm_calls == 1


def test_micro_batches_keep_stream_order_and_size() -> None:
    users, items = Vocab(), _vocab(10)
    test = _stream([("u", i % 10) for i in range(10)], users, items)
    assert test.micro_batches(4) == [(0, 4), (4, 8), (8, 10)]


def test_coverage_and_traces_follow_the_scored_lists() -> None:
    users, items = Vocab(), _vocab(10)
    test = _stream([("a", 1), ("a", 2), ("a", 3)], users, items)
    out = replay(
        [Echo()], test, warmup=None, history=History(), users=users, items=items,
        max_batch=2, max_k=10, track=lambda u: True,
    )  # fmt: skip
    outcome = out.outcomes["echo"]
    assert np.flatnonzero(outcome.covered).tolist() == [0, 2, 3]  # cold [0], then [2], [3]
    assert sorted(outcome.traces) == [0, 1]  # the last event's list is never shown
