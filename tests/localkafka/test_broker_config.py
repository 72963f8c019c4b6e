"""The local broker's rendered config: PLAINTEXT exactly as before, a SASL_SSL listener
with its key store and JAAS users when asked for (the broker itself runs in
tests/integration/test_security.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from streamrec.config import Settings
from streamrec.localkafka import LocalKafka, LocalKafkaError
from streamrec.localkafka.security import BrokerTls, SaslUser


def rendered(tmp_path: Path, **fields: object) -> str:
    broker = LocalKafka(Settings(cache_dir=tmp_path).model_copy(update=fields))
    tls = BrokerTls(tmp_path / "broker.p12", "kspw", tmp_path / "ca.pem")
    uses_ssl, uses_sasl = broker.connection.uses_ssl, broker.connection.uses_sasl
    broker._write_config(
        tls if uses_ssl else None, SaslUser.of(broker.settings) if uses_sasl else None
    )
    return broker.config_file.read_text()


def test_plaintext_has_one_plaintext_listener_and_no_security_lines(tmp_path: Path) -> None:
    text = rendered(tmp_path, kafka_port=19092)
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT" in text
    assert "ssl." not in text and "sasl" not in text
    assert text.endswith("num.recovery.threads.per.data.dir=1\n")


def test_sasl_ssl_has_the_key_store_and_jaas_users_and_is_private(tmp_path: Path) -> None:
    text = rendered(
        tmp_path, kafka_port=19092, kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="alice", kafka_sasl_password=SecretStr("pw-1"),
    )  # fmt: skip
    assert "listeners=SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text
    assert "inter.broker.listener.name=SASL_SSL" in text
    assert f"ssl.keystore.location={tmp_path / 'broker.p12'}" in text
    assert "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" in text
    assert "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" in text
    assert (
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security"
        '.scram.ScramLoginModule required username="alice" password="pw-1";'
    ) in text
    assert 'user_alice="pw-1";' in text
    config = LocalKafka(Settings(cache_dir=tmp_path, kafka_port=19092)).config_file
    assert config.stat().st_mode & 0o077 == 0


def test_credentials_the_broker_config_cannot_quote_are_refused(tmp_path: Path) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="al", kafka_sasl_password='a"b'
    )
    with pytest.raises(LocalKafkaError, match="password of letters, digits"):
        SaslUser.of(settings)
    assert SaslUser.of(settings.model_copy(update={"kafka_sasl_password": SecretStr("ok")}))


def test_scram_users_are_made_for_both_scram_mechanisms() -> None:
    assert SaslUser("alice", "pw").scram_arguments() == [
        "--add-scram", "SCRAM-SHA-256=[name=alice,password=pw]",
        "--add-scram", "SCRAM-SHA-512=[name=alice,password=pw]",
    ]  # fmt: skip
