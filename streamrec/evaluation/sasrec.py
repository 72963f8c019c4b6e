"""The SASRec baseline: the trained sequence model served with each user's live history.

``streamrec train`` trains SASRec once on the training part (see
:mod:`streamrec.training.sasrec`); here it is only loaded and never learns online. After a
user's event the list is the model's ranking of the whole catalog, minus the items the user
has acted on, given the user's last ``seq_len`` events up to and including that one — the
same history prefix every baseline reads, so the list scored at event *e* depends only on
events before *e*. Users never seen, or whose history holds no item the model knows, get
the all-time popular list (counts as of the batch start, like the ``popular`` baseline).
ONNX Runtime runs on one compute thread, one call per group of wanted events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamrec.evaluation.baselines import Popularity
from streamrec.evaluation.prequential import Batch, History, Vocab
from streamrec.models.sasrec_scorer import CLICK, SAVE, SasrecFileError, SasrecScorer, left_pad
from streamrec.streams.core.artifacts import Artifacts

NAME = "sasrec"
CALL_ROWS = 256  # users per ONNX call (the measured batch; fewer per call when fewer wanted)


class SasrecBaseline(Popularity):
    """Next-item SASRec over the user's live history; popular items for cold users."""

    name = NAME

    def __init__(self, history: History, items: Vocab, k: int, scorer: SasrecScorer) -> None:
        super().__init__(history, len(items), k)
        self.scorer = scorer
        # evaluation item index -> model row (0: unknown to the model) and back
        self.row_of = np.zeros(len(items), dtype=np.int64)
        self.index_of = np.full(len(scorer.item_ids), -1, dtype=np.int64)
        for col, item_id in enumerate(scorer.item_ids):
            index = items.index.get(item_id)
            if index is not None:
                self.row_of[index] = col + 1
                self.index_of[col] = index
        self.servable = self.index_of >= 0  # model items the replay can show
        self.actions: dict[int, list[int]] = {}

    def process(self, batch: Batch, want: np.ndarray) -> list[np.ndarray | None]:
        """Record the batch's actions (the history holds items only), then as a baseline."""
        for user, save in zip(batch.users.tolist(), batch.saves.tolist(), strict=True):
            self.actions.setdefault(user, []).append(SAVE if save else CLICK)
        return super().process(batch, want)

    def recommend(self, users: list[int], lengths: list[int]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(users)
        windows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for j, (user, n) in enumerate(zip(users, lengths, strict=True)):
            rows = self.row_of[np.asarray(self.history.items[user][:n], dtype=np.int64)]
            known = rows > 0
            if not known.any():
                out[j] = super().recommend([user], [n])[0]
                continue
            acts = np.asarray(self.actions[user][:n], dtype=np.int64)[known]
            windows.append((j, rows[known], acts, rows))
        for a in range(0, len(windows), CALL_ROWS):
            chunk = windows[a : a + CALL_ROWS]
            length = self.scorer.seq_len
            scores = self.scorer.scores(
                np.stack([left_pad(r, length) for _, r, _, _ in chunk]),
                np.stack([left_pad(x, length) for _, _, x, _ in chunk]),
            )
            for (j, _, _, rows), row_scores in zip(chunk, scores, strict=True):
                out[j] = self._top(row_scores, rows)
        return [o for o in out if o is not None]

    def _top(self, scores: np.ndarray, seen_rows: np.ndarray) -> np.ndarray:
        """The ``k`` best servable unseen items as evaluation indices, ties by index."""
        key = np.where(self.servable, scores, -np.inf)
        key[seen_rows[seen_rows > 0] - 1] = -np.inf
        k = min(self.k, int(np.isfinite(key).sum()))
        top = np.argpartition(-key, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        index = self.index_of[top]
        return index[np.lexsort((index, -key[top]))]


def sasrec_baseline(
    artifacts: Path, history: History, items: Vocab, k: int
) -> SasrecBaseline | str:
    """The baseline from the artifacts' trained SASRec, or why there is none."""
    try:
        layout = Artifacts(artifacts)
        scorer = SasrecScorer.load(layout.sasrec, layout.sasrec_meta, threads=1)
    except SasrecFileError as exc:
        return f"SASRec was not trained: {exc}"
    return SasrecBaseline(history, items, k, scorer)
