"""Item codes: permanent ints for ids, read by index row, through upserts and compaction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streamrec.index import CandidateIndex
from streamrec.streams.core.codes import ItemCodes
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event


def test_codes_are_permanent_in_order_of_first_sight() -> None:
    codes = ItemCodes()
    assert codes.codes(["b", "a", "b"]).tolist() == [0, 1, 0]
    assert codes.lookup(["a", "zz"]).tolist() == [1, -1]
    assert codes.code("c") == 2 and codes.ids == ["b", "a", "c"] and len(codes) == 3


def test_rows_are_looked_up_once_per_generation(index: CandidateIndex, catalog) -> None:  # type: ignore[no-untyped-def]
    codes = ItemCodes()
    result = index.search(catalog.vectors[:4], 20)
    assert result.rows is not None
    for rows, ids in zip(result.rows, result.ids, strict=True):
        assert codes.of_rows(result.generation, rows, ids).tolist() == codes.lookup(ids).tolist()
    known = len(codes)
    # a second pass is served by row, ids unread: wrong ids would go unnoticed
    rows = np.concatenate(result.rows)
    cached = codes.of_rows(result.generation, rows, ["unread"] * len(rows))
    assert len(codes) == known and "unread" not in codes.ids
    assert cached.tolist() == codes.lookup([i for ids in result.ids for i in ids]).tolist()
    index.compact()  # new generation: rows are read from the ids again
    after = index.search(catalog.vectors[:4], 20)
    assert after.rows is not None and after.generation != result.generation
    flat = [i for ids in after.ids for i in ids]
    assert codes.of_rows(after.generation, np.concatenate(after.rows), flat).tolist() == (
        codes.lookup(flat).tolist()
    )


def test_served_popularity_is_the_items_count_through_catalog_changes(
    make_engine: Callable[..., Engine],
    make_stream: Callable[..., list[Event]],
    reranker_onnx,  # type: ignore[no-untyped-def]
) -> None:
    from streamrec.models.scorer import Scorer

    engine = make_engine(Scorer.load(reranker_onnx, FEATURE_NAMES))
    events = make_stream(300)
    states: dict[str, UserState] = {}
    engine.apply(events[:200], states)
    pop = FEATURE_NAMES.index("pop_log")

    def check(batch: list[Event]) -> None:
        as_read = Popular.from_map(engine.popular.to_map())  # the lists read the batch start
        for c in engine.prepare(batch, states, moment="before"):
            want = np.log1p(as_read.counts(c.ids)).astype(np.float32)
            np.testing.assert_allclose(c.features[:, pop], want, rtol=1e-6)

    check(events[200:230])
    top = engine.popular.top()[0]
    engine.apply_item_delete(top[:3])  # dropped: 0 from now on, codes kept
    engine.apply_item_upsert([top[3]], engine.index.get_vectors([top[3]])[0])  # a new row
    check(events[230:260])
    engine.index.compact()  # every row renumbered
    check(events[260:300])
