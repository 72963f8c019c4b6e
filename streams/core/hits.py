"""Whether an event's item was in the list served before it, and where: the one per-event
definition behind both the live metrics (``streams/live.py``) and the offline HR@k/MRR.

Every ranking metric of a prequential replay is a function of one number per event, the
0-based rank of the event's item in the list the user had just before acting (:data:`MISS`
when absent): HR@k counts ``0 <= rank < k``, MRR averages ``1 / (rank + 1)``. The worker
and the evaluator both take the rank from here, so "live HR@10" and "offline HR@10" differ
only in which list they look at, never in how it is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Rank of an item that is not in the list.
MISS = -1


def rank_of(listing: Sequence[Any] | np.ndarray, item: Any, depth: int | None = None) -> int:
    """0-based rank of ``item`` among the first ``depth`` entries of ``listing`` (all of it
    when ``depth`` is None), or :data:`MISS`; a list of item ids or an integer-row array."""
    top = listing if depth is None else listing[:depth]
    if isinstance(top, np.ndarray):
        where = np.flatnonzero(top == item)
        return int(where[0]) if len(where) else MISS
    top = top if isinstance(top, list) else list(top)
    return top.index(item) if item in top else MISS  # most events miss: no exception


def is_hit(rank: int, k: int) -> bool:
    """HR@k's per-event gain: the item was among the first ``k``."""
    return 0 <= rank < k


def reciprocal_rank(rank: int) -> float:
    """MRR's per-event gain: ``1 / (rank + 1)``, 0 for a miss."""
    return 1.0 / (rank + 1) if rank >= 0 else 0.0
