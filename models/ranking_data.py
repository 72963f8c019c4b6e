"""Ranking examples grouped the way the engine serves them: one group per event.

Each group holds the candidates the engine retrieved for one user just before an event,
their compact feature rows (exactly as served), the user's recent actions at that moment
(for the teacher's sequence attention) and each candidate's gain (what the user did next).
Candidates are retrieval's nearest neighbours of the user, so every negative is a hard one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RankingGroups:
    """``G`` groups of up to ``C`` candidates; padded slots have ``mask`` False."""

    features: np.ndarray  # [G, C, F] float32, the student's (and teacher's) feature rows
    items: np.ndarray  # [G, C] int64 item row in the vector table (0 where padded)
    mask: np.ndarray  # [G, C] bool, real candidate slots
    seq: np.ndarray  # [G, L] int64 item rows of the user's last actions, newest last
    seq_weight: np.ndarray  # [G, L] float32 action weight of each, 0 where padded
    gains: np.ndarray  # [G, C] float32 label: how strongly the user took it next (0 = not)

    def __post_init__(self) -> None:
        g, c = self.mask.shape
        shapes = {
            "features": (self.features.shape[:2], (g, c)),
            "items": (self.items.shape, (g, c)),
            "gains": (self.gains.shape, (g, c)),
            "seq_weight": (self.seq_weight.shape, self.seq.shape),
        }
        for name, (got, want) in shapes.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"ranking groups: {name} has shape {got}, expected {want}")
        if self.seq.shape[0] != g:
            raise ValueError(f"ranking groups: seq has {self.seq.shape[0]} groups, expected {g}")

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def subset(self, index: np.ndarray) -> RankingGroups:
        """The groups at ``index`` (an index array or boolean mask)."""
        return RankingGroups(
            features=self.features[index],
            items=self.items[index],
            mask=self.mask[index],
            seq=self.seq[index],
            seq_weight=self.seq_weight[index],
            gains=self.gains[index],
        )

    def has_positive(self) -> np.ndarray:
        """[G] bool: groups where some real candidate has a positive gain."""
        return np.any((self.gains > 0) & self.mask, axis=1)
