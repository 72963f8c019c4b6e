"""How every Kafka client of streamrec reaches the cluster: address, TLS and SASL.

The root builds one :class:`KafkaConnection` from the settings
(``Settings.kafka_connection``) and every client is made from it: the Faust app
(:meth:`faust_options`), aiokafka and kafka-python alike (:meth:`client_options`: both
libraries take the same argument names). The TLS context is built in exactly one place,
:meth:`ssl_context`, so a CA file or a hostname check means the same to all of them.

This module imports no Kafka library (the settings object uses it, and ``streamrec
--help`` must stay quick); checking that a cluster can be reached lives in
:mod:`streamrec.streams.reach`, whose errors are :class:`KafkaConnectError` too.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnectError(RuntimeError):
    """The cluster cannot be used as configured; the message is one line saying what to do."""


class KafkaConfigError(KafkaConnectError, ValueError):
    """The connection settings contradict each other or name an unreadable file.

    A ValueError too, so the settings object reports it as an invalid setting."""


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the cluster is and how to authenticate to it; PLAINTEXT when only ``bootstrap``.

    The password is a :class:`~pydantic.SecretStr`: it prints as ``**********`` in a
    repr, a log line or an error, and only :meth:`client_options` reads it out.
    """

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: Seconds a check waits for one bootstrap server (TCP, TLS and SASL handshakes).
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.uses_sasl and (not self.sasl_username or self.sasl_password is None):
            raise KafkaConfigError(
                f"security protocol {self.security_protocol} needs STREAMREC_KAFKA_SASL_USERNAME "
                "and STREAMREC_KAFKA_SASL_PASSWORD"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise KafkaConfigError(
                "STREAMREC_KAFKA_SSL_KEYFILE needs STREAMREC_KAFKA_SSL_CERTFILE (the client "
                "certificate it belongs to)"
            )

    @property
    def uses_ssl(self) -> bool:
        """Whether the connection is TLS-encrypted (SSL or SASL_SSL)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether the client authenticates with a user name and password."""
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def hosts(self) -> list[str]:
        """The bootstrap servers, one ``host:port`` each."""
        return [host.strip() for host in self.bootstrap.split(",") if host.strip()]

    def describe(self) -> str:
        """For people and logs, never with the password: ``host:port (SASL_SSL, SCRAM-SHA-512
        as alice)``."""
        if not self.uses_sasl:
            return f"{self.bootstrap} ({self.security_protocol})"
        return (
            f"{self.bootstrap} ({self.security_protocol}, {self.sasl_mechanism} "
            f"as {self.sasl_username})"
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The one TLS context every client gets, or None without TLS.

        Server certificates are verified against ``ssl_cafile`` (else the system's trusted
        CAs); ``ssl_check_hostname`` off accepts a trusted certificate issued to another
        name. A client certificate (mutual TLS) is sent when ``ssl_certfile`` is set.
        """
        if not self.uses_ssl:
            return None
        try:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.ssl_cafile) if self.ssl_cafile is not None else None,
            )
            if self.ssl_certfile is not None:
                context.load_cert_chain(
                    str(self.ssl_certfile),
                    str(self.ssl_keyfile) if self.ssl_keyfile is not None else None,
                )
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(
                f"{name}={path}"
                for name, path in (
                    ("STREAMREC_KAFKA_SSL_CAFILE", self.ssl_cafile),
                    ("STREAMREC_KAFKA_SSL_CERTFILE", self.ssl_certfile),
                    ("STREAMREC_KAFKA_SSL_KEYFILE", self.ssl_keyfile),
                )
                if path is not None
            )
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise KafkaConfigError(f"cannot load the TLS files ({files}): {reason}") from None
        context.check_hostname = self.ssl_check_hostname
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of every kafka-python and aiokafka client (same names in both):
        bootstrap servers, security protocol, TLS context and SASL credentials."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_ssl:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked in __post_init__
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options

    def faust_options(self) -> dict[str, Any]:
        """``faust.App`` settings: the broker URLs and, off PLAINTEXT, ``broker_credentials``
        (faust hands them to every aiokafka client it makes: consumer, producer, admin)."""
        import faust

        options: dict[str, Any] = {"broker": [f"kafka://{host}" for host in self.hosts]}
        context = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        elif context is not None:
            options["broker_credentials"] = faust.SSLCredentials(context)
        return options
