"""A seeded synthetic feed world: clustered items, Zipf popularity, drifting interests.

What it models, and why each part is there:

* **Catalog.** ``C`` cluster centres on the unit sphere; every item belongs to one cluster
  and its vector is its centre plus Gaussian noise (norm about ``spread``), normalised. The
  vectors are the ground-truth catalog (``<stem>.items.npz``, index/vectors format), so
  scale work can build a 10^6–10^7-item index without training anything.
* **Popularity.** Items get a random popularity rank ``r`` and weight ``r^-zipf``. An event
  first picks one of the user's interest clusters, then an item *within* that cluster with
  probability proportional to its weight. Interest clusters are drawn with probability
  proportional to the cluster's total weight (with replacement, independent of the user's
  activity and slot weights), so averaged over users the chance that an event lands in
  cluster ``c`` is exactly ``W_c / W`` and the chance of item ``i`` is ``w_i / W``: the
  stream follows the configured global Zipf law *and* every user stays inside a few
  clusters. ``explore`` is the share of events drawn from global popularity regardless of
  interests (the feed's non-personal traffic).
* **Users.** Heavy-tailed activity (lognormal weights), ``interests`` interest slots with
  Dirichlet weights. A ``drift_fraction`` of the users who have at least two sessions
  replace one interest (chosen by its weight, so the switch is visible) with a new cluster
  at a time strictly inside their active span; from that millisecond on, the events of that
  slot come from the new cluster. The ground truth is ``<stem>.drift.jsonl``.
* **Sessions.** Geometric session lengths (mean ``session_events``), session starts uniform
  over ``days`` (so gaps between one user's sessions are exponential: hours to days), and
  exponential gaps of mean ``event_gap_s`` inside a session. Each session follows one of
  the user's interests, which is what makes a real-time update worth having.
* **Actions.** Each event is a ``save`` with probability ``save_ratio``, else a ``click``.

Output is byte-identical for the same configuration: four independent random streams
(catalog, vectors, users and sessions, events) are spawned from the seed, and all work is
done in fixed-size chunks. Memory is bounded in the number of events: sessions (about
``events / session_events`` small records) are planned up front, then events are generated
session-chunk by session-chunk in start order, merged in time order with the few events of
earlier sessions that run past the next chunk's first start, and written as soon as no
later session can precede them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from streamrec.data.files import (
    DataError,
    companion,
    iso_ms,
    sha256_file,
    tracker,
    write_manifest,
)
from streamrec.index.vectors import save_vectors
from streamrec.streams.recorded import RecordedWriter

_VECTOR_CHUNK = 1 << 16  # item vectors generated per step (16 MiB at d=64)
SESSION_CHUNK = 1 << 15  # sessions expanded to events per step (~250k events at 8/session)
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Every knob of the synthetic world; the same config always gives the same bytes."""

    users: int
    items: int
    events: int
    seed: int = 0
    dim: int = 64
    clusters: int | None = None  # None: about sqrt(items), at least 2 more than `interests`
    zipf: float = 1.0
    interests: int = 3
    save_ratio: float = 0.2
    drift_fraction: float = 0.2
    explore: float = 0.05
    session_events: float = 8.0
    event_gap_s: float = 30.0
    days: float = 28.0
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    spread: float = 0.5
    activity_sigma: float = 1.0

    def __post_init__(self) -> None:
        problems = [
            msg
            for bad, msg in (
                (self.users < 1, "users must be >= 1"),
                (self.items < 2, "items must be >= 2"),
                (self.events < 0, "events must be >= 0"),
                (self.dim < 1, "dim must be >= 1"),
                (self.interests < 1, "interests must be >= 1"),
                (
                    self.clusters is not None and self.clusters <= self.interests,
                    "clusters must exceed interests (a drifting user needs a new cluster)",
                ),
                (
                    self.clusters is not None and self.clusters > self.items,
                    "clusters must not exceed items",
                ),
                (not 0 <= self.zipf <= 10, "zipf must be in [0, 10]"),
                (not 0 <= self.save_ratio <= 1, "save_ratio must be in [0, 1]"),
                (not 0 <= self.drift_fraction <= 1, "drift_fraction must be in [0, 1]"),
                (not 0 <= self.explore <= 1, "explore must be in [0, 1]"),
                (self.session_events < 1, "session_events must be >= 1"),
                (self.event_gap_s <= 0, "event_gap_s must be > 0"),
                (self.days <= 0, "days must be > 0"),
                (self.start_ms < 0, "start_ms must be >= 0"),
                (self.spread < 0, "spread must be >= 0"),
                (self.activity_sigma < 0, "activity_sigma must be >= 0"),
            )  # fmt: skip
            if bad
        ]
        if problems:
            raise DataError("synthetic world: " + "; ".join(problems))
        if self.n_clusters <= self.interests:
            raise DataError(
                f"synthetic world: {self.items} items give only {self.n_clusters} clusters; "
                f"need more than interests={self.interests} (use fewer interests or more items)"
            )

    @property
    def n_clusters(self) -> int:
        """The cluster count used: ``clusters`` or about ``sqrt(items)``."""
        if self.clusters is not None:
            return self.clusters
        return min(self.items, max(self.interests + 2, round(math.sqrt(self.items))))


