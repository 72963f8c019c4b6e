"""The training run's configuration, cut from ``Settings`` (``--quick`` shrinks it)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from streamrec.config import Settings
from streamrec.models.distill import FitConfig
from streamrec.models.embeddings import EmbeddingConfig
from streamrec.models.sasrec import SasrecConfig
from streamrec.models.student import StudentConfig
from streamrec.models.teacher import TeacherConfig

#: Candidates per event in the report's latency figures (the issue's yardstick).
LATENCY_CANDIDATES = 200


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one ``streamrec train`` run needs; see ``Settings.train_*``."""

    seed: int
    quick: bool
    holdout_frac: float
    examples: int
    eval_events: int
    label_horizon: int
    seq_len: int
    embedding: EmbeddingConfig
    teacher: TeacherConfig
    student: StudentConfig
    fit: FitConfig
    latency_runs: int
    gate_quality: float
    gate_speedup: float
    sasrec: SasrecConfig | None  # None: train_sasrec_enabled is off
    sasrec_threads: int
    rules: tuple[str, ...] = ()  # update rules trained besides the engine's (train_rules)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, quick: bool = False, seed: int | None = None
    ) -> TrainingConfig:
        """The run the settings describe; ``quick`` uses the ``train_quick_*`` sizes."""
        seed = settings.train_seed if seed is None else seed
        return cls(
            seed=seed,
            quick=quick,
            holdout_frac=settings.train_holdout_frac,
            examples=settings.train_quick_examples if quick else settings.train_examples,
            eval_events=settings.train_quick_eval_events if quick else settings.train_eval_events,
            label_horizon=settings.train_label_horizon,
            seq_len=settings.train_seq_len,
            embedding=EmbeddingConfig(
                dim=settings.train_embedding_dim,
                method=settings.train_embedding_method,
                seed=seed,
            ),
            teacher=TeacherConfig(
                hidden=settings.train_teacher_hidden, mlp=settings.train_teacher_mlp
            ),
            student=StudentConfig(hidden=settings.train_student_hidden),
            fit=FitConfig(
                epochs=settings.train_quick_epochs if quick else settings.train_epochs,
                batch_groups=settings.train_batch_groups,
                lr=settings.train_lr,
                train_candidates=settings.train_candidates,
                temperature=settings.train_temperature,
                soft_weight=settings.train_soft_weight,
                seed=seed,
            ),
            latency_runs=max(50, settings.train_latency_runs // 5)
            if quick
            else settings.train_latency_runs,
            gate_quality=settings.train_gate_quality,
            gate_speedup=settings.train_gate_speedup,
            sasrec=_sasrec(settings, quick, seed) if settings.train_sasrec_enabled else None,
            sasrec_threads=settings.train_sasrec_threads,
            rules=tuple(settings.train_rules),
        )


def _sasrec(settings: Settings, quick: bool, seed: int) -> SasrecConfig:
    """SASRec's sizes; ``quick``: a tiny one (16 wide, 1 block, 20 events) for a few epochs."""
    full = SasrecConfig(
        seq_len=settings.train_sasrec_seq_len,
        dim=settings.train_sasrec_dim,
        blocks=settings.train_sasrec_blocks,
        heads=settings.train_sasrec_heads,
        dropout=settings.train_sasrec_dropout,
        lr=settings.train_sasrec_lr,
        batch=settings.train_sasrec_batch,
        max_epochs=settings.train_sasrec_max_epochs,
        patience=settings.train_sasrec_patience,
        valid_events=settings.train_sasrec_valid_events,
        max_seconds=60.0 * settings.train_sasrec_max_minutes,
        seed=seed,
    )
    if not quick:
        return full
    return replace(
        full,
        seq_len=min(20, full.seq_len),
        dim=16,
        blocks=1,
        heads=1,
        max_epochs=settings.train_sasrec_quick_epochs,
        valid_events=min(1000, full.valid_events),
    )
