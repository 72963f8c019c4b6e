"""The one settings object.

Every tunable of streamrec lives here, typed and documented, read once from the
environment (prefix ``STREAMREC_``) or a ``.env`` file, and then *passed in* to the code
that needs it. Nothing below the CLI reads the environment itself, so tests and embedding
applications build a ``Settings(...)`` and hand it over.

``streamrec settings`` prints the table in the README from these fields, so a field's
``description`` is its documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "streamrec"


class Settings(BaseSettings):
    """All of streamrec's configuration; environment variables use the ``STREAMREC_`` prefix."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None,
        description="Bootstrap servers of an existing Kafka cluster (host:port,...). When set, "
        "streamrec starts no broker of its own and uses this cluster everywhere.",
    )
    kafka_port: int = Field(
        9092,
        description="Port of the local broker started by `streamrec kafka start`; its KRaft "
        "controller listens on the port after it.",
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
        1, ge=1, description="Replication factor of the topics streamrec creates."
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
    engine_rule: Literal["decayed", "multi"] = Field(
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
        "co-visitation, when on, from ARTIFACTS/covis.npz) when there, so cold users get items "
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
        "recent items (scaled to [0, 1] per user); 0 keeps no co-visitation statistics.",
    )
    engine_covis_window: int = Field(
        3,
        ge=1,
        description="Co-visitation: a user's previous actions an action pairs with (ML-1M "
        "validation HR@10 at weight 4: 0.263 with 20, 0.295 with 5, 0.296 with 3).",
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
    engine_covis_max_items: int = Field(
        8192,
        ge=1,
        description="Co-visitation: items counted (a dense float32 matrix, 256 MB at 8192); "
        "items beyond are not counted.",
    )
    engine_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where index and reranker run: `auto` picks a GPU when one is present."
    )
    engine_threads: int = Field(
        1, ge=1, description="Compute threads of index and reranker (scale with processes instead)."
    )
    engine_reranker: str = Field(
        "reranker.onnx",
        description="Reranker file inside the artifacts directory (e.g. `reranker.int8.onnx`); "
        "empty, or a file that is not there, serves in retrieval order.",
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
        5.0,
        gt=0,
        description="Longest wait (ms) for a micro-batch to fill before it is processed anyway.",
    )
    worker_web_host: str = Field(
        "127.0.0.1",
        description="Host name other workers use to reach this one's HTTP port (routing of "
        "GET /recommendations to the key's owner).",
    )
    worker_web_bind: str = Field("0.0.0.0", description="Interface the worker's HTTP server binds.")
    worker_web_port: int = Field(6066, ge=1, le=65535, description="The worker's HTTP port.")
    worker_auth_token: str | None = Field(
        None,
        description="When set, every HTTP endpoint except /healthz and /readyz needs "
        "`Authorization: Bearer <token>`.",
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
        5000,
        ge=1,
        description="`windowed` baseline: most popular over the last this many events (all users).",
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
        4.0,
        ge=0,
        description="`covis` engine variant: the engine's co-visitation weight it runs with "
        "when `engine_covis_weight` (the serving setting) is 0.",
    )

    # --- Training (streamrec.training, models/; owner: models engineer) --------------
    train_seed: int = Field(0, description="Seed of everything `streamrec train` draws at random.")
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
        2500, ge=100, description="`--quick`: ranking groups sampled instead of `train_examples`."
    )
    train_quick_eval_events: int = Field(
        1000, ge=100, description="`--quick`: held-out events instead of `train_eval_events`."
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
    train_student_hidden: tuple[int, ...] = Field(
        (64, 32), description="Student MLP hidden layer widths (JSON list in the environment)."
    )
    train_temperature: float = Field(2.0, gt=0, description="Distillation temperature.")
    train_soft_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Weight of the teacher's soft targets in the student's loss (rest: labels).",
    )
    train_latency_runs: int = Field(
        500, ge=10, description="Timed calls per model for the report's p50/p99 latency."
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
        description="Gate: the teacher's p99 latency (ONNX, 200 candidates) over the student's "
        "must be at least this.",
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
    def uses_local_kafka(self) -> bool:
        """True when streamrec manages its own local broker (no external cluster configured)."""
        return self.kafka_bootstrap is None

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics ``streamrec topics create`` creates."""
        return (self.topic_events, self.topic_items, self.topic_recommendations, self.topic_dlq)