class Catalog:
    """Item clusters and popularity, with vectorised samplers (no vectors: those stream out).

    Within-cluster sampling uses one sorted key array: the items ordered by cluster, each
    keyed ``c + (cumulative weight within c) / W_c``, so a draw for cluster ``c`` with a
    uniform ``u`` is one ``searchsorted`` for ``c + u`` over the whole catalog.
    """

    def __init__(self, config: SynthConfig, rng: np.random.Generator) -> None:
        n, c = config.items, config.n_clusters
        self.centres = rng.standard_normal((c, config.dim))
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.cluster = rng.integers(0, c, size=n, dtype=np.int32)
        rank = rng.permutation(n).astype(np.float64) + 1.0
        weight = rank**-config.zipf
        del rank
        self.prob = weight / weight.sum()
        self.cluster_prob = np.bincount(self.cluster, weights=self.prob, minlength=c)
        self._order = np.argsort(self.cluster, kind="stable").astype(np.int64)
        sizes = np.bincount(self.cluster, minlength=c)
        self._ends = np.cumsum(sizes)
        self._starts = self._ends - sizes
        cum = np.cumsum(self.prob[self._order])
        before = np.concatenate(([0.0], cum))[self._starts]
        sorted_cluster = self.cluster[self._order]
        self._keys = (
            sorted_cluster + (cum - before[sorted_cluster]) / self.cluster_prob[sorted_cluster]
        )
        del cum, sorted_cluster
        self._global_cdf = np.cumsum(self.prob)

    def __len__(self) -> int:
        return len(self.cluster)

    def sample_in(self, clusters: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per draw from ``clusters`` (popularity-weighted), ``u`` uniform in [0, 1)."""
        pos = np.searchsorted(self._keys, clusters + u, side="right")
        pos = np.clip(pos, self._starts[clusters], self._ends[clusters] - 1)  # float edge at c+1
        return self._order[pos]

    def sample_global(self, u: np.ndarray) -> np.ndarray:
        """One item per draw from global popularity."""
        pos = np.searchsorted(self._global_cdf, u * self._global_cdf[-1], side="right")
        return np.minimum(pos, len(self.cluster) - 1)

    def vectors(
        self, config: SynthConfig, rng: np.random.Generator, progress: Progress | None
    ) -> np.ndarray:
        """The item vectors, float32 ``[items, dim]``, generated chunk by chunk in place."""
        out = np.empty((len(self.cluster), config.dim), dtype=np.float32)
        centres = self.centres.astype(np.float32)
        scale = np.float32(config.spread / math.sqrt(config.dim))
        advance = tracker(progress, "item vectors", len(out))
        for a in range(0, len(out), _VECTOR_CHUNK):
            b = min(a + _VECTOR_CHUNK, len(out))
            block = rng.standard_normal((b - a, config.dim), dtype=np.float32)
            block *= scale
            block += centres[self.cluster[a:b]]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[a:b] = block
            advance(b - a)
        return out


@dataclass(slots=True)
class Users:
    """Per-user interests with their weights and, for drifting users, the switch."""

    interests: np.ndarray  # int32 [U, K] cluster per slot
    slot_cdf: np.ndarray  # float64 [U, K] cumulative slot weights
    drift_slot: np.ndarray  # int16 [U], -1 for users who do not drift
    drift_ts: np.ndarray  # int64 [U]
    drift_new: np.ndarray  # int32 [U]

    def pick_slot(self, users: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A slot per draw, by the users' slot weights."""
        slot = (u[:, None] >= self.slot_cdf[users]).sum(axis=1)
        return np.minimum(slot, self.slot_cdf.shape[1] - 1)

    def clusters_at(self, users: np.ndarray, slots: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The cluster each (user, slot) follows at time ``ts`` (after a switch: the new one)."""
        clusters = self.interests[users, slots]
        switched = (self.drift_slot[users] == slots) & (ts >= self.drift_ts[users])
        clusters[switched] = self.drift_new[users[switched]]
        return clusters


@dataclass(slots=True)
class Sessions:
    """All sessions, sorted by start time."""

    start_ms: np.ndarray  # float64
    user: np.ndarray  # int64
    length: np.ndarray  # int64, events per session
    slot: np.ndarray  # int64, the interest slot the session follows


def _plan_sessions(
    config: SynthConfig, catalog: Catalog, rng: np.random.Generator
) -> tuple[Users, Sessions]:
    """Users' interests and the session plan (no events yet), then the drift switches."""
    n_users, k = config.users, config.interests
    interests = rng.choice(config.n_clusters, size=(n_users, k), p=catalog.cluster_prob)
    slot_cdf = np.cumsum(rng.dirichlet(np.ones(k), size=n_users), axis=1)
    activity = rng.lognormal(0.0, config.activity_sigma, size=n_users)

    lengths = np.empty(0, dtype=np.int64)
    while lengths.sum() < config.events:
        more = math.ceil((config.events - lengths.sum()) / config.session_events * 1.05) + 16
        lengths = np.concatenate((lengths, rng.geometric(1.0 / config.session_events, more)))
    total = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(total, config.events)) + 1 if config.events else 0
    lengths = lengths[:n_sessions]
    if n_sessions:
        lengths[-1] -= total[n_sessions - 1] - config.events  # exactly `events` in all
    user = rng.choice(n_users, size=n_sessions, p=activity / activity.sum())
    start = config.start_ms + rng.random(n_sessions) * (config.days * _DAY_MS)
    order = np.argsort(start, kind="stable")
    start, user, lengths = start[order], user[order], lengths[order]
    users = Users(
        interests=interests.astype(np.int32),
        slot_cdf=slot_cdf,
        drift_slot=np.full(n_users, -1, dtype=np.int16),
        drift_ts=np.zeros(n_users, dtype=np.int64),
        drift_new=np.zeros(n_users, dtype=np.int32),
    )
    slot = users.pick_slot(user, rng.random(n_sessions))
    _plan_drift(config, catalog, users, start, user, rng)
    return users, Sessions(start, user, lengths, slot)


def _plan_drift(
    config: SynthConfig,
    catalog: Catalog,
    users: Users,
    start: np.ndarray,
    user: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Pick the drifting users, their switch time, slot and new cluster (into ``users``)."""
    n_users = len(users.interests)
    first = np.full(n_users, np.inf)
    last = np.full(n_users, -np.inf)
    np.minimum.at(first, user, np.floor(start))
    np.maximum.at(last, user, np.floor(start))
    # A switch strictly after the first event and at or before the last session's first
    # event, so every drifting user has events on both sides of it.
    eligible = np.flatnonzero(np.isfinite(first) & (last > first))
    drifters = np.sort(
        rng.choice(eligible, round(config.drift_fraction * len(eligible)), replace=False)
    )
    if not len(drifters):
        return
    lo, hi = first[drifters].astype(np.int64), last[drifters].astype(np.int64)
    ts = lo + 1 + np.floor(rng.random(len(drifters)) * (hi - lo)).astype(np.int64)
    slot = users.pick_slot(drifters, rng.random(len(drifters)))
    new = np.full(len(drifters), -1, dtype=np.int64)
    todo = np.arange(len(drifters))
    for _ in range(10_000):  # rejection: the new cluster must be none of the user's current ones
        draw = rng.choice(config.n_clusters, size=len(todo), p=catalog.cluster_prob)
        ok = (users.interests[drifters[todo]] != draw[:, None]).all(axis=1)
        new[todo[ok]] = draw[ok]
        todo = todo[~ok]
        if not len(todo):
            break
    else:
        raise DataError(
            "cannot find new interest clusters for drifting users: popularity is "
            "concentrated in too few clusters (lower zipf or add clusters)"
        )
    users.drift_slot[drifters] = slot
    users.drift_ts[drifters] = ts
    users.drift_new[drifters] = new


@dataclass(slots=True)
class _Chunk:
    ts: np.ndarray
    user: np.ndarray
    item: np.ndarray
    save: np.ndarray

    def take(self, index: np.ndarray | slice) -> _Chunk:
        return _Chunk(self.ts[index], self.user[index], self.item[index], self.save[index])

    @staticmethod
    def concat(a: _Chunk, b: _Chunk) -> _Chunk:
        return _Chunk(
            *(
                np.concatenate((x, y))
                for x, y in ((a.ts, b.ts), (a.user, b.user), (a.item, b.item), (a.save, b.save))
            )
        )


def _expand(
    config: SynthConfig,
    catalog: Catalog,
    users: Users,
    sessions: Sessions,
    a: int,
    b: int,
    rng: np.random.Generator,
) -> _Chunk:
    """The events of sessions ``a..b`` (in session order, not yet time-sorted)."""
    lengths = sessions.length[a:b]
    n = int(lengths.sum())
    sid = np.repeat(np.arange(a, b), lengths)
    first = np.cumsum(lengths) - lengths
    gaps = rng.exponential(config.event_gap_s * 1000.0, size=n)
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], lengths)
    ts = np.floor(sessions.start_ms[sid] + elapsed).astype(np.int64)
    user = sessions.user[sid]
    clusters = users.clusters_at(user, sessions.slot[sid], ts)
    u = rng.random(n)
    explore = rng.random(n) < config.explore
    item = np.empty(n, dtype=np.int64)
    item[~explore] = catalog.sample_in(clusters[~explore], u[~explore])
    item[explore] = catalog.sample_global(u[explore])
    save = rng.random(n) < config.save_ratio
    return _Chunk(ts, user, item, save)


def _write_drift(path: Path, users: Users) -> int:
    """The drift ground truth, one JSON object per line in switch-time order."""
    drifters = np.flatnonzero(users.drift_slot >= 0)
    drifters = drifters[np.argsort(users.drift_ts[drifters], kind="stable")]
    with path.open("w", encoding="utf-8") as f:
        for uid in drifters.tolist():
            slot = int(users.drift_slot[uid])
            f.write(json.dumps({
                "user_id": f"u{uid}", "ts": int(users.drift_ts[uid]), "slot": slot,
                "old_cluster": int(users.interests[uid, slot]),
                "new_cluster": int(users.drift_new[uid]),
            }) + "\n")  # fmt: skip
    return len(drifters)


def generate(
    config: SynthConfig,
    out: Path,
    progress: Progress | None = None,
    *,
    session_chunk: int = SESSION_CHUNK,
) -> dict[str, Any]:
    """Write the world: the stream ``out`` and beside it ``<stem>.items.npz`` (catalog),
    ``<stem>.truth.npz`` (clusters, popularity, interests), ``<stem>.drift.jsonl`` and
    ``<stem>.manifest.json``; returns the manifest.

    ``session_chunk`` sessions are turned into events per step: it bounds memory, and since
    the random draws are made per step, the bytes depend on it as on the configuration.
    """
    rng_catalog, rng_vectors, rng_users, rng_events = (
        np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(4)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(config, rng_catalog)
    items_path = companion(out, ".items.npz")
    digits = len(str(len(catalog) - 1))
    item_ids = np.char.add("i", np.arange(len(catalog)).astype(f"U{digits}"))
    save_vectors(items_path, item_ids, catalog.vectors(config, rng_vectors, progress))
    del item_ids

    users, sessions = _plan_sessions(config, catalog, rng_users)
    truth_path = companion(out, ".truth.npz")
    with truth_path.open("wb") as f:
        np.savez(
            f,
            item_cluster=catalog.cluster,
            item_prob=catalog.prob,
            cluster_centres=catalog.centres.astype(np.float32),
            user_interests=users.interests,
            user_interest_weights=np.diff(users.slot_cdf, prepend=0.0, axis=1),
        )
    drift_path = companion(out, ".drift.jsonl")
    n_drift = _write_drift(drift_path, users)

    user_events = np.zeros(config.users, dtype=np.int64)
    item_events = np.zeros(len(catalog), dtype=np.int64)
    saves = 0
    ts_min = ts_max = None
    prefix = f"s{config.seed}-"
    advance = tracker(progress, "events", config.events)
    n_sessions = len(sessions.start_ms)
    pending = _Chunk(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.int64, bool)))
    with RecordedWriter(out) as writer:
        for a in range(0, n_sessions, session_chunk):
            b = min(a + session_chunk, n_sessions)
            merged = _Chunk.concat(
                pending, _expand(config, catalog, users, sessions, a, b, rng_events)
            )
            merged = merged.take(np.argsort(merged.ts, kind="stable"))
            # Later sessions start at or after sessions.start_ms[b]: everything before it is final.
            cut = (
                int(np.searchsorted(merged.ts, math.floor(sessions.start_ms[b])))
                if b < n_sessions
                else len(merged.ts)
            )
            ready, pending = merged.take(slice(0, cut)), merged.take(slice(cut, None))
            if not len(ready.ts):
                continue
            user_events += np.bincount(ready.user, minlength=config.users)
            item_events += np.bincount(ready.item, minlength=len(catalog))
            saves += int(ready.save.sum())
            ts_min = int(ready.ts[0]) if ts_min is None else ts_min
            ts_max = int(ready.ts[-1])
            for ts, uid, iid, save in zip(
                ready.ts.tolist(),
                ready.user.tolist(),
                ready.item.tolist(),
                ready.save.tolist(),
                strict=True,
            ):
                # write_map packs the same bytes as Event.to_map, without the object per event
                writer.write_map({"event_id": f"{prefix}{writer.count}", "user_id": f"u{uid}",
                                  "item_id": f"i{iid}", "action": "save" if save else "click",
                                  "ts": ts})  # fmt: skip
            advance(len(ready.ts))
        count = writer.count
    manifest: dict[str, Any] = {
        "dataset": "synthetic",
        "config": {**asdict(config), "clusters": config.n_clusters},
        "events": count,
        "users": int((user_events > 0).sum()),
        "items": int((item_events > 0).sum()),
        "catalog_items": len(catalog),
        "saves": saves,
        "clicks": count - saves,
        "sessions": n_sessions,
        "drifting_users": n_drift,
        "ts_min": ts_min,
        "ts_max": ts_max,
        "time_range": (
            [iso_ms(ts_min), iso_ms(ts_max)] if ts_min is not None and ts_max is not None else None
        ),
        "files": {
            "stream": out.name,
            "catalog": items_path.name,
            "truth": truth_path.name,
            "drift": drift_path.name,
        },
        "output": {"file": out.name, "sha256": sha256_file(out)},
    }
    write_manifest(out, manifest)
    return manifest
