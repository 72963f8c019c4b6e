"""The Faust app built from Settings: configuration, codec, what it registers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from faust.serializers import codecs

from streamrec.config import Settings
from streamrec.streams.app import (
    PartitionMismatch,
    changelog_topics,
    create_app,
    faust_settings,
    runtime_of,
)
from streamrec.streams.codec import MSGPACK
from streamrec.streams.topics import admin_client, delete_topics, describe_topics


def test_faust_settings_follow_the_streamrec_settings(tmp_path: Path):
    s = Settings(
        kafka_bootstrap="k1:9092,k2:9092",
        partitions=6,
        worker_app_id="svc",
        worker_web_port=7001,
        worker_web_host="node-3",
        worker_data_dir=tmp_path,
        worker_standby_replicas=2,
        worker_session_timeout_s=30,
        worker_heartbeat_interval_s=2,
    )
    conf = faust_settings(s)
    assert conf["broker"] == ["kafka://k1:9092", "kafka://k2:9092"]
    assert conf["topic_partitions"] == 6
    assert conf["table_standby_replicas"] == 2
    assert conf["canonical_url"] == "http://node-3:7001"  # how other workers route here
    assert conf["datadir"] == str(tmp_path / "svc-7001")
    assert conf["broker_heartbeat_interval"] < conf["broker_session_timeout"]


def test_the_app_has_the_agent_tables_and_views(tmp_path: Path):
    app = create_app(Settings(worker_data_dir=tmp_path, worker_app_id="reg"))
    rt = runtime_of(app)
    assert set(app.agents) == {"personalize"}
    assert {t.name for t in app.tables.values()} == {"user_state", "recs"}
    # What the app creates as it first starts (StreamrecApp.on_first_start).
    assert sorted(changelog_topics(app)) == ["reg-recs-changelog", "reg-user_state-changelog"]
    # Raw keys: table_route hashes exactly the bytes the events producers hash.
    assert rt.recs.changelog_topic.prepare_key("42", None)[0] == b"42"
    assert {"/healthz", "/readyz", "/metrics", "/events", "/recommendations/{user_id}"} <= set(
        app.web.views
    )


def test_msgpack_codec_is_registered():
    codec = codecs.get_codec(MSGPACK)
    value = {"items": ["a", "b"], "scores": [0.5, 0.25], "n": 3}
    assert codec.loads(codec.dumps(value)) == value


def test_table_changelogs_decode_what_the_tables_write(tmp_path: Path):
    """Recovery reads the changelog through its topic: it must use the tables' msgpack
    codec, or a restarted worker drops every record and never becomes ready."""
    app = create_app(Settings(worker_data_dir=tmp_path, worker_app_id="codec"))
    for table in app.tables.values():
        topic = table.changelog_topic
        assert topic.value_serializer == table.value_serializer == MSGPACK
        state = {"n_events": 3, "recent": [["i1", "save", 1000]]}
        key, value = topic.prepare_key(b"u1", None)[0], topic.prepare_value(state, None)[0]
        assert app.serializers.loads_value(None, value, serializer=topic.value_serializer) == (
            state
        )
        assert key == b"u1"


@pytest.mark.integration
def test_first_start_creates_the_changelogs_with_the_events_partitions(
    tmp_path: Path, kafka_settings: Settings, make_topic: Callable[..., str]
):
    """Both entry points (`streamrec worker`, `faust -A ... worker`) start the app, so the
    changelogs exist, co-partitioned with events, before Faust's tables look for them."""
    events = make_topic("app-events", partitions=3)
    app_id = f"first-start-{uuid.uuid4().hex[:8]}"
    settings = kafka_settings.model_copy(
        update={
            "worker_data_dir": tmp_path,
            "worker_app_id": app_id,
            "partitions": 3,
            "topic_events": events,
        }  # fmt: skip
    )
    app = create_app(settings)
    with admin_client(settings.kafka_connection) as admin:
        try:
            asyncio.run(app.on_first_start())
            found = describe_topics(admin, changelog_topics(app))
        finally:
            delete_topics(admin, changelog_topics(app))
    assert found == {f"{app_id}-user_state-changelog": 3, f"{app_id}-recs-changelog": 3}


@pytest.mark.integration
def test_first_start_refuses_events_with_another_partition_count(
    tmp_path: Path, kafka_settings: Settings, make_topic: Callable[..., str]
):
    events = make_topic("app-events", partitions=2)
    settings = kafka_settings.model_copy(
        update={
            "worker_data_dir": tmp_path,
            "partitions": 3,
            "topic_events": events,
            "worker_app_id": f"mismatch-{uuid.uuid4().hex[:8]}",
        }  # fmt: skip
    )
    app = create_app(settings)
    with pytest.raises(PartitionMismatch, match="2 partitions"):
        asyncio.run(app.on_first_start())
    with admin_client(settings.kafka_connection) as admin:
        assert describe_topics(admin, changelog_topics(app)) == {}


def test_faust_a_with_a_bad_setting_exits_with_one_line_naming_it():
    """``faust -A streamrec.streams.app`` builds the app from the environment: a bad value is
    one error line naming the variable, not a validation dump or a traceback."""
    env = {**os.environ, "STREAMREC_KAFKA_PORT": "70000"}
    done = subprocess.run(
        [sys.executable, "-c", "from streamrec.streams import app; app.app"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: STREAMREC_KAFKA_PORT=70000: Input should be less than or equal to 65534"
    ]
