"""Topic settings for real clusters that need no broker (the integration tests check them
on the real one: tests/integration/test_topics.py)."""

from __future__ import annotations

from streamrec.config import Settings
from streamrec.streams.topics import replication_warning, topic_configs


def test_one_replica_on_a_cluster_of_several_brokers_is_warned_about() -> None:
    warning = replication_warning(brokers=3, replication_factor=1)
    assert warning is not None and "STREAMREC_REPLICATION_FACTOR is 1 on a cluster of 3" in warning
    assert replication_warning(brokers=1, replication_factor=1) is None
    assert replication_warning(brokers=3, replication_factor=3) is None


def test_min_insync_replicas_is_a_topic_config_only_when_set() -> None:
    assert topic_configs(Settings()) == {}
    settings = Settings(replication_factor=3, min_insync_replicas=2)
    assert topic_configs(settings) == {"min.insync.replicas": "2"}
