"""Engine.recommend_cold: the one cold-start list, served over HTTP and on the stream alike,
never holding an item deleted from the index."""

from __future__ import annotations

from collections.abc import Callable

from streamrec.streams.core.engine import Engine
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event

MakeEngine = Callable[..., Engine]
TS = 1_700_000_000_000


def clicks(users: int, items: list[str], ts: int = TS) -> list[Event]:
    return [
        Event(f"{u}-{j}-{ts}", f"fan{u}", item, "click", ts)
        for u in range(users)
        for j, item in enumerate(items)
    ]


def test_an_item_deleted_from_the_index_is_never_in_the_cold_list(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(cold_threshold=100)
    states: dict[str, UserState] = {}
    engine.process(clicks(5, ["item1", "item2", "item3"]), states)
    assert engine.recommend_cold("new", 3).items == ["item1", "item2", "item3"]
    engine.apply_item_delete(["item1"])
    # People still act on it: the popularity counts it again, the index does not hold it.
    engine.process(clicks(8, ["item1"], TS + 10), states)
    assert engine.popular.top()[0][0] == "item1"
    cold = engine.recommend_cold("new", 10)
    assert "item1" not in cold.items and cold.items[:2] == ["item2", "item3"]
    assert "item1" not in engine.cold_recommendation(10)


def test_http_and_the_stream_serve_a_cold_user_the_same_list(make_engine: MakeEngine) -> None:
    engine = make_engine(cold_threshold=100)
    states: dict[str, UserState] = {}
    engine.process(clicks(4, [f"item{i}" for i in range(12)]), states)
    engine.apply_item_delete(["item0", "item5"])
    [streamed] = engine.process([Event("n", "newcomer", "unknown", "click", TS + 99)], states)
    asked = engine.recommend_cold("someone", 10)
    assert streamed.source == asked.source == "popular"
    assert asked.items == streamed.items and asked.scores == streamed.scores
    assert asked.model_version == streamed.model_version and asked.event_id is None
    minus = engine.recommend_cold("someone", 10, exclude={"item1", "item2"})
    assert (
        minus.items
        == [i for i in engine.cold_recommendation(12) if i not in {"item1", "item2"}][:10]
    )
