"""Training the teacher on hard labels and distilling the student from it.

Both learn listwise over each event's retrieved candidates (softmax cross-entropy against
the gains, so a save pulls harder than a click), on a random subset of each group's
candidates per step (every positive plus random hard negatives). The student's loss mixes
the teacher's soft ranking (KL at temperature ``T``) with the hard labels. The epoch with
the best validation NDCG@10 is kept, so extra epochs cannot make the kept model worse on
validation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from streamrec.models.metrics import ndcg_hr_at_k
from streamrec.models.ranking_data import RankingGroups
from streamrec.models.student import Student, StudentConfig
from streamrec.models.teacher import Teacher, TeacherConfig

Progress = Callable[[int], None]  # advance by this many steps


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings shared by teacher and student."""

    epochs: int = 5
    batch_groups: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-5
    train_candidates: int = 64
    temperature: float = 2.0
    soft_weight: float = 0.3  # student: weight of the teacher's soft targets vs hard labels
    seed: int = 0


def steps_per_fit(n_groups: int, config: FitConfig) -> int:
    """How many optimiser steps a fit takes (for progress bars)."""
    return config.epochs * -(-n_groups // config.batch_groups)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)


def listwise_loss(logits: torch.Tensor, gains: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy against the gain distribution, averaged over groups with a gain."""
    g = gains * mask
    total = g.sum(-1, keepdim=True)
    has = total.squeeze(-1) > 0
    if not bool(has.any()):
        return logits.sum() * 0.0
    target = g / total.clamp(min=1e-12)
    ce = -(target * _masked_log_softmax(logits, mask)).sum(-1)
    return ce[has].mean()


def soft_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher ‖ student) of the two rankings' softmax at ``temperature`` (Hinton et al.)."""
    t = torch.softmax(teacher.masked_fill(~mask, -1e9) / temperature, dim=-1)
    log_s = _masked_log_softmax(student / temperature, mask)
    log_t = torch.log(t.clamp(min=1e-12))
    return (t * (log_t - log_s) * mask).sum(-1).mean() * temperature**2


def _sample_slots(
    gains: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """[B, k] candidate slots per group: positives first, then random real candidates."""
    keys = rng.random(mask.shape)
    keys[gains > 0] = -1.0
    keys[~mask] = 2.0
    return np.argsort(keys, axis=1, kind="stable")[:, : min(k, mask.shape[1])]


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def _teacher_inputs(
    groups: RankingGroups, vectors: torch.Tensor, rows: np.ndarray, slots: np.ndarray | None
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Teacher inputs, gains and mask for groups ``rows`` (all slots when ``slots`` is None)."""
    feats, items = groups.features[rows], groups.items[rows]
    gains, mask = groups.gains[rows], groups.mask[rows]
    if slots is not None:
        feats = np.take_along_axis(feats, slots[:, :, None], axis=1)
        items, gains, mask = (np.take_along_axis(a, slots, axis=1) for a in (items, gains, mask))
    inputs = {
        "features": torch.from_numpy(np.ascontiguousarray(feats)),
        "items": vectors[torch.from_numpy(items)],
        "seq": vectors[torch.from_numpy(groups.seq[rows])],
        "seq_weight": torch.from_numpy(groups.seq_weight[rows]),
    }
    return inputs, torch.from_numpy(gains), torch.from_numpy(mask)


def teacher_scores(
    teacher: Teacher, groups: RankingGroups, vectors: np.ndarray, batch: int = 256
) -> np.ndarray:
    """Teacher logits ``[G, C]`` for every candidate of every group."""
    table = torch.from_numpy(vectors)
    teacher.eval()
    out = np.zeros(groups.mask.shape, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(groups), batch):
            rows = np.arange(start, min(start + batch, len(groups)))
            inputs, _, _ = _teacher_inputs(groups, table, rows, None)
            out[rows] = teacher(**inputs).numpy()
    return out


def student_scores(student: Student, groups: RankingGroups) -> np.ndarray:
    """Student scores ``[G, C]`` for every candidate of every group."""
    student.eval()
    with torch.no_grad():
        return student(torch.from_numpy(groups.features)).numpy()


def _validation_ndcg(scores: np.ndarray, groups: RankingGroups) -> float:
    return ndcg_hr_at_k(scores, groups.gains > 0, groups.mask)["ndcg@10"]


def _train(
    model: nn.Module,
    train: RankingGroups,
    valid: RankingGroups,
    config: FitConfig,
    step: Callable[[np.ndarray, np.ndarray], torch.Tensor],
    evaluate: Callable[[], float],
    progress: Progress | None,
) -> nn.Module:
    """The shared loop: AdamW, shuffled group batches, keep the best validation epoch."""
    rng = np.random.default_rng(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state = -1.0, copy.deepcopy(model.state_dict())
    for _ in range(config.epochs):
        model.train()
        for rows in _batches(len(train), config.batch_groups, rng):
            slots = _sample_slots(train.gains[rows], train.mask[rows], config.train_candidates, rng)
            loss = step(rows, slots)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if progress is not None:
                progress(1)
        score = evaluate() if len(valid) else 0.0
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model


def fit_teacher(
    train: RankingGroups,
    valid: RankingGroups,
    vectors: np.ndarray,
    model_config: TeacherConfig,
    config: FitConfig,
    progress: Progress | None = None,
) -> Teacher:
    """Train the teacher on hard labels (groups without a retrieved positive carry none)."""
    torch.manual_seed(config.seed)
    table = torch.from_numpy(vectors)
    teacher = Teacher(train.features.shape[2], vectors.shape[1], train.seq.shape[1], model_config)

    def step(rows: np.ndarray, slots: np.ndarray) -> torch.Tensor:
        inputs, gains, mask = _teacher_inputs(train, table, rows, slots)
        return listwise_loss(teacher(**inputs), gains, mask)

    def evaluate() -> float:
        return _validation_ndcg(teacher_scores(teacher, valid, vectors), valid)

    result = _train(teacher, train, valid, config, step, evaluate, progress)
    assert isinstance(result, Teacher)
    return result


def fit_student(
    train: RankingGroups,
    valid: RankingGroups,
    teacher_logits: np.ndarray,
    model_config: StudentConfig,
    config: FitConfig,
    progress: Progress | None = None,
) -> Student:
    """Distil: soft targets from ``teacher_logits`` ([G, C] over ``train``) plus hard labels."""
    torch.manual_seed(config.seed)
    student = Student(train.features.shape[2], model_config)
    student.set_normalisation(train.features[train.mask])
    soft = torch.from_numpy(teacher_logits.astype(np.float32))

    def step(rows: np.ndarray, slots: np.ndarray) -> torch.Tensor:
        feats = np.take_along_axis(train.features[rows], slots[:, :, None], axis=1)
        gains = torch.from_numpy(np.take_along_axis(train.gains[rows], slots, axis=1))
        mask = torch.from_numpy(np.take_along_axis(train.mask[rows], slots, axis=1))
        t = torch.gather(soft[torch.from_numpy(rows)], 1, torch.from_numpy(slots))
        logits = student(torch.from_numpy(np.ascontiguousarray(feats)))
        return config.soft_weight * soft_loss(logits, t, mask, config.temperature) + (
            1.0 - config.soft_weight
        ) * listwise_loss(logits, gains, mask)

    def evaluate() -> float:
        return _validation_ndcg(student_scores(student, valid), valid)

    result = _train(student, train, valid, config, step, evaluate, progress)
    assert isinstance(result, Student)
    return result
