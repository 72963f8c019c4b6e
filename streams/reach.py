"""Checking, in seconds, that the cluster can be reached, and saying why not in one line.

kafka-python and aiokafka both retry a failed bootstrap until their timeout (30-60 s) and
then report "Unable to bootstrap", whatever the cause: a stopped broker, a wrong password
and an untrusted certificate all look alike. :func:`check` runs before a client is made:
a TCP connect to each bootstrap server (a refused port answers at once), then on
PLAINTEXT one ApiVersions request (a TLS listener hangs up on it), and off PLAINTEXT one
Kafka handshake (TLS, API versions, SASL) through aiokafka's single connection, which
raises the broker's own answer instead of retrying it. A PLAINTEXT cluster costs one
round trip; the handshake (and aiokafka's import) is paid only where TLS or SASL is used.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Callable
from typing import TypeVar

from streamrec.streams.connection import KafkaConnectError, KafkaConnection

__all__ = [
    "KafkaAuthFailed",
    "KafkaConnectError",
    "KafkaTlsFailed",
    "KafkaUnreachable",
    "check",
    "checked",
]

T = TypeVar("T")

#: Kafka's ApiVersions request key, and the correlation id the check's request carries.
API_VERSIONS = 18
CORRELATION_ID = 0x5EC
#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: a trusted certificate for another name.
HOSTNAME_MISMATCH = 62


class KafkaUnreachable(KafkaConnectError):
    """No bootstrap server accepts a connection."""


class KafkaAuthFailed(KafkaConnectError):
    """The broker refused the SASL credentials or mechanism."""


class KafkaTlsFailed(KafkaConnectError):
    """The TLS handshake failed: untrusted certificate, wrong name, or no TLS listener."""


def check(connection: KafkaConnection) -> None:
    """Return once one bootstrap server can be used; raise :class:`KafkaConnectError` else.

    Servers are tried in order, each for ``connection.connect_timeout_s``; a server that
    fails the handshake for a reason another one would share (credentials, certificate)
    stops the check at once.
    """
    timeout_s = connection.connect_timeout_s
    connection.ssl_context()  # unreadable TLS files fail here (KafkaConfigError), offline
    reasons = []
    for host in connection.hosts:
        name, _, port = host.rpartition(":")
        name = name.strip("[]")  # an IPv6 address: [::1]:9092
        try:
            sock = socket.create_connection((name, int(port)), timeout=timeout_s)
        except (OSError, ValueError) as exc:
            reasons.append(f"{host}: {_reason(exc)}")
            continue
        with sock:
            if connection.security_protocol == "PLAINTEXT":
                _api_versions(sock, host)
        if connection.security_protocol != "PLAINTEXT":
            _handshake(connection, name, int(port), timeout_s)
        return
    raise KafkaUnreachable(
        f"no Kafka broker answers at {connection.bootstrap} ({'; '.join(reasons)}): start the "
        "local one with `streamrec kafka start`, or set STREAMREC_KAFKA_BOOTSTRAP to your "
        "cluster"
    )


def checked(make: Callable[..., T], connection: KafkaConnection) -> Callable[..., T]:
    """``make`` (a client class) bound to ``connection``, called only after :func:`check`:
    ``checked(KafkaProducer, conn)(acks="all")``."""

    def build(**options: object) -> T:
        check(connection)
        return make(**connection.client_options(), **options)

    return build


def _api_versions(sock: socket.socket, where: str) -> None:
    """Send a PLAINTEXT ApiVersions v0 request and wait for the start of its answer.

    A TLS listener closes the connection on these bytes; without the check a PLAINTEXT
    client would retry it until its bootstrap timeout. Any answer with our correlation id
    will do (the request's content is not read).
    """
    client_id = b"streamrec-check"
    header = struct.pack(">hhih", API_VERSIONS, 0, CORRELATION_ID, len(client_id)) + client_id
    try:
        sock.sendall(struct.pack(">i", len(header)) + header)
        answer = b""
        while len(answer) < 8:
            chunk = sock.recv(8 - len(answer))
            if not chunk:
                break
            answer += chunk
    except OSError as exc:
        answer, reason = b"", _reason(exc)
    else:
        reason = "connection closed"
    if len(answer) < 8 or struct.unpack(">ii", answer)[1] != CORRELATION_ID:
        raise KafkaConnectError(
            f"{where} accepted a connection but did not answer a PLAINTEXT Kafka request "
            f"({reason}): does that listener need STREAMREC_KAFKA_SECURITY_PROTOCOL=SSL or "
            "SASL_SSL?"
        )


def _handshake(connection: KafkaConnection, host: str, port: int, timeout_s: float) -> None:
    """One aiokafka connection to ``host:port``: TLS, API versions and SASL, then closed."""
    from aiokafka import errors
    from aiokafka.conn import create_conn

    options = connection.client_options()
    del options["bootstrap_servers"]

    async def connect() -> None:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options),
            timeout_s,
        )
        conn.close()

    where = f"{host}:{port}"
    try:
        asyncio.run(connect())
    except errors.UnsupportedSaslMechanismError as exc:
        raise KafkaAuthFailed(
            f"{where} does not accept SASL mechanism {connection.sasl_mechanism}: set "
            f"STREAMREC_KAFKA_SASL_MECHANISM to one it offers ({_message(exc)})"
        ) from None
    except (errors.SaslAuthenticationFailed, errors.AuthenticationFailedError) as exc:
        raise KafkaAuthFailed(
            f"authentication failed at {where} for user {connection.sasl_username!r} "
            f"({connection.sasl_mechanism}): check STREAMREC_KAFKA_SASL_USERNAME and "
            f"STREAMREC_KAFKA_SASL_PASSWORD (the broker says: {_message(exc)})"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        hint = (
            "reach it by a name its certificate was issued to, or set "
            "STREAMREC_KAFKA_SSL_CHECK_HOSTNAME=false"
            if exc.verify_code == HOSTNAME_MISMATCH
            else "set STREAMREC_KAFKA_SSL_CAFILE to the CA that signed it"
        )
        raise KafkaTlsFailed(
            f"TLS certificate of {where} not accepted ({exc.verify_message}): {hint}"
        ) from None
    except ssl.SSLError as exc:
        raise KafkaTlsFailed(
            f"TLS handshake with {where} failed ({exc.reason or exc}): is "
            f"STREAMREC_KAFKA_SECURITY_PROTOCOL={connection.security_protocol} what that "
            "listener speaks?"
        ) from None
    except (OSError, TimeoutError, errors.KafkaError) as exc:
        raise KafkaConnectError(
            f"{where} accepted a connection but the {connection.security_protocol} handshake "
            f"failed ({_reason(exc)}): is STREAMREC_KAFKA_SECURITY_PROTOCOL what that "
            "listener speaks?"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or _first_line(exc) or type(exc).__name__


def _message(exc: BaseException) -> str:
    """A Kafka error's own message, without the client's ``[Error 58] Name:`` prefix."""
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    return _first_line(text) or type(exc).__name__


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
