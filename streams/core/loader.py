"""Build a ready :class:`~streamrec.streams.core.engine.Engine` from an artifacts directory.

``streamrec train`` writes the directory (``index/``, ``reranker.onnx``, ``manifest.json``…);
the worker, the evaluator and the demo all load it through :func:`load_engine`, so they
run the same index, reranker and update rule for the same settings. A reranker whose
training run missed its gate (``manifest.json``'s ``gate``), or that was trained for
another update rule than the engine's (its ``engine.rule``), is refused unless
``allow_failed_model`` says otherwise (:func:`check_gate`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import faiss

from streamrec.config import Settings
from streamrec.index import load_index
from streamrec.streams.core.artifacts import Artifacts
from streamrec.streams.core.config import EngineConfig
from streamrec.streams.core.covis import CoVisitation
from streamrec.streams.core.engine import Engine
from streamrec.streams.core.features import FEATURE_NAMES
from streamrec.streams.core.popular import Popular
from streamrec.streams.core.ranking import uses_covis
from streamrec.streams.core.rows import ItemRows
from streamrec.streams.core.rules import UpdateRule, make_rule

log = logging.getLogger(__name__)


def rule_of(config: EngineConfig) -> UpdateRule:
    """The update rule the configuration names, with its decay and weights."""
    return make_rule(
        config.rule,
        half_life_s=config.half_life_s,
        half_life_events=config.half_life_events,
        action_weights=config.action_weights,
        interests=config.interests,
        threshold=config.interest_threshold,
    )


class FailedModelError(RuntimeError):
    """The artifacts' model missed its training gate, or was trained for another update rule,
    and serving it was not allowed."""


def _manifest(artifacts: Path) -> dict[str, Any] | str | None:
    """The artifacts' manifest; a one-line reason when it cannot be read; None when there
    is none (artifacts assembled by hand)."""
    manifest = Artifacts(artifacts).manifest
    if not manifest.is_file():
        return None
    try:
        written = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"{manifest}: unreadable ({exc}), so whether its model passed the gate is unknown"
    return written if isinstance(written, dict) else {}


def gate_failure(artifacts: Path) -> str | None:
    """Why the artifacts' model must not be served, in one line naming the failed gate
    checks; None when it passed or nothing says (no manifest, or one without a ``gate``:
    artifacts assembled by hand or by an older `streamrec train`)."""
    return _gate_reason(artifacts, _manifest(artifacts))


def _gate_reason(
    artifacts: Path, written: dict[str, Any] | str | None, rule: str | None = None
) -> str | None:
    """:func:`gate_failure` of an already-read manifest; with ``rule``, of the rerankers
    trained for that extra rule (``rules`` in the manifest; None when it has none)."""
    if written is None or isinstance(written, str):
        return written
    entry = _extra_rules(written).get(rule, {}) if rule else written
    gate = entry.get("gate")
    if not isinstance(gate, dict) or gate.get("passed", True):
        return None
    failed = "; ".join(f"{c.get('name')} ({c.get('detail')})" for c in gate.get("failed", []))
    version = entry.get("model_version", written.get("model_version", "?"))
    which = f" for the {rule!r} rule" if rule else ""
    return (
        f"{artifacts}: model {version}{which} failed its training gate: "
        f"{failed or 'no checks named'}"
    )


def _extra_rules(written: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's ``rules``: the update rules besides ``engine.rule`` that rerankers
    were trained for (``rules/<rule>/``), each with its gate."""
    rules = written.get("rules")
    if not isinstance(rules, dict):
        return {}
    return {k: v for k, v in rules.items() if isinstance(v, dict)}


def _trained_rule(written: dict[str, Any] | str | None) -> str | None:
    """The update rule whose replay the rerankers of a read manifest learned from (its
    ``engine.rule``); None when it does not say."""
    engine = written.get("engine") if isinstance(written, dict) else None
    rule = engine.get("rule") if isinstance(engine, dict) else None
    return rule if isinstance(rule, str) else None


def rule_mismatch(artifacts: Path, rule: str) -> str | None:
    """Why the artifacts' rerankers must not rank for ``rule`` (one line), or None. They
    learned from another rule's candidates and features (``query_weight`` and
    ``user_interests`` never vary under ``decayed``): on MovieLens-100k the decayed
    student reranking the multi rule's lists fell to HR@10 0.067, below the multi rule's
    own retrieval order (0.114)."""
    return _rule_reason(artifacts, _manifest(artifacts), rule)


def _rule_reason(artifacts: Path, written: dict[str, Any] | str | None, rule: str) -> str | None:
    """:func:`rule_mismatch` of an already-read manifest: None when the rerankers of
    ``engine.rule`` are for ``rule`` or ``rules/<rule>/`` holds that rule's own."""
    trained = _trained_rule(written)
    if trained is None or trained == rule:
        return None
    if isinstance(written, dict) and rule in _extra_rules(written):
        return None  # its own rerankers (their gate is check_gate's)
    return (
        f"{artifacts}: its rerankers were trained for the {trained!r} update rule, not "
        f"{rule!r} (retrain with STREAMREC_ENGINE_RULE={rule}, or add it to "
        "STREAMREC_TRAIN_RULES)"
    )


#: Artifacts whose failed model this process has already warned about (see check_gate).
_warned: set[Path] = set()


