"""The item row map popularity and co-visitation share: one lookup per candidate, the same
scores and counts as tables with maps of their own, and files that read into any map."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamrec.index import CandidateIndex
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.rows import ItemRows
from streamrec.streams.wire import Event


def test_rows_are_given_in_first_seen_order_and_unknown_ids_get_minus_one() -> None:
    rows = ItemRows()
    assert rows.add(["b", "a", "b"]).tolist() == [0, 1, 0]
    assert rows.row("c") == 2 and rows.get("d") == -1
    assert rows.rows(["a", "d", "c"]).tolist() == [1, -1, 2]
    assert rows.ids == ["b", "a", "c"] and len(rows) == 3


def _stream(seed: int, n: int) -> tuple[list[str], list[list[str]], list[int]]:
    rng = random.Random(seed)
    history: dict[int, list[str]] = {}
    items, previous = [], []
    for _ in range(n):
        mine = history.setdefault(rng.randrange(15), [])
        item = f"i{min(int(rng.paretovariate(1.1)), 120)}"
        items.append(item)
        previous.append(mine[-3:])
        mine.append(item)
    return items, previous, [60_000 * j for j in range(n)]


def test_shared_rows_give_the_scores_and_counts_of_tables_with_maps_of_their_own() -> None:
    items, previous, ts = _stream(5, 1500)
    own_popular, own_covis = Popular(3600.0), CoVisitation(neighbours=6)
    shared = ItemRows()
    shared.add(["never-acted", *reversed(sorted(set(items)))])  # rows unlike either's own
    popular, covis = Popular(3600.0, rows=shared), CoVisitation(neighbours=6, rows=shared)
    for p, c in ((own_popular, own_covis), (popular, covis)):
        for j, item in enumerate(items):
            p.add(item, ts[j])
        c.add(items, previous, ts)
    histories = [items[j : j + 8] for j in range(0, 800, 100)]
    candidates = [sorted(set(items))[: 40 + 5 * b] + ["unknown"] for b in range(len(histories))]
    flat = [item for ids in candidates for item in ids]
    looked_up = shared.rows(flat)
    np.testing.assert_allclose(
        covis.scores(histories, candidates, rows=looked_up),
        own_covis.scores(histories, candidates),
        rtol=1e-6,
    )
    np.testing.assert_allclose(popular.counts_at(looked_up), own_popular.counts(flat), rtol=1e-9)
    assert popular.top()[0] == own_popular.top()[0]
    assert len(covis) == len(own_covis) and len(popular) == len(own_popular)


def test_a_saved_table_reads_into_a_map_that_already_holds_other_rows() -> None:
    items, previous, ts = _stream(8, 1200)
    saved = CoVisitation(neighbours=5)
    saved.add(items, previous, ts)
    rows = ItemRows()
    rows.add([f"other-{j}" for j in range(50)] + ["i3"])
    loaded = CoVisitation.from_bytes(saved.to_bytes(), neighbours=5, rows=rows)
    assert loaded.rows is rows and rows.get("i3") == 50  # a row it had is kept
    for item in set(items):
        assert loaded.neighbours_of(item) == pytest.approx(saved.neighbours_of(item), rel=1e-6)
        assert loaded.count_of(item) == pytest.approx(saved.count_of(item), rel=1e-9)
    again = CoVisitation.from_bytes(loaded.to_bytes(), neighbours=5)  # out of a shared map
    hub = max(set(items), key=items.count)
    assert again.neighbours_of(hub) == pytest.approx(saved.neighbours_of(hub), rel=1e-6)


def test_a_snapshot_restored_keeps_the_shared_map_and_the_order_of_ties() -> None:
    rows = ItemRows()
    popular, covis = Popular(60.0, rows=rows), CoVisitation(rows=rows)
    for item in ["c", "a", "b"]:
        popular.add(item, 1000)
    covis.add(["a", "b"], [["c"], ["a"]], [1000, 1000])
    popular_bytes, covis_bytes = popular.snapshot(), covis.snapshot()
    popular.add("z", 2000, 9.0)
    popular.restore(popular_bytes)
    covis.restore(covis_bytes)
    assert popular.rows is rows and covis.rows is rows
    assert popular.top()[0] == ["c", "a", "b"]
    assert covis.neighbours_of("a").keys() == {"b", "c"}


def test_the_loader_builds_popularity_and_co_visitation_on_one_map(
    tmp_path: Path, index: CandidateIndex, make_stream: Callable[..., list[Event]]
) -> None:
    from streamrec.config import Settings
    from streamrec.streams.core.artifacts import Artifacts
    from streamrec.streams.core.loader import load_engine

    index.save(tmp_path / "index")
    events = make_stream(200, users=4)
    CoVisitation.from_events(events).save(Artifacts(tmp_path).covis)
    Popular.from_events(
        events, half_life_s=3600.0, top_n=50, action_weights={"click": 1.0, "save": 2.0}
    ).save(Artifacts(tmp_path).popular)
    engine = load_engine(tmp_path, Settings(engine_device="cpu", engine_covis_weight=2.0))
    assert engine.covis is not None and engine.covis.rows is engine.popular.rows
    assert len(engine.covis) == len(engine.popular) == len({e.item_id for e in events})
