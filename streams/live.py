"""Live prequential quality: every applied event scores the list its user was last served.

Offline, ``streamrec evaluate`` replays a recorded stream and asks, per event, whether the
item was in the list the user had just before. In production the stream answers the same
question for free: the worker keeps each user's latest recommendation (table ``recs``), so
before an event changes anything its item is looked up in that list. The rank comes from
:mod:`.core.hits`, the evaluator's own definition, so live HR@k/MRR mean what the offline
ones mean.

"Last served" is the user's latest recommendation message: the one in ``recs`` for the
first event of a user in a micro-batch, the one emitted for the user's previous event of the
same batch after that — exactly what a consumer of ``recommendations`` saw last, so HR@k
recomputed from that topic and the events equals the live counters. An event whose user
has no list yet is counted apart (``streamrec_live_events_without_list_total``) and a
redelivered, already applied event is not scored again.

Exported (labels ``variant``: the A/B variant that served the list; ``source``: personalized
or popular):

- ``streamrec_live_events_scored_total{variant,source}`` — events scored;
- ``streamrec_live_hits_total{variant,source,k}`` — of those, item within the top ``k``;
- ``streamrec_live_rank{variant,source}`` — histogram of the 1-based rank of each hit,
  one bucket per rank up to the largest ``k``, so MRR over that depth is exact from it;
- ``streamrec_live_list_age_seconds{variant,source}`` — how old the served list was when
  the event reached Kafka (its message timestamp minus the list's ``emitted_ts``);
- ``streamrec_variant_share{variant,control}`` — the declared shares, and which variant is
  the control (``control="true"``: what the dashboard's difference is taken against).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streamrec.streams.core.hits import MISS, is_hit, rank_of
from streamrec.streams.core.state import UserState
from streamrec.streams.wire import Event, Recommendation

#: List ages span a user clicking right after a refresh to one coming back days later.
_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


@dataclass(frozen=True)
class LiveConfig:
    """What the live scoring needs: the cut-offs of HR@k (the largest is also MRR's depth)."""

    ks: tuple[int, ...] = (10, 20)

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"live cut-offs must be positive integers, got {self.ks}")


@dataclass(frozen=True, slots=True)
class Served:
    """The list a user was last served, as an event is scored against it."""

    items: Sequence[str]
    variant: str
    source: str
    emitted_ts: int  # ms

    @classmethod
    def of_map(cls, stored: Mapping[str, Any], default_variant: str) -> Served:
        """From a stored recommendation map (table ``recs``); one written before variants
        existed belongs to ``default_variant``."""
        return cls(
            stored["items"],
            stored.get("variant") or default_variant,
            stored["source"],
            stored["emitted_ts"],
        )


class Scored(NamedTuple):
    """One event scored against its user's last served list (a tuple: one per event, made
    on the hot path)."""

    variant: str
    source: str
    rank: int  # 0-based, MISS when absent
    age_s: float


def applied_flags(events: Sequence[Event], states: Mapping[str, UserState]) -> list[bool]:
    """Whether the engine will newly apply each event (not a redelivery of an applied one);
    ``states`` as read before the batch, since the engine updates them in place."""
    batch_ids: set[tuple[str, str, int]] = set()
    flags = []
    for event in events:
        key = (event.user_id, event.event_id, event.ts)
        state = states.get(event.user_id)
        flags.append(key not in batch_ids and not (state is not None and state.is_applied(event)))
        batch_ids.add(key)
    return flags


def score_batch(
    events: Sequence[Event],
    arrived_s: Sequence[float],
    applied: Sequence[bool],
    previous: Mapping[str, Served],
    produced: Sequence[Recommendation],
    default_variant: str,
) -> tuple[list[Scored], Tally[str]]:
    """Score each applied event of a micro-batch against its user's last served list.

    ``previous``: each user's list from before the batch (users without one are absent);
    ``produced``: the batch's recommendations, one per event in order; ``arrived_s``: each
    event's Kafka timestamp in seconds. Returns the scores and, per variant now serving the
    user, how many applied events had no list to score.
    """
    latest: dict[str, Served | Recommendation] = dict(previous)  # both have what is read
    scored = []
    without: Tally[str] = Tally()
    for event, arrived, is_new, rec in zip(events, arrived_s, applied, produced, strict=True):
        served = latest.get(event.user_id)
        if is_new:
            if served is None:
                without[rec.variant or default_variant] += 1
            else:
                scored.append(
                    Scored(
                        served.variant or default_variant,
                        served.source,
                        rank_of(served.items, event.item_id),
                        max(0.0, arrived - served.emitted_ts / 1000),
                    )
                )
        latest[event.user_id] = rec
    return scored, without


class LiveMetrics:
    """The live quality counters and histograms, in a worker's registry."""

    def __init__(self, registry: CollectorRegistry, config: LiveConfig) -> None:
        self.ks = tuple(sorted(set(config.ks)))
        labels = ["variant", "source"]
        self.scored = Counter(
            "streamrec_live_events_scored",
            "Applied events scored against the list their user was last served.",
            labels,
            registry=registry,
        )
        self.hits = Counter(
            "streamrec_live_hits",
            "Scored events whose item was within the top k of the served list (HR@k = hits / "
            "scored).",
            [*labels, "k"],
            registry=registry,
        )
        self.rank = Histogram(
            "streamrec_live_rank",
            "1-based rank of the event's item in the served list, for items within the largest k.",
            labels,
            buckets=tuple(range(1, max(self.ks) + 1)),
            registry=registry,
        )
        self.list_age = Histogram(
            "streamrec_live_list_age_seconds",
            "Age of the served list when the event reached Kafka.",
            labels,
            buckets=_AGE_BUCKETS,
            registry=registry,
        )
        self.share = Gauge(
            "streamrec_variant_share",
            "Declared traffic share of each A/B variant (control: whether it is the control).",
            ["variant", "control"],
            registry=registry,
        )
        self.without_list = Counter(
            "streamrec_live_events_without_list",
            "Applied events whose user had not been served a list yet (not scored).",
            ["variant"],
            registry=registry,
        )

    def declare(self, shares: Mapping[str, float], control: str, sources: Sequence[str]) -> None:
        """Export each variant's share, and its series at 0 from the start, so a dashboard's
        ratio of two variants has data before the second one's first hit."""
        for variant, share in shares.items():
            self.share.labels(variant, str(variant == control).lower()).set(share)
            self.without_list.labels(variant)
            for source in sources:
                self.scored.labels(variant, source)
                for k in self.ks:
                    self.hits.labels(variant, source, str(k))

    def record(self, scored: Sequence[Scored], without: Mapping[str, int]) -> None:
        """Add one batch's scores and its events without a list (per variant); one counter
        update per label set and batch, labelled children looked up once per batch."""
        depth = max(self.ks)
        groups: dict[tuple[str, str], list[Scored]] = {}
        for s in scored:
            groups.setdefault((s.variant, s.source), []).append(s)
        for (variant, source), group in groups.items():
            ranks = Tally(s.rank for s in group)
            self.scored.labels(variant, source).inc(len(group))
            for k in self.ks:
                hits = sum(n for rank, n in ranks.items() if is_hit(rank, k))
                if hits:
                    self.hits.labels(variant, source, str(k)).inc(hits)
            rank_child = self.rank.labels(variant, source)
            for rank, n in ranks.items():
                if rank != MISS and rank < depth:
                    for _ in range(n):
                        rank_child.observe(rank + 1)
            age_child = self.list_age.labels(variant, source)
            for s in group:
                age_child.observe(s.age_s)
        for v, n in without.items():
            self.without_list.labels(v).inc(n)