def check_gate(
    artifacts: Path,
    allow: bool,
    warn: Callable[[str], None] = log.warning,
    rules: Iterable[str] = (),
) -> None:
    """Refuse a model that missed its gate or was trained for another update rule than
    one of the ``rules`` it is to serve with (:class:`FailedModelError`, one line), or with
    ``allow`` warn in one line and go on. Callers check before loading a reranker. The
    warning comes once per process and directory: the worker checks as it starts (``warn``
    its console's) and loads its engines later."""
    written = _manifest(artifacts)  # read once for every check
    served = list(dict.fromkeys(rules))
    trained = _trained_rule(written)
    extra = _extra_rules(written) if isinstance(written, dict) else {}
    # the directory's own rerankers' gate, unless every served rule has rerankers of its own
    own = not served or trained is None or any(r == trained or r not in extra for r in served)
    reasons = [
        _gate_reason(artifacts, written) if own else None,
        *(_rule_reason(artifacts, written, r) for r in served),
        *(_gate_reason(artifacts, written, r) for r in served if r in extra and r != trained),
    ]
    failure = "; ".join(r for r in reasons if r is not None)
    if not failure:
        return
    if not allow:
        raise FailedModelError(
            f"{failure}; retrain, or serve it anyway with STREAMREC_ALLOW_FAILED_MODEL=true "
            "(worker: --allow-failed-model)"
        )
    if artifacts.resolve() not in _warned:
        _warned.add(artifacts.resolve())
        warn(f"{failure}; serving it anyway (allow_failed_model)")


def covis_params(config: EngineConfig) -> dict[str, Any]:
    """The :class:`CoVisitation` constructor arguments the configuration names (the one
    place, so training, the loader and the variants build the same table)."""
    return {
        "window": config.covis_window,
        "recent": config.covis_recent,
        "recency": config.covis_recency,
        "neighbours": config.covis_neighbours,
        "half_life_s": config.covis_half_life_s,
        "max_items": config.covis_max_items,
    }


def covisitation(
    artifacts: Path, config: EngineConfig, catalog: int, rows: ItemRows | None = None
) -> CoVisitation:
    """Co-visitation statistics: from ``ARTIFACTS/covis.npz`` when it is there and seeding is
    on (``popular_seed``, which covers both global statistics), else empty; at ``rows``
    (pass the engine's popularity's, so a batch looks its candidates up once)."""
    if catalog > config.covis_max_items:
        log.warning(
            "co-visitation counts at most %d items but the catalog has %d: items first seen "
            "beyond that get no co-visitation (raise engine_covis_max_items, %d B per item)",
            config.covis_max_items,
            catalog,
            8 * config.covis_neighbours + 16,
        )
    params = covis_params(config)
    seed = Artifacts(artifacts).covis
    if config.popular_seed and seed.is_file():
        return CoVisitation.load(seed, rows=rows, **params)
    return CoVisitation(rows=rows, **params)


def load_engine(
    artifacts_dir: Path | str, settings: Settings, *, config: EngineConfig | None = None
) -> Engine:
    """Index from ``ARTIFACTS/index``, the reranker ``ARTIFACTS/<engine_reranker>`` when
    present (its feature spec must be exactly :data:`FEATURE_NAMES`; a model that missed its
    gate only with ``allow_failed_model``: :func:`check_gate`), the rule and bounds
    from ``config`` (default: the settings'). Compute is pinned to ``engine_threads``.
    The index's search-time knobs (``index_ivf_nprobe``, ``index_hnsw_ef_search``,
    ``index_blas_threshold``) are the settings', so a worker can trade recall for speed
    without a rebuild. Popularity starts from ``ARTIFACTS/popular.msgpack`` when it is there and
    ``config.popular_seed`` is on, else empty; co-visitation likewise from ``covis.npz``,
    kept when ``config.covis_weight > 0`` or the reranker reads the ``covis`` feature
    (:func:`~.ranking.uses_covis`).
    """
    artifacts = Path(artifacts_dir)
    layout = Artifacts(artifacts)
    config = config or EngineConfig.from_settings(settings)
    faiss.omp_set_num_threads(config.threads)
    index_dir = layout.index
    if not index_dir.is_dir():
        raise FileNotFoundError(f"{artifacts}: no index/ directory (run `streamrec train` first)")
    index = load_index(  # search-time knobs follow the settings, not the build's
        index_dir,
        device=config.device,
        ivf_nprobe=settings.index_ivf_nprobe,
        hnsw_ef_search=settings.index_hnsw_ef_search,
        blas_threshold=settings.index_blas_threshold,
    )
    scorer = None
    reranker = layout.for_rule(config.rule).model(settings.engine_reranker)
    if reranker is not None and reranker.is_file():
        check_gate(artifacts, settings.allow_failed_model, rules=[config.rule])
        from streamrec.models.scorer import Scorer  # onnxruntime only when a model is there

        scorer = Scorer.load(reranker, FEATURE_NAMES, device=config.device, threads=config.threads)
    seed = layout.popular
    if config.popular_seed and seed.is_file():
        popular = Popular.load(
            seed, half_life_s=config.popular_half_life_s, top_n=config.popular_top
        )
    else:
        popular = Popular(config.popular_half_life_s, config.popular_top)
    keep = uses_covis(scorer, config.covis_weight)  # the weight's ranker or the feature
    covis = covisitation(artifacts, config, len(index), popular.rows) if keep else None
    return Engine(index, scorer, rule_of(config), popular, config, covis=covis)
