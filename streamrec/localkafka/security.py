"""TLS and SASL for the local broker: certificates, SCRAM users and the listener's config.

With ``STREAMREC_KAFKA_SECURITY_PROTOCOL`` other than PLAINTEXT, ``streamrec kafka start``
gives the broker a listener of that protocol, so the project's own broker exercises the
same client settings a managed cluster needs:

- TLS (SSL, SASL_SSL): a CA and a broker certificate for ``127.0.0.1``/``localhost``,
  made once per run directory with the JDK's ``keytool`` (the JDK runs the broker
  anyway); clients trust ``tls/ca.pem``.
- SASL (SASL_PLAINTEXT, SASL_SSL): the configured user, for SCRAM-SHA-256 and
  SCRAM-SHA-512 written into the KRaft storage by Kafka's own ``kafka-storage format
  --add-scram`` (PLAIN reads it from the listener's JAAS config). The broker talks to
  itself over that listener as the same user.

The PLAINTEXT default renders the same broker config as ever and runs none of this.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streamrec.config import Settings
from streamrec.localkafka.dist import LocalKafkaError

#: SCRAM mechanisms every SASL user gets credentials for (PLAIN needs none stored).
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: What the local broker accepts in a user name or password: they are written into a JAAS
#: config and a kafka-storage argument, whose quoting rules differ.
_PLAIN_CHARS = re.compile(r"[A-Za-z0-9._~+@-]+")
#: Days the local certificates are valid.
_VALID_DAYS = "3650"
#: JVM options that start keytool quickly (each certificate step is one short JVM).
_QUICK_JVM = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The broker's key store (its key, its certificate, the CA) and the CA clients trust."""

    keystore: Path
    password: str
    ca_file: Path


@dataclass(frozen=True, slots=True)
class SaslUser:
    """The one SASL user of the local broker (clients and the broker itself)."""

    name: str
    password: str

    @classmethod
    def of(cls, settings: Settings) -> SaslUser:
        """The configured user, checked against what the local broker can write down."""
        name = settings.kafka_sasl_username or ""
        secret = settings.kafka_sasl_password
        password = secret.get_secret_value() if secret is not None else ""
        for what, value in (("STREAMREC_KAFKA_SASL_USERNAME", name), ("password", password)):
            if not _PLAIN_CHARS.fullmatch(value):
                raise LocalKafkaError(
                    f"the local broker needs a {what} of letters, digits and ._~+@- only"
                )
        return cls(name, password)

    def fingerprint(self) -> str:
        """A hash naming this user and password (stored beside the KRaft data, so a later
        start with other credentials can say so instead of failing every login)."""
        return hashlib.sha256(f"{self.name}\0{self.password}".encode()).hexdigest()

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create this user's SCRAM credentials."""
        args = []
        for mechanism in SCRAM_MECHANISMS:
            args += ["--add-scram", f"{mechanism}=[name={self.name},password={self.password}]"]
        return args


def broker_tls(tls_dir: Path, java: str) -> BrokerTls:
    """The local CA and broker certificate in ``tls_dir``, made on first use with keytool."""
    keystore, ca_file, password_file = (
        tls_dir / "broker.p12",
        tls_dir / "ca.pem",
        tls_dir / "password",
    )
    if (tls_dir / ".complete").is_file():
        return BrokerTls(keystore, password_file.read_text().strip(), ca_file)
    keytool = _keytool(java)
    shutil.rmtree(tls_dir, ignore_errors=True)
    tls_dir.mkdir(parents=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    password_file.write_text(password)
    password_file.chmod(0o600)
    ca_store = tls_dir / "ca.p12"
    ec_key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", _VALID_DAYS]
    steps = [
        ["-genkeypair", "-keystore", ca_store, "-alias", "ca", *ec_key,
         "-dname", "CN=streamrec local CA", "-ext", "bc:c=ca:true",
         "-ext", "ku:c=keyCertSign,cRLSign"],
        ["-exportcert", "-keystore", ca_store, "-alias", "ca", "-rfc", "-file", ca_file],
        ["-genkeypair", "-keystore", keystore, "-alias", "broker", *ec_key,
         "-dname", "CN=localhost"],
        ["-certreq", "-keystore", keystore, "-alias", "broker", "-file", tls_dir / "broker.csr"],
        ["-gencert", "-keystore", ca_store, "-alias", "ca", "-infile", tls_dir / "broker.csr",
         "-outfile", tls_dir / "broker.pem", "-rfc", "-validity", _VALID_DAYS,
         "-ext", "san=dns:localhost,ip:127.0.0.1", "-ext", "ku:c=digitalSignature",
         "-ext", "eku=serverAuth,clientAuth"],
        ["-importcert", "-keystore", keystore, "-alias", "ca", "-file", ca_file, "-noprompt"],
        ["-importcert", "-keystore", keystore, "-alias", "broker", "-file",
         tls_dir / "broker.pem"],
    ]  # fmt: skip
    for step in steps:
        args = [keytool, *_QUICK_JVM, *map(str, step), "-storetype", "PKCS12"]
        done = subprocess.run(
            [*args, "-storepass", password], capture_output=True, text=True, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise LocalKafkaError(f"keytool {step[0]} failed: {output[-1]}")
    (tls_dir / ".complete").touch()
    return BrokerTls(keystore, password, ca_file)


def listener_config(protocol: str, tls: BrokerTls | None, user: SaslUser | None,
                    inter_broker_mechanism: str) -> str:  # fmt: skip
    """The broker properties of a ``protocol`` listener beyond its name ("" for PLAINTEXT)."""
    lines: list[str] = []
    if tls is not None:
        lines += ["", "# TLS: the broker's key store (key, certificate, CA) is its trust store."]
        for store in ("keystore", "truststore"):
            lines += [
                f"ssl.{store}.type=PKCS12",
                f"ssl.{store}.location={tls.keystore}",
                f"ssl.{store}.password={tls.password}",
            ]
        lines.append(f"ssl.key.password={tls.password}")
    if user is not None:
        prefix = f"listener.name.{protocol.lower()}"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        login = f'username="{user.name}" password="{user.password}"'
        lines += [
            "",
            "# SASL: SCRAM users live in the KRaft metadata (kafka-storage format --add-scram);",
            "# PLAIN checks the user_<name> entry. The broker logs in to itself as the same user.",
            f"sasl.enabled.mechanisms=PLAIN,{','.join(SCRAM_MECHANISMS)}",
            f"sasl.mechanism.inter.broker.protocol={inter_broker_mechanism}",
            *(
                f"{prefix}.{mechanism.lower()}.sasl.jaas.config={scram} required {login};"
                for mechanism in SCRAM_MECHANISMS
            ),
            f"{prefix}.plain.sasl.jaas.config={plain} required {login} "
            f'user_{user.name}="{user.password}";',
        ]
    return "\n".join(lines) + "\n" if lines else ""


def _keytool(java: str) -> str:
    """The keytool beside ``java`` (the JDK's), else the one on PATH."""
    beside = Path(java).resolve().with_name("keytool")
    if beside.is_file():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise LocalKafkaError(
            "`keytool` not found (it comes with the JDK): needed for the local broker's "
            "TLS certificates"
        )
    return found
