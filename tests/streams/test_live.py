"""Live prequential scoring: each applied event against its user's last served list."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry
from test_personalize import agent_run, event  # noqa: F401  (agent_run is a fixture)

from streamrec.streams.core.hits import MISS, is_hit, rank_of, reciprocal_rank
from streamrec.streams.core.state import UserState
from streamrec.streams.live import (
    LiveConfig,
    LiveMetrics,
    Served,
    applied_flags,
    score_batch,
)
from streamrec.streams.wire import Event, Recommendation


def rec(user: str, items: list[str], variant: str = "control", ts: int = 1_000) -> Recommendation:
    return Recommendation(
        user, items, [0.0] * len(items), None, None, ts, "m", "personalized", variant=variant
    )


def test_rank_is_the_items_0_based_place_in_a_list_or_an_array():
    assert rank_of(["a", "b", "c"], "c") == 2
    assert rank_of(["a", "b", "c"], "c", depth=2) == MISS
    assert rank_of(np.array([5, 7, 9]), 7) == 1
    assert rank_of(np.array([5, 7, 9]), 4) == MISS
    assert [is_hit(r, 10) for r in (0, 9, 10, MISS)] == [True, True, False, False]
    assert reciprocal_rank(1) == 0.5 and reciprocal_rank(MISS) == 0.0


def test_an_event_is_scored_against_the_stored_list_then_against_its_batchs_own():
    events = [Event("e1", "u", "b", "click", 1), Event("e2", "u", "x", "click", 2)]
    previous = {"u": Served(["a", "b"], "b-variant", "popular", 1_000)}
    produced = [rec("u", ["x", "y"]), rec("u", ["z"])]
    scored, without = score_batch(events, [3.0, 4.0], [True, True], previous, produced, "control")
    assert [(s.variant, s.source, s.rank) for s in scored] == [
        ("b-variant", "popular", 1),  # the stored list, from the variant that served it
        ("control", "personalized", 0),  # the list emitted for e1
    ]
    assert [s.age_s for s in scored] == [2.0, 3.0]
    assert not without


def test_a_user_without_a_list_is_counted_apart_and_a_redelivery_not_at_all():
    events = [Event("e1", "u", "a", "click", 1), Event("e1", "u", "a", "click", 1)]
    produced = [rec("u", ["a"], "b"), rec("u", ["a"], "b")]
    assert applied_flags(events, {}) == [True, False]
    scored, without = score_batch(events, [0, 0], [True, False], {}, produced, "control")
    assert scored == [] and without == {"b": 1}
    state = UserState()
    state.record(events[0], recent_size=5, seen_size=5, applied_ids=5)
    assert applied_flags(events[:1], {"u": state}) == [False]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value; only the live metrics are collected (a worker's lag gauge needs
    a started consumer)."""
    for family in registry.restricted_registry([name]).collect():
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def test_metrics_count_hits_per_k_and_ranks_per_variant():
    registry = CollectorRegistry()
    live = LiveMetrics(registry, LiveConfig((10, 20)))
    live.declare({"control": 0.5, "b": 0.5}, "control", ["personalized"])
    assert sample(registry, "streamrec_variant_share", variant="control", control="true") == 0.5
    assert (
        sample(registry, "streamrec_live_events_scored_total", variant="b", source="personalized")
        == 0
    )
    events = [Event(f"e{r}", f"u{r}", "t", "click", 1) for r in (0, 9, 15, 30)]
    previous = {
        f"u{r}": Served(["o"] * r + ["t"] + ["o"] * 40, "b", "personalized", 0)
        for r in (0, 9, 15, 30)
    }
    produced = [rec(e.user_id, []) for e in events]
    live.record(*score_batch(events, [0.0] * 4, [True] * 4, previous, produced, "control"))
    labels = {"variant": "b", "source": "personalized"}
    assert sample(registry, "streamrec_live_events_scored_total", **labels) == 4
    assert sample(registry, "streamrec_live_hits_total", k="10", **labels) == 2
    assert sample(registry, "streamrec_live_hits_total", k="20", **labels) == 3
    assert sample(registry, "streamrec_live_rank_count", **labels) == 3  # within 20
    assert sample(registry, "streamrec_live_rank_bucket", le="1.0", **labels) == 1
    assert sample(registry, "streamrec_live_rank_bucket", le="10.0", **labels) == 2


def test_the_agent_scores_each_event_against_the_list_its_previous_event_got(agent_run):  # noqa: F811
    records = [event(1), event(2), event(3, "u2"), event(4)]
    recs, _, rt = agent_run(records)
    registry = rt.metrics.registry
    labels = {"variant": "control", "source": recs[0]["source"]}
    assert all(r["variant"] == "control" for r in recs)
    # u1's e2 and e4 had a list (e1's, e2's); e1 and u2's e3 had none.
    assert sample(registry, "streamrec_live_events_scored_total", **labels) == 2
    assert sample(registry, "streamrec_live_events_without_list_total", variant="control") == 2
    hits = sum(recs[prev]["items"][:10].count(f"i{n}") for prev, n in ((0, 2), (1, 4)))
    assert sample(registry, "streamrec_live_hits_total", k="10", **labels) == hits
