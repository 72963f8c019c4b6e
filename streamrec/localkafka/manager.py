"""The life cycle of streamrec's own single-node Kafka: start, status, stop.

One combined KRaft broker+controller listens on 127.0.0.1 (``Settings.kafka_port``, the
controller on the port after it). Everything it owns sits in the cache directory, outside
the repository: ``<cache_dir>/kafka-<version>/libs`` (the jars, shared by every port) and
``<cache_dir>/kafka-<version>/run-<port>/`` (config, KRaft data, log and pid file), so
brokers on different ports (a developer's and a test session's) never share state.

The broker runs detached from the process that started it: ``streamrec kafka start``
returns while it keeps running, and any later process finds it again by its pid file.
When ``Settings.kafka_bootstrap`` names another cluster, nothing here starts or stops
anything.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

from streamrec.config import Settings
from streamrec.localkafka.dist import (
    LocalKafkaError,
    assemble,
    libs_dir,
    locked,
    require_java,
    template,
)
from streamrec.localkafka.security import BrokerTls, SaslUser, broker_tls, listener_config
from streamrec.streams.connection import KafkaConnection

#: Seconds ``stop`` waits for a clean shutdown before it kills the broker.
STOP_TIMEOUT_S = 60.0
#: The JVM's main class of a Kafka broker (what the pid file's process must be running).
MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True, slots=True)
class KafkaStatus:
    """Where the cluster streamrec talks to is and whether it runs.

    For an external cluster (``external``) only ``bootstrap`` and ``running`` (it answered a
    metadata request) are meaningful; the paths and pid belong to a local broker.
    """

    running: bool
    bootstrap: str
    external: bool
    pid: int | None = None
    log_file: Path | None = None
    data_dir: Path | None = None
    already_running: bool = False
    #: The listener's protocol and CA file when not PLAINTEXT, e.g. ``SASL_SSL, CA …``.
    security: str = ""

    def describe(self) -> str:
        """One line for people, e.g. ``running at 127.0.0.1:9092 (pid 123, log …, data …)``."""
        if self.external:
            state = "answers" if self.running else "does not answer"
            return f"external cluster {self.bootstrap} {state} (not managed by streamrec)"
        if not self.running:
            return (
                f"stopped (bootstrap {self.bootstrap}, log {self.log_file}, data {self.data_dir})"
            )
        security = f"{self.security}, " if self.security else ""
        return (
            f"running at {self.bootstrap} ({security}pid {self.pid}, log {self.log_file}, "
            f"data {self.data_dir})"
        )


def cluster_answers(connection: KafkaConnection, timeout_s: float) -> bool:
    """Whether the cluster ``connection`` reaches answers a metadata request with a broker."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = max(int(timeout_s * 1000), 100)
    try:
        admin = KafkaAdminClient(
            **connection.client_options(),
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            client_id="streamrec-probe",
        )
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Kafka's own ``Uuid.randomUuid`` rejects ids whose text starts with ``-`` (it would read
    as a command-line option), so this does too.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _port_free(port: int) -> bool:
    """Whether the broker could listen on 127.0.0.1:``port``. Binds as the JVM does, with
    SO_REUSEADDR, so the TIME_WAIT connections a just-stopped broker leaves behind do not
    count as another program holding the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _process(pid: int) -> tuple[str, str] | None:
    """State letter and command line (arguments joined by spaces) of ``pid``, or None when
    there is no such process.

    Linux answers from /proc; elsewhere (a macOS laptop) ``ps`` does.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        return stat.rsplit(")", 1)[-1].split()[0], args.replace("\0", " ")
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    done = subprocess.run(
        ["ps", "-ww", "-o", "stat=,args=", "-p", str(pid)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    state, _, args = done.stdout.strip().partition(" ")
    return (state[:1], args.strip()) if done.returncode == 0 and state else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps it if it is our exited child."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    process = _process(pid)
    return process is not None and process[0] != "Z"


class LocalKafka:
    """Start, find and stop the local broker described by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.cache_dir / f"kafka-{settings.kafka_version}"
        self.run_dir = self.home / f"run-{settings.kafka_port}"
        self.data_dir = self.run_dir / "data"
        self.log_file = self.run_dir / "broker.log"
        self.pid_file = self.run_dir / "broker.pid"
        self.config_file = self.run_dir / "server.properties"
        self.tls_dir = self.run_dir / "tls"
        #: The CA that signed the broker's certificate: what its TLS clients trust.
        self.ca_file = self.tls_dir / "ca.pem"
        #: The SASL user the KRaft storage was formatted with (its fingerprint), if any.
        self.users_file = self.run_dir / "sasl-users"
        self.bootstrap = f"127.0.0.1:{settings.kafka_port}"

    @property
    def connection(self) -> KafkaConnection:
        """How a client reaches this broker: the settings' protocol and SASL user, this
        broker's address, and its own CA (``tls/ca.pem``) for TLS, checked by host name."""
        return dataclasses.replace(
            self.settings.kafka_connection,
            bootstrap=self.bootstrap,
            ssl_cafile=self.ca_file,
            ssl_certfile=None,
            ssl_keyfile=None,
            ssl_check_hostname=True,
        )

    @property
    def external(self) -> bool:
        """True when another cluster is configured and this manager must not touch anything."""
        return not self.settings.uses_local_kafka

    @property
    def controller_port(self) -> int:
        """The KRaft controller's port: the one after the broker's."""
        return self.settings.kafka_port + 1

    def pid(self) -> int | None:
        """The pid of this port's running broker, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        process = _process(pid)
        args = process[1] if process else ""
        if f" {MAIN_CLASS} " in args and str(self.config_file) in args and _alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def status(self) -> KafkaStatus:
        """Running or stopped, and where; for an external cluster, whether it answers."""
        if self.external:
            connection = self.settings.kafka_connection
            return KafkaStatus(
                cluster_answers(connection, 5.0), connection.bootstrap, external=True
            )
        pid = self.pid()
        return KafkaStatus(
            pid is not None, self.bootstrap, False, pid, self.log_file, self.data_dir,
            security=self._security(),
        )  # fmt: skip

    @contextlib.contextmanager
    def throwaway(self) -> Iterator[KafkaStatus]:
        """Run this broker for the ``with`` block, then stop it and delete its data: a broker
        that exists only for one test session or one benchmark."""
        status = self.start()
        try:
            yield status
        finally:
            self.stop()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def start(self, on_step: Callable[[str], None] = lambda _: None) -> KafkaStatus:
        """Make sure the broker runs and answers metadata requests; harmless when it does.

        Steps on a cold cache: check java, download the jars with Maven (once per version),
        format KRaft storage (once per port), launch the JVM detached, wait until it answers
        (``Settings.kafka_start_timeout_s``). ``on_step`` hears a short line per step.
        """
        if self.external:
            return self.status()
        java = require_java()
        with locked(self.run_dir):
            return self._start(java, on_step)

    def _start(self, java: str, on_step: Callable[[str], None]) -> KafkaStatus:
        pid = self.pid()
        if pid is not None:
            return KafkaStatus(
                True, self.bootstrap, False, pid, self.log_file, self.data_dir,
                already_running=True, security=self._security(),
            )  # fmt: skip
        for port in (self.settings.kafka_port, self.controller_port):
            if not _port_free(port):
                raise LocalKafkaError(
                    f"port {port} on 127.0.0.1 is taken by another program: stop it or set "
                    "STREAMREC_KAFKA_PORT (the controller uses the port after it)"
                )
        on_step(f"assembling Apache Kafka {self.settings.kafka_version} from Maven Central")
        assemble(self.home, self.settings.kafka_version)
        connection = self.connection
        tls: BrokerTls | None = None
        if connection.uses_ssl:
            on_step(f"making the broker's TLS certificates in {self.tls_dir}")
            tls = broker_tls(self.tls_dir, java)
        user = SaslUser.of(self.settings) if connection.uses_sasl else None
        self._write_config(tls, user)
        if not (self.data_dir / "meta.properties").is_file():
            on_step(f"formatting KRaft storage in {self.data_dir}")
            self._format(java, user)
        self._check_users(user)
        on_step(f"starting the broker on {self.bootstrap}")
        proc = self._launch(java)
        self._wait_ready(proc)
        return KafkaStatus(
            True, self.bootstrap, False, proc.pid, self.log_file, self.data_dir,
            security=self._security(),
        )  # fmt: skip

    def stop(self) -> KafkaStatus:
        """Stop the broker cleanly (SIGTERM, then wait for exit); harmless when stopped.

        A broker that has not exited after ``STOP_TIMEOUT_S`` is killed, so ``stop`` always
        returns with the port free.
        """
        if self.external:
            return self.status()
        with locked(self.run_dir):
            return self._stop()

    def _stop(self) -> KafkaStatus:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, STOP_TIMEOUT_S):
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
            self.pid_file.unlink(missing_ok=True)
        return KafkaStatus(False, self.bootstrap, False, None, self.log_file, self.data_dir)

    # --- internals ---------------------------------------------------------------------

    def _security(self) -> str:
        """What ``KafkaStatus.security`` says of this broker's listener ("" for PLAINTEXT)."""
        connection = self.connection
        if not connection.uses_ssl:
            return (
                "" if connection.security_protocol == "PLAINTEXT" else connection.security_protocol
            )
        return f"{connection.security_protocol}, CA {self.ca_file}"

    def _classpath(self) -> str:
        return str(libs_dir(self.home) / "*")

    def _jvm(self, java: str, *, short_lived: bool = False) -> list[str]:
        """The JVM command line up to the main class: class path, heap and logging.

        The broker gets Kafka's own choices (fixed heap, G1, short pauses); a short-lived
        tool run gets the quickest start instead (client compiler only, serial GC), which
        saves about a second of CPU on a small machine.
        """
        log4j = self.home / "log4j2.xml"
        if not log4j.is_file():
            log4j.write_text(template("log4j2.xml"), encoding="utf-8")
        if short_lived:
            tuning = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        else:
            heap = self.settings.kafka_heap
            tuning = [f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        return [
            java,
            *tuning,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            self._classpath(),
        ]

    def _write_config(self, tls: BrokerTls | None = None, user: SaslUser | None = None) -> None:
        """Render server.properties: a listener of the settings' protocol (PLAINTEXT by
        default); it holds the key store and SASL passwords, so only its owner reads it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        protocol = self.settings.kafka_security_protocol
        text = Template(template("server-template.properties")).substitute(
            port=self.settings.kafka_port,
            controller_port=self.controller_port,
            log_dir=self.data_dir,
            partitions=self.settings.partitions,
            listener=protocol,
            security=listener_config(protocol, tls, user, self.settings.kafka_sasl_mechanism),
        )
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)
        self.config_file.write_text(text, encoding="utf-8")

    def _format(self, java: str, user: SaslUser | None) -> None:
        """Format KRaft storage for a standalone (single-voter, dynamic quorum) controller,
        with ``user``'s SCRAM credentials when the listener uses SASL."""
        tool = [*self._jvm(java, short_lived=True), "kafka.tools.StorageTool"]
        scram = user.scram_arguments() if user is not None else []
        done = subprocess.run(
            [*tool, "format", "--standalone", "--cluster-id", new_cluster_id(),
             "--config", str(self.config_file), *scram],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise LocalKafkaError(f"formatting KRaft storage failed: {lines[-1]}")
        if user is not None:
            self.users_file.write_text(user.fingerprint(), encoding="utf-8")

    def _check_users(self, user: SaslUser | None) -> None:
        """Refuse to start a SASL broker whose storage holds other SCRAM credentials than
        the settings name: every login would fail, which is much harder to read."""
        if user is None:
            return
        try:
            stored = self.users_file.read_text(encoding="utf-8").strip()
        except OSError:
            stored = ""
        if stored != user.fingerprint():
            raise LocalKafkaError(
                f"the KRaft storage in {self.data_dir} was formatted without this SASL user "
                f"and password: remove {self.run_dir} to start afresh (its topics are lost), "
                "or use the credentials it was made with"
            )

    def _launch(self, java: str) -> subprocess.Popen[bytes]:
        """Start the JVM in its own session, output appended to the log file."""
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*self._jvm(java), MAIN_CLASS, str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        self.pid_file.write_text(f"{proc.pid}\n", encoding="utf-8")
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the broker answers a metadata request; fail early if the JVM died."""
        deadline = time.monotonic() + self.settings.kafka_start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"the broker exited with code {proc.returncode} while starting: "
                    f"{self._last_error()} (log: {self.log_file})"
                )
            # A refused connection answers at once; kafka-python would retry until its timeout.
            if _accepts(self.settings.kafka_port) and cluster_answers(self.connection, 2.0):
                return
            time.sleep(0.1)
        self._stop()
        raise LocalKafkaError(
            f"the broker did not answer within {self.settings.kafka_start_timeout_s:g} s and was "
            f"stopped (log: {self.log_file})"
        )

    def _last_error(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        picked = [line for line in lines if " ERROR " in line or "Exception" in line]
        return (picked or lines or ["no log"])[-1].strip()

    @staticmethod
    def _wait_exit(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.1)
        return not _alive(pid)
