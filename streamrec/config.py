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
    kafka_port: int = Field(9092, description="Port of the local broker started by `streamrec kafka start`.")
    kafka_version: str = Field(
        "4.1.1", description="Apache Kafka version the local broker is assembled from (Maven Central)."
    )
    cache_dir: Path = Field(
        DEFAULT_CACHE_DIR,
        description="Cache directory for the local Kafka distribution, downloaded datasets and wheels.",
    )
    kafka_start_timeout_s: float = Field(
        60.0, description="Seconds `kafka start` waits for the local broker to answer a metadata request."
    )

    # --- Topics ----------------------------------------------------------------------
    topic_events: str = Field("events", description="Topic of user click/save events (key = user_id).")
    topic_items: str = Field("items", description="Topic of catalog changes (item upserts and deletes).")
    topic_recommendations: str = Field(
        "recommendations", description="Topic the engine emits fresh recommendations to."
    )
    topic_dlq: str = Field("events.dlq", description="Dead-letter topic: bad records with a reason.")
    partitions: int = Field(8, ge=1, description="Partition count of the topics streamrec creates.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of the topics streamrec creates.")

    # --- Wire format -----------------------------------------------------------------
    max_event_bytes: int = Field(
        4096, ge=64, description="Largest accepted encoded event; bigger ones are rejected as oversize."
    )

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
