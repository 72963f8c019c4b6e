"""A/B variants: deterministic bucketing of users and one engine per variant.

**Bucketing.** A user's position is ``blake2b(salt, user_id)`` mapped to [0, 1): the same
on every worker, after every restart, in any process (no seed, no state). The
non-control variants each own a fixed lane of that interval, ``[i/n, (i+1)/n)`` for the
i-th of ``n``, and take its first ``share`` of it; the control gets every position no lane
claims. Growing a variant's share therefore moves users only from the control into it,
shrinking it only back to the control, and no other variant's users move at all (a plain
cumulative layout would shift every boundary after the changed one). The price: a
non-control share is at most ``1/n``. Adding or removing a variant re-lays the lanes:
that is a new experiment, so give it a new salt.

**Engines.** Every variant's engine is the worker's engine with the variant's engine
settings and reranker: they share the index (one replica, one set of catalog changes), the
recently-popular counts and the co-visitation statistics, so those global statistics still
count every user's events once. Each micro-batch is split by variant, each part processed
by its engine, and every recommendation says its ``variant``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.config import VariantSpec
from streamrec.streams.core.artifacts import RERANKER, Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.engine import BatchStats, Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.loader import covisitation, rule_of
from streamrec.streams.core.ranking import uses_covis
from streamrec.streams.core.state import UserState
from streamrec.streams.core.statistics import StatsDelta
from streamrec.streams.wire import Event, Recommendation

#: The one variant of a worker that declares none.
CONTROL = "control"
#: Engine settings every variant shares: they shape the global statistics (one copy for
#: all variants) or the process (device, threads), not one user's ranking.
SHARED_ENGINE_SETTINGS = frozenset(
    {
        "popular_half_life_s",
        "popular_top",
        "popular_as_of",
        "popular_seed",
        "covis_window",
        "covis_recent",
        "covis_recency",
        "covis_neighbours",
        "covis_half_life_s",
        "covis_max_items",
        "device",
        "threads",
    }
)
_SCALE = float(1 << 64)


class VariantError(ValueError):
    """``STREAMREC_VARIANTS`` cannot be used as declared; the message says why."""


@dataclass(frozen=True)
class Variant:
    """One variant: its share, engine overrides and reranker file (None: the worker's;
    empty: none, retrieval order)."""

    name: str
    share: float
    engine: Mapping[str, Any] = field(default_factory=dict)
    reranker: str | None = None


def position(salt: str, user_id: str) -> float:
    """The user's stable position in [0, 1) for experiment ``salt``."""
    digest = hashlib.blake2b(f"{salt}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


@dataclass(frozen=True)
class Experiment:
    """The declared variants, the control first, and the salt users are bucketed with."""

    variants: tuple[Variant, ...]
    salt: str

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @classmethod
    def single(cls, salt: str = "") -> Experiment:
        """Everyone in one variant, the control."""
        return cls((Variant(CONTROL, 1.0),), salt)

    @classmethod
    def from_specs(cls, specs: Sequence[VariantSpec], salt: str) -> Experiment:
        """Validate ``STREAMREC_VARIANTS``; raises :class:`VariantError` saying what is wrong."""
        if not specs:
            return cls.single(salt)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise VariantError(f"STREAMREC_VARIANTS: variant names repeat: {names}")
        controls = [s for s in specs if s.control]
        if len(controls) > 1:
            raise VariantError(f"STREAMREC_VARIANTS: more than one control: {controls}")
        total = math.fsum(s.share for s in specs)
        if abs(total - 1.0) > 1e-9:
            raise VariantError(f"STREAMREC_VARIANTS: shares sum to {total:g}, not 1")
        control = controls[0] if controls else specs[0]
        others = [s for s in specs if s is not control]
        for spec in others:
            if spec.share > 1 / len(others) + 1e-12:
                raise VariantError(
                    f"STREAMREC_VARIANTS: variant {spec.name!r} has share {spec.share:g}; with "
                    f"{len(others)} non-control variants each may have at most "
                    f"{1 / len(others):g} (one lane each)"
                )
        for spec in specs:
            _check_engine(spec)
        return cls(tuple(_variant(s) for s in (control, *others)), salt)

    def bucket(self, user_id: str) -> Variant:
        """The variant ``user_id`` is in."""
        others = self.variants[1:]
        if not others:
            return self.control
        lanes = position(self.salt, user_id) * len(others)
        lane = int(lanes)
        return others[lane] if lanes - lane < others[lane].share * len(others) else self.control


def _variant(spec: VariantSpec) -> Variant:
    return Variant(spec.name, spec.share, dict(spec.engine), spec.reranker)


def _check_engine(spec: VariantSpec) -> None:
    known = {f.name for f in dataclasses.fields(EngineConfig)}
    for name in spec.engine:
        if name not in known:
            raise VariantError(
                f"STREAMREC_VARIANTS: variant {spec.name!r}: unknown engine setting {name!r} "
                f"(known: {', '.join(sorted(known - SHARED_ENGINE_SETTINGS))})"
            )
        if name in SHARED_ENGINE_SETTINGS:
            raise VariantError(
                f"STREAMREC_VARIANTS: variant {spec.name!r}: {name!r} is shared by every "
                "variant (it shapes the global statistics or the process)"
            )


class VariantEngines:
    """One engine per variant over the worker's shared index and statistics."""

    def __init__(self, experiment: Experiment, engines: Mapping[str, Engine]) -> None:
        self.experiment = experiment
        self.engines = dict(engines)
        self.last_batch_stats: list[BatchStats] = []
        #: What the engines committed to the shared statistics and nobody took yet.
        self._committed: list[StatsDelta] = []

    @classmethod
    def build(
        cls, base: Engine, experiment: Experiment, artifacts: Path, reranker: str = RERANKER
    ) -> VariantEngines:
        """The variants' engines from the worker's engine ``base`` (loaded from
        ``artifacts``, where the variants' reranker files are too, each rule's in its
        ``Artifacts.for_rule`` folder); a variant without overrides is ``base`` itself. A
        variant that switches rule without naming a reranker gets the file ``base``'s came
        from (``reranker``: ``engine_reranker``) as trained for its rule. Raises
        FileNotFoundError for a missing reranker."""
        configs = {
            v.name: dataclasses.replace(base.config, **v.engine) for v in experiment.variants
        }
        scorers = {}
        for variant in experiment.variants:
            config, name = configs[variant.name], variant.reranker
            if name is None and config.rule != base.config.rule and base.scorer is not None:
                name = reranker
            # None: the base's reranker; empty: no reranker, retrieval order
            scorer = base.scorer if name is None else None
            if name:
                scorer = _reranker(artifacts, variant.name, name, config)
            scorers[variant.name] = scorer
        if base.covis is None and any(
            uses_covis(scorers[name], c.covis_weight) for name, c in configs.items()
        ):
            # Every engine must count into the one co-visitation, or a variant using it
            # would see only its own users' events. Unread, it adds nothing to ranks.
            base.keep_covis(
                covisitation(artifacts, base.config, len(base.index), base.popular.rows)
            )
        engines = {}
        for variant in experiment.variants:
            config, scorer = configs[variant.name], scorers[variant.name]
            if config == base.config and variant.reranker is None:
                engines[variant.name] = base
                continue
            engines[variant.name] = Engine(
                base.index,
                scorer,
                rule_of(config),
                base.popular,
                config,
                clock=base.clock,
                covis=base.covis,
            )
            # One commit point for all: it remembers which events it counted (dedupe).
            engines[variant.name].stats = base.stats
        return cls(experiment, engines)

    def process(
        self, events: Sequence[Event], states: MutableMapping[str, UserState]
    ) -> list[Recommendation]:
        """Each variant's events through its engine; one recommendation per event, in
        order, each with its ``variant``."""
        parts: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            parts.setdefault(self.experiment.bucket(event.user_id).name, []).append(i)
        out: list[Recommendation | None] = [None] * len(events)
        self.last_batch_stats = []
        for name, rows in parts.items():
            engine = self.engines[name]
            commits = engine.commits
            try:
                recs = engine.process([events[i] for i in rows], states)
            finally:  # committed, even if it failed after: counted here, so to be published
                if engine.commits != commits:
                    self._committed.append(engine.last_delta)
            self.last_batch_stats.append(engine.last_batch_stats)
            for i, rec in zip(rows, recs, strict=True):
                out[i] = dataclasses.replace(rec, variant=name)
        return [rec for rec in out if rec is not None]

    def take_deltas(self) -> list[StatsDelta]:
        """What the engines committed to the shared statistics since the last call, in
        order: the batch's deltas to publish — a batch that failed after its engine
        committed included, or other workers would never count events this one counts
        (and its stats checkpoints would wait for their acknowledgement for ever)."""
        taken, self._committed = self._committed, []
        return taken

    def stage_seconds(self) -> dict[str, float]:
        """Seconds per engine stage of the last batch, summed over its variants."""
        total: dict[str, float] = {}
        for stats in self.last_batch_stats:
            for stage, seconds in stats.stages().items():
                total[stage] = total.get(stage, 0.0) + seconds
        return total


def _reranker(artifacts: Path, variant: str, name: str, config: EngineConfig) -> Any:
    """The ``name`` reranker trained for ``config``'s rule, for the variant so named."""
    from streamrec.models.scorer import Scorer  # onnxruntime only when a model is there

    path = Artifacts(artifacts).for_rule(config.rule).model(name)
    assert path is not None
    if not path.is_file():
        raise FileNotFoundError(f"variant {variant!r}: reranker {path} is not there")
    return Scorer.load(path, FEATURE_NAMES, device=config.device, threads=config.threads)
