"""The engine core's own configuration, cut from the one ``Settings`` object.

The core takes this small frozen dataclass rather than ``Settings`` so tests, training and
evaluation can build variants (another rule, no decay, other bounds) with
``dataclasses.replace`` without going through the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from streamrec.config import Settings


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine core needs; see ``Settings.engine_*`` for what each field means."""

    k: int = 20
    candidates: int = 200
    rule: str = "decayed"
    half_life_s: float = 3 * 86400.0
    half_life_events: float = 3.0
    action_weights: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({"click": 1.0, "save": 2.0})
    )
    interests: int = 4
    interest_threshold: float = 0.2
    recent_size: int = 50
    seen_size: int = 1000
    applied_ids: int = 256
    feature_recent: int = 10
    popular_half_life_s: float = 86400.0
    popular_top: int = 1000
    popular_as_of: Literal["batch_end", "batch_start"] = "batch_end"
    popular_seed: bool = True
    cold_threshold: int = 1
    covis_weight: float = 0.0
    covis_candidates: int = 0
    covis_window: int = 3
    covis_recent: int = 10
    covis_recency: float = 0.7
    covis_neighbours: int = 64
    covis_half_life_s: float = 7_776_000.0
    covis_max_items: int = 1 << 21
    device: str = "auto"
    threads: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        """The engine configuration the settings describe."""
        return cls(
            k=settings.engine_k,
            candidates=settings.engine_candidates,
            rule=settings.engine_rule,
            half_life_s=settings.engine_half_life_s,
            half_life_events=settings.engine_half_life_events,
            action_weights=MappingProxyType(
                {"click": settings.engine_weight_click, "save": settings.engine_weight_save}
            ),
            interests=settings.engine_interests,
            interest_threshold=settings.engine_interest_threshold,
            recent_size=settings.engine_recent_size,
            seen_size=settings.engine_seen_size,
            applied_ids=settings.engine_applied_ids,
            feature_recent=settings.engine_feature_recent,
            popular_half_life_s=settings.engine_popular_half_life_s,
            popular_top=settings.engine_popular_top,
            popular_as_of=settings.engine_popular_as_of,
            popular_seed=settings.engine_popular_seed,
            cold_threshold=settings.engine_cold_threshold,
            covis_weight=settings.engine_covis_weight,
            covis_candidates=settings.engine_covis_candidates,
            covis_window=settings.engine_covis_window,
            covis_recent=settings.engine_covis_recent,
            covis_recency=settings.engine_covis_recency,
            covis_neighbours=settings.engine_covis_neighbours,
            covis_half_life_s=settings.engine_covis_half_life_s,
            covis_max_items=settings.engine_covis_max_items,
            device=settings.engine_device,
            threads=settings.engine_threads,
        )
