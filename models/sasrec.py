"""SASRec: a causal self-attention next-item model over each user's (item, action) sequence.

It is the evaluation's strongest "what a user would pick instead" baseline and the starting
point of a sequence-aware teacher, so it is trained the way strong published re-runs train
it: full-softmax cross-entropy over the whole catalog at every position (not BCE with one
sampled negative, which under-trains it badly), Adam, and early stopping on a validation
split taken from the *end* of the training data (by time, like the prequential replay).

Inputs are left-padded windows of the last ``seq_len`` events: item rows ``1..n_items``
(0 = padding) and action codes (0 = padding, 1 = click, 2 = save). The item table is tied
between input and output (the score of item ``i`` is ``h · E[i]``). Torch lives here only;
the run-time side (:mod:`streamrec.models.sasrec_scorer`) needs onnxruntime and numpy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from streamrec.models.sasrec_scorer import CLICK, PAD, SAVE, left_pad, ranks_of_targets

Progress = Callable[[int], None]  # advance by this many epochs


@dataclass(frozen=True)
class SasrecConfig:
    """Sizes and optimisation of one SASRec fit (see ``Settings.train_sasrec_*``)."""

    seq_len: int = 100
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    lr: float = 1e-3
    batch: int = 128
    max_epochs: int = 200
    patience: int = 5
    valid_events: int = 4000
    max_seconds: float = 0.0  # > 0: no new epoch once this much time has passed
    seed: int = 0


@dataclass
class FitResult:
    """The kept (best validation NDCG@10) model and how the fit went."""

    model: Sasrec
    best_epoch: int
    curve: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    seconds: float = 0.0


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: masked self-attention, then a position-wise FFN."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(dim, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, length, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split(q), split(k), split(v)
        att = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads) + bias  # [B, H, L, L]
        att = self.drop(torch.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, length, dim)
        x = x + self.drop(self.out(y))
        return x + self.drop(self.ffn(self.norm2(x)))


class Sasrec(nn.Module):
    """Hidden states ``[B, L, d]`` for left-padded ``items`` / ``actions`` ``[B, L]``."""

    def __init__(self, n_items: int, config: SasrecConfig) -> None:
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"dim {config.dim} is not a multiple of heads {config.heads}")
        self.n_items = n_items
        self.seq_len = config.seq_len
        self.items = nn.Embedding(n_items + 1, config.dim, padding_idx=PAD)
        self.actions = nn.Embedding(3, config.dim, padding_idx=PAD)
        self.positions = nn.Embedding(config.seq_len, config.dim)
        self.blocks = nn.ModuleList(
            _Block(config.dim, config.heads, config.dropout) for _ in range(config.blocks)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.items.weight, std=config.dim**-0.5)
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        length = items.shape[1]
        pos = torch.arange(length, device=items.device) + (self.seq_len - length)
        x = self.items(items) * math.sqrt(self.items.embedding_dim)
        x = self.drop(x + self.actions(actions) + self.positions(pos))
        valid = items != PAD
        x = x * valid.unsqueeze(-1)
        # Position t sees keys <= t that are real events; a padding position sees only
        # itself (so no softmax row is empty). Nothing after t can reach t's output.
        idx = torch.arange(length, device=items.device)
        causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # [query, key]
        itself = idx.unsqueeze(0) == idx.unsqueeze(1)
        allowed = causal & (valid.unsqueeze(1) | itself)  # [B, L(query), L(key)]
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=items.device)
        bias = bias.masked_fill(~allowed, -1e9).unsqueeze(1)
        for block in self.blocks:
            x = block(x, bias) * valid.unsqueeze(-1)
        return self.norm(x)

    def item_table(self) -> torch.Tensor:
        """``[n_items, d]``: the output embedding of item rows ``1..n_items``."""
        return self.items.weight[1:]


class LastScores(nn.Module):
    """What the ONNX file computes: scores over the whole catalog after the last position."""

    def __init__(self, model: Sasrec) -> None:
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.model(items, actions)[:, -1] @ self.model.item_table().T


def training_windows(
    items: Sequence[np.ndarray], actions: Sequence[np.ndarray], ends: Sequence[int], seq_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping windows of each user's first ``ends[u]`` events, cut from the end.

    Returns left-padded ``inputs``, ``actions`` and ``targets`` ``[W, seq_len]``: position t
    of a window predicts the event after it (target 0 = nothing to learn there).
    """
    rows_i, rows_a, rows_t = [], [], []
    for seq, act, end in zip(items, actions, ends, strict=True):
        stop = int(end)
        while stop >= 2:
            start = max(0, stop - 1 - seq_len)
            rows_i.append(left_pad(seq[start : stop - 1], seq_len))
            rows_a.append(left_pad(act[start : stop - 1], seq_len))
            rows_t.append(left_pad(seq[start + 1 : stop], seq_len))
            stop = start + 1
    if not rows_i:
        raise ValueError("no user has two events before the validation cut: nothing to learn")
    return np.stack(rows_i), np.stack(rows_a), np.stack(rows_t)


