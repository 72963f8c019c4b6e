"""The one Kafka connection config: what each client library is given, and what never
shows (the password). Reaching a real SASL_SSL broker is tests/integration/test_security.py."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from pydantic import SecretStr

from streamrec.config import Settings
from streamrec.streams.connection import KafkaConfigError, KafkaConnection


def sasl(**overrides: object) -> KafkaConnection:
    fields: dict[str, object] = {
        "bootstrap": "k1:9093,k2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "svc",
        "sasl_password": SecretStr("s3cret"),
    }
    return KafkaConnection(**(fields | overrides))  # type: ignore[arg-type]


def test_plaintext_clients_get_only_the_bootstrap_servers() -> None:
    connection = Settings(kafka_bootstrap="k1:9092").kafka_connection
    assert connection.client_options() == {
        "bootstrap_servers": "k1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert connection.faust_options() == {"broker": ["kafka://k1:9092"]}


def test_sasl_ssl_clients_get_one_verifying_tls_context_and_the_credentials() -> None:
    options = sasl().client_options()
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert options == {
        "bootstrap_servers": "k1:9093,k2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    assert sasl(ssl_check_hostname=False).ssl_context().check_hostname is False  # type: ignore[union-attr]


def test_faust_gets_sasl_credentials_over_tls_or_plaintext() -> None:
    over_tls = sasl().faust_options()
    assert over_tls["broker"] == ["kafka://k1:9093", "kafka://k2:9093"]
    credentials = over_tls["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == (
        "SASL_SSL",
        "SCRAM-SHA-256",
    )
    assert (credentials.username, credentials.password) == ("svc", "s3cret")
    plain = sasl(security_protocol="SASL_PLAINTEXT").faust_options()["broker_credentials"]
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    tls_only = KafkaConnection("k1:9093", "SSL").faust_options()["broker_credentials"]
    assert isinstance(tls_only, faust.SSLCredentials)


def test_the_password_never_shows_in_repr_or_description() -> None:
    connection = sasl()
    assert "s3cret" not in repr(connection)
    assert connection.describe() == "k1:9093,k2:9093 (SASL_SSL, SCRAM-SHA-256 as svc)"
    assert "s3cret" not in repr(Settings(kafka_sasl_password="s3cret", kafka_sasl_username="u"))


def test_sasl_without_credentials_is_refused_when_the_settings_are_read() -> None:
    with pytest.raises(KafkaConfigError, match="needs STREAMREC_KAFKA_SASL_USERNAME"):
        sasl(sasl_username=None)
    with pytest.raises(ValueError, match="SASL_SSL needs STREAMREC_KAFKA_SASL_USERNAME") as info:
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="s3cret")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(info.value.errors())  # type: ignore[attr-defined]


def test_an_unreadable_ca_file_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(KafkaConfigError) as info:
        sasl(ssl_cafile=missing).ssl_context()
    assert str(info.value) == (
        f"cannot load the TLS files (STREAMREC_KAFKA_SSL_CAFILE={missing}): "
        "No such file or directory"
    )


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValueError, match=r"MIN_INSYNC_REPLICAS \(2\) exceeds .*FACTOR \(1\)"):
        Settings(min_insync_replicas=2)
    assert Settings(replication_factor=3, min_insync_replicas=2).min_insync_replicas == 2
