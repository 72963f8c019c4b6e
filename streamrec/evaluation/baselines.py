"""Baselines the engine must beat, replayed on the same stream and updated online.

* ``popular``: most popular so far (all-time interaction counts).
* ``recent``: recently popular (counts decayed with a half-life of event time).
* ``windowed``: most popular over a sliding window of the last ``eval_window_popular_events``
  events (on time-based splits this is known to beat vanilla sequence models).
* ``itemknn``: co-occurrence item-kNN; pairs (new item, each of the user's last few items)
  are counted as events arrive, and a user's query is their last few items, scored by
  cosine-normalised co-occurrence; items that co-occur with none are ranked by popularity.
* ``static``: static embeddings — one user vector, the action-weighted mean of the item
  vectors of the user's warm-up history, frozen when the held-out stream starts (no
  real-time update), searched exactly over the item vectors; users without one get ``popular``.

Every baseline, like the engine, never recommends an item back to a user who already
interacted with it, and shows a user never seen its own cold list. All are deterministic:
ties are broken by item index.
"""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

from streamrec.evaluation.prequential import Batch, History

#: The baselines of the default report (sasrec: evaluation/sasrec.py).
NAMES = ("popular", "recent", "windowed", "itemknn", "static", "sasrec")


def ranked(scores: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """The (up to) ``n`` items of positive score, best first, ties by index; ``exclude``
    lists item indices that must not appear."""
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = 0.0
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > n:
        top = np.argpartition(-scores[candidates], n - 1)[:n]
        candidates = np.sort(candidates[top])
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def first_unseen(order: list[int], first: dict[int, int], length: int, k: int) -> np.ndarray:
    """The first ``k`` items of a global order the user had not acted on in their first
    ``length`` events (``first``: item → position of the user's first action on it)."""
    out: list[int] = []
    for item in order:
        if first.get(item, length) >= length:
            out.append(item)
            if len(out) == k:
                break
    return np.asarray(out, dtype=np.int64)


class Baseline:
    """Shared plumbing: the history, list length, catalog size and the emission digest.

    ``process`` computes each wanted event's list from the user's history prefix and the
    global statistics as of the batch start, then folds the batch into the statistics.
    """

    name = "baseline"

    def __init__(self, history: History, n_items: int, k: int) -> None:
        self.history = history
        self.n_items = n_items
        self.k = k
        self._hash = hashlib.sha256()

    def end_warmup(self) -> None:
        """Most baselines do not care where the warm-up ends."""

    def digest(self) -> str:
        return self._hash.hexdigest()

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(batch)
        picks = np.flatnonzero(want)
        if len(picks):
            users = batch.users[picks].tolist()
            lengths = batch.after[picks].tolist()
            for j, rec in zip(picks.tolist(), self.recommend(users, lengths), strict=True):
                self._hash.update(rec.astype("<i8").tobytes())
                self._hash.update(b"|")
                out[j] = rec
        self.add(batch)
        return out

    def recommend(self, users: list[int], lengths: list[int]) -> list[np.ndarray]:
        """Lists for users whose history is their first ``lengths`` events."""
        raise NotImplementedError

    def add(self, batch: Batch) -> None:
        """Fold the batch into the global statistics."""
        raise NotImplementedError


class Popularity(Baseline):
    """Most popular so far; subclasses change how one event adds to an item's score."""

    name = "popular"

    def __init__(self, history: History, n_items: int, k: int) -> None:
        super().__init__(history, n_items, k)
        self.scores = np.zeros(n_items, dtype=np.float64)

    def add(self, batch: Batch) -> None:
        self.scores += np.bincount(batch.items, minlength=self.n_items)

    def cold_items(self) -> np.ndarray:
        return ranked(self.scores, self.k)

    def recommend(self, users: list[int], lengths: list[int]) -> list[np.ndarray]:
        order = ranked(self.scores, self.k + max(lengths)).tolist()
        return [
            first_unseen(order, self.history.first[u], n, self.k)
            for u, n in zip(users, lengths, strict=True)
        ]


class RecentlyPopular(Popularity):
    """Popularity with exponentially decayed counts (half-life in event time).

    An event at time t adds 2^((t - ref) / half_life): only the ranking matters, so the
    common decay to "now" is never applied; ``ref`` moves forward (rescaling the scores)
    before the exponent could overflow.
    """

    name = "recent"

    def __init__(self, history: History, n_items: int, k: int, half_life_s: float) -> None:
        super().__init__(history, n_items, k)
        self.half_life_ms = half_life_s * 1000.0
        self.ref_ts: int | None = None

    def add(self, batch: Batch) -> None:
        if self.ref_ts is None:
            self.ref_ts = int(batch.ts[0])
        exponent = (batch.ts - self.ref_ts) / self.half_life_ms
        if exponent.max() > 500:
            shift = float(exponent.max())
            self.scores *= 2.0**-shift
            self.ref_ts += int(shift * self.half_life_ms)
            exponent = (batch.ts - self.ref_ts) / self.half_life_ms
        self.scores += np.bincount(batch.items, np.exp2(exponent), minlength=self.n_items)


class WindowedPopular(Popularity):
    """Most popular over the last ``window`` events (all users): counts in, counts out."""

    name = "windowed"

    def __init__(self, history: History, n_items: int, k: int, window: int) -> None:
        super().__init__(history, n_items, k)
        self.window = window
        self.log: list[np.ndarray] = []  # the batches' items still (partly) in the window
        self.held = 0  # events in self.log

    def add(self, batch: Batch) -> None:
        self.scores += np.bincount(batch.items, minlength=self.n_items)
        self.log.append(batch.items)
        self.held += len(batch)
        while self.held > self.window:
            oldest = self.log[0]
            out = min(len(oldest), self.held - self.window)
            self.scores -= np.bincount(oldest[:out], minlength=self.n_items)
            self.held -= out
            if out == len(oldest):
                self.log.pop(0)
            else:
                self.log[0] = oldest[out:]


class ItemKNN(Popularity):
    """Online co-occurrence item-kNN (dense co-occurrence matrix; popularity for ties)."""

    name = "itemknn"

    def __init__(
        self, history: History, n_items: int, k: int, *, window: int, query: int, max_items: int
    ) -> None:
        if n_items > max_items:
            raise ValueError(
                f"item-kNN keeps a dense {n_items}x{n_items} co-occurrence matrix; the limit is "
                f"{max_items} items (eval_knn_max_items): leave the itemknn baseline out"
            )
        super().__init__(history, n_items, k)
        self.window = window
        self.query = query
        self.cooc = np.zeros((n_items, n_items), dtype=np.float32)

    def add(self, batch: Batch) -> None:
        super().add(batch)
        rows: list[int] = []
        cols: list[int] = []
        for user, n in zip(batch.users.tolist(), batch.after.tolist(), strict=True):
            mine = self.history.items[user]
            item = mine[n - 1]
            partners = [p for p in mine[max(n - 1 - self.window, 0) : n - 1] if p != item]
            rows += partners
            cols += [item] * len(partners)
        if rows:  # count each (row, col) cell once per batch: a plain fancy-index add
            a, b = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
            cells, counts = np.unique(
                np.concatenate([a * self.n_items + b, b * self.n_items + a]), return_counts=True
            )
            self.cooc.reshape(-1)[cells] += counts

    def inverse_norms(self) -> np.ndarray:
        """1/sqrt(count) per item (0 for items never seen): the cosine normalisation."""
        return np.where(self.scores > 0, 1.0 / np.sqrt(np.maximum(self.scores, 1e-12)), 0.0)

    def similarity(self, recent: np.ndarray, inv_norm: np.ndarray) -> np.ndarray:
        """Every item's summed cosine co-occurrence with the ``recent`` item indices."""
        return (self.cooc[recent] * inv_norm[recent, None]).sum(axis=0) * inv_norm

    def recommend(self, users: list[int], lengths: list[int]) -> list[np.ndarray]:
        inv_norm = self.inverse_norms()
        fallback = self.scores / (self.scores.max() + 1.0)  # in [0, 1): below any similarity
        out = []
        for user, n in zip(users, lengths, strict=True):
            mine = np.asarray(self.history.items[user][:n], dtype=np.int64)
            sim = self.similarity(mine[-self.query :], inv_norm)
            key = np.where(sim > 0, sim + 2.0, fallback)
            out.append(ranked(key, self.k, mine))
        return out


class StaticEmbedding(Popularity):
    """User vector from the warm-up only (no real-time update); popularity for the rest.

    A user's vector is the action-weighted sum of the vectors of the items they acted on
    during the warm-up (direction only: the search is by inner product); it stops moving
    when the held-out stream starts. Items are searched exactly over all item vectors.
    """

    name = "static"

    def __init__(
        self,
        history: History,
        n_items: int,
        k: int,
        *,
        item_vectors: np.ndarray,
        n_users: int,
        save_weight: float,
        click_weight: float,
    ) -> None:
        super().__init__(history, n_items, k)
        if item_vectors.shape[0] != n_items:
            raise ValueError("need one (possibly zero) vector per item index")
        self.vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self.known = np.linalg.norm(self.vectors, axis=1) > 0
        self.sums = np.zeros((n_users, self.vectors.shape[1]), dtype=np.float64)
        self.save_weight = save_weight
        self.click_weight = click_weight
        self.frozen = False

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        if not self.frozen:  # the user's own vector is exact per event, like a history prefix
            weights = np.where(batch.saves, self.save_weight, self.click_weight)
            users, rows = np.unique(batch.users, return_inverse=True)
            per_user = sp.csr_matrix(
                (weights, (rows, np.arange(len(rows)))), shape=(len(users), len(rows))
            )
            self.sums[users] += per_user @ self.vectors[batch.items].astype(np.float64)
        return super().process(batch, want)

    def end_warmup(self) -> None:
        """Freeze: from now on each user's vector stays what the warm-up made it."""
        self.frozen = True

    def recommend(self, users: list[int], lengths: list[int]) -> list[np.ndarray]:
        queries = self.sums[users]
        has_vector = np.linalg.norm(queries, axis=1) > 0
        fallback = iter(
            super().recommend(
                [u for u, h in zip(users, has_vector, strict=True) if not h],
                [n for n, h in zip(lengths, has_vector, strict=True) if not h],
            )
            if not has_vector.all()
            else []
        )
        scores = queries @ self.vectors.T
        out = []
        for row, (user, n) in enumerate(zip(users, lengths, strict=True)):
            if not has_vector[row]:
                out.append(next(fallback))
                continue
            # shift known items above 0 (ranked() keeps positive scores only)
            key = np.where(self.known, scores[row] - scores[row].min() + 1.0, 0.0)
            mine = np.asarray(self.history.items[user][:n], dtype=np.int64)
            out.append(ranked(key, self.k, mine))
        return out