@dataclass(frozen=True)
class Validation:
    """Sampled validation events: the input window before each and its target row."""

    items: np.ndarray  # [V, L]
    actions: np.ndarray  # [V, L]
    targets: np.ndarray  # [V] item rows
    seen: list[np.ndarray]  # per event: item rows the user acted on before it

    @classmethod
    def sample(
        cls,
        items: Sequence[np.ndarray],
        actions: Sequence[np.ndarray],
        ends: Sequence[int],
        config: SasrecConfig,
    ) -> Validation:
        """Up to ``config.valid_events`` events at or after each user's ``ends[u]`` (and not
        the user's first), each with the user's whole history before it as input."""
        where = [(u, t) for u, end in enumerate(ends) for t in range(max(1, end), len(items[u]))]
        rng = np.random.default_rng(config.seed)
        if len(where) > config.valid_events:
            pick = np.sort(rng.choice(len(where), config.valid_events, replace=False))
            where = [where[p] for p in pick]
        if not where:
            raise ValueError("no validation events (every user's events end before the cut)")
        return cls(
            np.stack([left_pad(items[u][:t], config.seq_len) for u, t in where]),
            np.stack([left_pad(actions[u][:t], config.seq_len) for u, t in where]),
            np.asarray([items[u][t] for u, t in where], dtype=np.int64),
            [items[u][:t] for u, t in where],
        )

    def metrics(self, model: Sasrec, batch: int = 512) -> dict[str, float]:
        """HR@10 / NDCG@10 over the whole catalog minus each user's seen items."""
        scores = predict_last(model, self.items, self.actions, batch)
        ranks = ranks_of_targets(scores, self.targets, self.seen)
        hit = ranks < 10
        return {
            "hr@10": float(hit.mean()),
            "ndcg@10": float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean()),
        }


def predict_last(
    model: Sasrec, items: np.ndarray, actions: np.ndarray, batch: int = 512
) -> np.ndarray:
    """``[n, n_items]`` float32 scores after each window's last position (eval mode)."""
    model.eval()
    head = LastScores(model)
    out = []
    with torch.inference_mode():
        for a in range(0, len(items), batch):
            out.append(
                head(
                    torch.from_numpy(items[a : a + batch]), torch.from_numpy(actions[a : a + batch])
                ).numpy()
            )
    return np.concatenate(out).astype(np.float32, copy=False)


def fit_sasrec(
    items: Sequence[np.ndarray],
    actions: Sequence[np.ndarray],
    valid_from: Sequence[int],
    n_items: int,
    config: SasrecConfig,
    advance: Progress | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train on each user's events before ``valid_from[u]``; keep the epoch of best
    validation NDCG@10 over the events from there on; stop after ``patience`` epochs
    without a better one, or after the epoch that ends past ``max_seconds`` (a budget for
    a shared machine: the kept epoch then depends on its speed). ``items`` are rows
    ``1..n_items``; ``actions`` codes 1/2.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    inputs, acts, targets = training_windows(items, actions, valid_from, config.seq_len)
    valid = Validation.sample(items, actions, valid_from, config)
    model = Sasrec(n_items, config)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    curve: list[dict[str, float]] = []
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        order = rng.permutation(len(inputs))
        total, count = 0.0, 0
        for a in range(0, len(order), config.batch):
            rows = order[a : a + config.batch]
            loss = _loss(model, inputs[rows], acts[rows], targets[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(rows)
            count += len(rows)
        point = {"epoch": float(epoch), "loss": total / count, **valid.metrics(model)}
        point["seconds"] = round(time.perf_counter() - started, 1)
        curve.append(point)
        if log is not None:
            log(point)
        if advance is not None:
            advance(1)
        if point["ndcg@10"] > best[0]:
            best = (point["ndcg@10"], epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= config.patience:
            break
        if config.max_seconds > 0 and time.perf_counter() - started >= config.max_seconds:
            break
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(model, best[1], curve, time.perf_counter() - started)


def _loss(
    model: Sasrec, items: np.ndarray, actions: np.ndarray, targets: np.ndarray
) -> torch.Tensor:
    """Full-softmax cross-entropy over the catalog at every position with a target."""
    hidden = model(torch.from_numpy(items), torch.from_numpy(actions))
    target = torch.from_numpy(targets)
    keep = target != PAD
    logits = hidden[keep] @ model.item_table().T
    return nn.functional.cross_entropy(logits, target[keep] - 1)


def action_code(action: str) -> int:
    """The input code of an action: saves apart, every other action a click."""
    return SAVE if action == "save" else CLICK
