"""User-update rules: how one action moves a user's vector(s), and what to search with.

Two rules behind one interface, compared by the evaluation:

- :class:`DecayedEmbedding`: one running embedding ``u ← decay·u + w(action)·v̂_item``;
  the query is ``u`` normalized (a decayed, action-weighted mean of the user's items).
- :class:`MultiInterest`: up to ``interests`` centroids per user (PinnerSage-like). An item
  joins its nearest centroid when their cosine similarity reaches ``threshold``, else it
  starts a new interest, replacing the weakest centroid when all slots are taken. Each
  centroid is one query; the engine merges their results.

Decay is ``0.5 ** (Δt / half_life_s) · 0.5 ** (1 / half_life_events)`` per applied action,
with Δt taken from *event* timestamps (never the wall clock), so replaying a stream gives
bit-identical state. Item vectors are normalized before they are added, so a high-norm
(popular) item does not outweigh the rest of a user's history. Vectors and masses are
stored rounded to float32 (see ``state.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from streamrec.streams.core.state import UserState

_EPS = 1e-12
#: Interests holding less than this share of a user's weight are not searched: the weighted
#: merge would give them under 1 in 20 candidate slots, yet each costs a full search row.
MIN_QUERY_SHARE = 0.05
_ONE = np.ones(1, dtype=np.float32)
_ONE.flags.writeable = False


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, _EPS)


def _unit_row(vector: np.ndarray) -> np.ndarray:
    """:func:`unit` of one float64 row, bit for bit, without its generic-axis overhead
    (``np.linalg.norm`` along an axis is exactly this ``sqrt(add.reduce(x * x))``)."""
    return vector / max(math.sqrt(np.add.reduce(vector * vector)), _EPS)


def _stored(vec: np.ndarray) -> list[float]:
    """A vector as the state keeps it: float32-rounded Python floats."""
    return vec.astype(np.float32).astype(np.float64).tolist()


class UpdateRule(ABC):
    """Moves a user's state on each action and turns it into retrieval queries."""

    name: str
    #: Most queries one user can contribute to a search.
    max_queries: int

    def __init__(
        self,
        *,
        half_life_s: float,
        half_life_events: float,
        action_weights: Mapping[str, float],
    ) -> None:
        self.half_life_ms = half_life_s * 1000.0
        self.event_decay = 0.5 ** (1.0 / half_life_events) if half_life_events > 0 else 1.0
        self.action_weights = dict(action_weights)

    def weight(self, action: str, event_weight: float | None) -> float:
        """How much one action counts: the action's weight times the event's optional weight."""
        return self.action_weights[action] * (1.0 if event_weight is None else event_weight)

    def decay(self, state: UserState, ts: int) -> float:
        """Factor the state's vectors shrink by when moving from ``state.rule_ts`` to ``ts``.

        An out-of-order (older) event does not rewind time: Δt counts as 0.
        """
        dt = max(ts - state.rule_ts, 0) if state.rule_ts >= 0 else 0
        return 0.5 ** (dt / self.half_life_ms) * self.event_decay

    def update(self, state: UserState, item_vector: np.ndarray, weight: float, ts: int) -> None:
        """Apply one action on an item (vector of any norm) at event time ``ts`` (ms)."""
        item = _unit_row(np.asarray(item_vector, dtype=np.float64))
        if state.vectors and len(state.vectors[0]) != item.size:  # re-trained embeddings
            state.vectors, state.masses = [], []
        vectors = np.asarray(state.vectors, dtype=np.float64).reshape(-1, item.size)
        masses = np.asarray(state.masses, dtype=np.float64)
        factor = self.decay(state, ts)
        vectors, masses = self._move(vectors * factor, masses * factor, item, weight)
        state.vectors = [_stored(v) for v in vectors]
        state.masses = _stored(masses)
        state.rule_ts = max(state.rule_ts, ts)
        state.n_known += 1

    @abstractmethod
    def _move(
        self, vectors: np.ndarray, masses: np.ndarray, item: np.ndarray, weight: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rule proper: decayed vectors/masses plus one unit item vector → new ones."""

    def queries(self, state: UserState, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit query vectors ``[m, dim]`` float32, strongest first, and their weights ``[m]``
        (summing to 1); ``m == 0`` for a user with no (weighted) vectors of this dimension."""
        if not state.vectors or len(state.vectors[0]) != dim or max(state.masses) <= 0:
            return np.zeros((0, dim), np.float32), np.zeros(0, np.float32)
        if len(state.vectors) == 1:  # the decayed rule's only vector: skip the sorting
            vector = np.array(state.vectors, dtype=np.float32)
            return vector / max(float(np.sqrt(vector[0] @ vector[0])), _EPS), _ONE
        masses = np.asarray(state.masses, dtype=np.float64)
        order = np.argsort(-masses, kind="stable")
        keep = masses[order] >= MIN_QUERY_SHARE * masses.sum()
        keep[0] = True  # the strongest interest is always searched
        order = order[keep]
        vectors = unit(np.asarray(state.vectors, dtype=np.float64)[order])
        weights = masses[order] / masses[order].sum()
        return vectors.astype(np.float32), weights.astype(np.float32)


class DecayedEmbedding(UpdateRule):
    """One decayed, action-weighted running embedding per user."""

    name = "decayed"
    max_queries = 1

    def update(self, state: UserState, item_vector: np.ndarray, weight: float, ts: int) -> None:
        """The generic update's arithmetic, bit for bit, minus the per-event array shuffling
        (it runs once per event on the hot path: 17 -> 9 us)."""
        if len(state.vectors) != 1:  # empty, or a multi-interest state to collapse
            super().update(state, item_vector, weight, ts)
            return
        item = _unit_row(np.asarray(item_vector, dtype=np.float64))
        if len(state.vectors[0]) != item.size:  # re-trained embeddings
            state.vectors, state.masses = [], []
            super().update(state, item_vector, weight, ts)
            return
        factor = self.decay(state, ts)
        vector = np.array(state.vectors[0], dtype=np.float64) * factor + weight * item
        state.vectors = [vector.astype(np.float32).astype(np.float64).tolist()]
        state.masses = [float(np.float32(state.masses[0] * factor + weight))]
        state.rule_ts = max(state.rule_ts, ts)
        state.n_known += 1

    def _move(
        self, vectors: np.ndarray, masses: np.ndarray, item: np.ndarray, weight: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(vectors) == 0:
            return (weight * item)[None, :], np.array([weight])
        # A state written by the multi-interest rule collapses into the sum of its centroids.
        return vectors.sum(axis=0, keepdims=True) + weight * item, masses.sum(
            keepdims=True
        ) + weight


class MultiInterest(UpdateRule):
    """A few interest centroids per user; an item joins the nearest one or starts its own."""

    name = "multi"

    def __init__(
        self,
        *,
        interests: int,
        threshold: float,
        half_life_s: float,
        half_life_events: float,
        action_weights: Mapping[str, float],
    ) -> None:
        super().__init__(
            half_life_s=half_life_s,
            half_life_events=half_life_events,
            action_weights=action_weights,
        )
        self.max_queries = interests
        self.threshold = threshold

    def _move(
        self, vectors: np.ndarray, masses: np.ndarray, item: np.ndarray, weight: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(vectors):
            sims = unit(vectors) @ item
            nearest = int(np.argmax(sims))
            if sims[nearest] >= self.threshold:
                vectors[nearest] += weight * item
                masses[nearest] += weight
                return vectors, masses
        if len(vectors) < self.max_queries:
            return np.vstack([vectors, weight * item]), np.append(masses, weight)
        weakest = int(np.argmin(masses))
        vectors[weakest] = weight * item
        masses[weakest] = weight
        return vectors, masses


def make_rule(
    name: str,
    *,
    half_life_s: float,
    half_life_events: float,
    action_weights: Mapping[str, float],
    interests: int = 4,
    threshold: float = 0.2,
) -> UpdateRule:
    """The update rule called ``name`` (``decayed`` or ``multi``)."""
    if name == "decayed":
        return DecayedEmbedding(
            half_life_s=half_life_s,
            half_life_events=half_life_events,
            action_weights=action_weights,
        )
    if name == "multi":
        return MultiInterest(
            interests=interests,
            threshold=threshold,
            half_life_s=half_life_s,
            half_life_events=half_life_events,
            action_weights=action_weights,
        )
    raise ValueError(f"unknown update rule {name!r} (known: decayed, multi)")
