"""Each baseline on a case whose answer is known."""

from __future__ import annotations

import numpy as np

from streamrec.evaluation.baselines import (
    ItemKNN,
    Popularity,
    RecentlyPopular,
    StaticEmbedding,
    WindowedPopular,
    ranked,
)
from streamrec.evaluation.prequential import History, Stream, Vocab
from streamrec.streams.wire import Event

K = 5


def _stream(rows: list[tuple[str, int, int]], users: Vocab, items: Vocab) -> Stream:
    """rows: (user, item index, ts seconds)."""
    events = [
        Event(f"e{n}", user, f"i{item}", "click", ts * 1000)
        for n, (user, item, ts) in enumerate(rows)
    ]
    return Stream.encode(events, users, items)


def _feed(system, history: History, stream: Stream) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """One event per batch; the list emitted after each event."""
    out = []
    for pos in range(len(stream)):
        batch = history.apply(stream, pos, pos + 1)
        (rec,) = system.process(batch, np.array([True]))
        out.append(rec.tolist())
    return out


def _setup(n_items: int = 6) -> tuple[History, Vocab, Vocab]:
    return History(), Vocab(), Vocab(f"i{i}" for i in range(n_items))


def test_ranked_breaks_ties_by_index_and_drops_zero_scores() -> None:
    scores = np.array([0.0, 2.0, 1.0, 2.0, 1.0])
    assert ranked(scores, 10).tolist() == [1, 3, 2, 4]
    assert ranked(scores, 2).tolist() == [1, 3]
    assert ranked(scores, 10, np.array([3])).tolist() == [1, 2, 4]


def test_most_popular_ranks_by_count_without_the_users_own_items() -> None:
    history, users, items = _setup()
    rows = [("u1", 0, 1), ("u2", 0, 2), ("u3", 0, 3), ("u2", 1, 4), ("u3", 1, 5), ("u3", 2, 6)]
    rows += [("x", 0, 7)]
    popular = Popularity(history, len(items), K)
    lists = _feed(popular, history, _stream(rows, users, items))
    assert lists[-1] == [1, 2]  # i0 (most popular) is x's own: excluded
    assert popular.cold_items().tolist() == [0, 1, 2]


def test_recently_popular_prefers_the_recent_item_over_the_old_heavy_one() -> None:
    history, users, items = _setup()
    rows = [("u1", 0, 0), ("u2", 0, 0), ("u3", 0, 0), ("u4", 1, 10)]
    stream = _stream(rows, users, items)
    recent = RecentlyPopular(history, len(items), K, half_life_s=1.0)
    popular = Popularity(History(), len(items), K)
    _feed(recent, history, stream)
    _feed(popular, popular.history, stream)
    assert recent.cold_items().tolist() == [1, 0]  # 3 * 2^-10 < 1
    assert popular.cold_items().tolist() == [0, 1]


def test_item_knn_recommends_what_co_occurred_with_the_users_items() -> None:
    history, users, items = _setup()
    rows = [("u1", 0, 1), ("u1", 1, 2), ("u2", 0, 3), ("u2", 1, 4), ("u3", 0, 5), ("u3", 2, 6)]
    rows += [("u4", 3, 7), ("x", 0, 8)]
    knn = ItemKNN(history, len(items), K, window=5, query=5, max_items=100)
    lists = _feed(knn, history, _stream(rows, users, items))
    # sim(i1|i0) = 2/sqrt(3*2) > sim(i2|i0) = 1/sqrt(3*1); i3 never co-occurred: popularity after
    assert lists[-1] == [1, 2, 3]


def test_item_knn_learns_online_from_the_replayed_events() -> None:
    history, users, items = _setup()
    rows = [("u1", 4, 1), ("u1", 5, 2), ("x", 4, 3)]
    knn = ItemKNN(history, len(items), K, window=5, query=5, max_items=100)
    lists = _feed(knn, history, _stream(rows, users, items))
    assert lists[-1][0] == 5


def test_static_embedding_keeps_the_warm_up_vector_while_the_user_moves() -> None:
    history, users, items = _setup(4)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    warm = _stream([("u", 0, 1), ("v", 3, 1)], users, items)
    test = _stream([("u", 2, 2), ("w", 3, 3)], users, items)
    static = StaticEmbedding(
        history, len(items), K, item_vectors=vectors, n_users=len(users),
        save_weight=2.0, click_weight=1.0,
    )  # fmt: skip
    _feed(static, history, warm)
    static.end_warmup()
    after = _feed(static, history, test)
    # u acted on i2 (the other direction), but the frozen vector still points at i0: i1 first;
    # i0 and i2 are u's own items
    assert after[0] == [1, 3]
    # w has no warm-up vector: most popular so far (i0, i2, i3 once each: ties by index)
    # minus w's own i3
    assert after[1] == [0, 2]


def test_windowed_popular_counts_only_the_last_n_events() -> None:
    history, users, items = _setup()
    # i0 three times long ago, then i1 twice and i2 once: a window of 3 forgets i0
    rows = [("a", 0, 1), ("b", 0, 2), ("c", 0, 3), ("a", 1, 4), ("b", 1, 5), ("c", 2, 6)]
    windowed = WindowedPopular(history, len(items), K, window=3)
    stream = _stream(rows, users, items)
    for start, stop in [(0, 2), (2, 5), (5, 6)]:  # uneven batches cut the window mid-batch
        windowed.process(history.apply(stream, start, stop), np.zeros(stop - start, bool))
    assert windowed.cold_items().tolist() == [1, 2]
    assert windowed.scores.tolist() == [0, 2, 1, 0, 0, 0]
