"""Assembling a pinned Apache Kafka from Maven Central.

Apache publishes the broker itself as ``org.apache.kafka:kafka_2.13`` with its runtime
dependencies declared in its pom, so a generated one-dependency pom plus Maven's
``dependency:copy-dependencies`` yields the same class path as the release tarball, from a
registry every developer machine and CI already reaches. The jars land in
``<cache_dir>/kafka-<version>/libs`` once; later starts reuse them.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from string import Template

#: The log4j2 binding the broker logs through (Kafka 4 ships log4j2 behind slf4j).
LOG4J_VERSION = "2.25.3"
#: slf4j 2 API for that binding; Kafka's jars are compiled against slf4j 1.7, which it serves.
SLF4J_VERSION = "2.0.17"

_INSTALL_HINTS = {
    "java": "Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`)",
    "mvn": "Maven (e.g. `apt-get install maven`)",
}


class LocalKafkaError(RuntimeError):
    """An expected failure of the local broker's life cycle; its message is one line."""


def require_tool(name: str) -> str:
    """The path of ``java`` or ``mvn`` on PATH, or a one-line error saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise LocalKafkaError(f"`{name}` not found on PATH: install {_INSTALL_HINTS[name]}")
    return path


#: Kafka 4 brokers run on Java 17 or newer.
MIN_JAVA = 17


def require_java() -> str:
    """The path of a Java 17+ ``java``, or a one-line error saying what to install."""
    java = require_tool("java")
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return java  # an unusual banner: let the broker itself try
    major = int(match[1]) if match[1] != "1" else int(match[2] or 0)  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise LocalKafkaError(
            f"`{java}` is Java {major}; Kafka 4 needs Java {MIN_JAVA}+: install "
            f"{_INSTALL_HINTS['java']}"
        )
    return java


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created if missing) across processes, so two
    commands or test sessions never assemble, format or start the same broker at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def template(name: str) -> str:
    """The text of one of this package's templates (pom, broker config, log4j2 config)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_pom(kafka_version: str) -> str:
    """The pom whose runtime dependencies are the broker's class path."""
    return Template(template("pom-template.xml")).substitute(
        kafka_version=kafka_version, log4j_version=LOG4J_VERSION, slf4j_version=SLF4J_VERSION
    )


def libs_dir(home: Path) -> Path:
    """Where the broker's jars of one Kafka version live."""
    return home / "libs"


def is_assembled(home: Path) -> bool:
    """Whether a previous assembly into ``home`` completed (it is marked only when done)."""
    return (libs_dir(home) / ".complete").is_file()


def assemble(home: Path, kafka_version: str) -> Path:
    """Download Kafka ``kafka_version`` and its runtime dependencies into ``home/libs``.

    Idempotent: a completed assembly is reused. Maven writes into a temporary folder that is
    renamed only on success, so an interrupted download never leaves a half class path.
    Maven's own output goes to ``home/mvn.log``; on failure its last lines are in the error.
    """
    libs = libs_dir(home)
    if is_assembled(home):
        return libs
    mvn = require_tool("mvn")
    with locked(home):
        if not is_assembled(home):  # another process may have finished it meanwhile
            _download(mvn, home, kafka_version)
    return libs


def _download(mvn: str, home: Path, kafka_version: str) -> None:
    libs = libs_dir(home)
    pom = home / "pom.xml"
    pom.write_text(render_pom(kafka_version), encoding="utf-8")
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log = home / "mvn.log"
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [mvn, "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        hint = errors[0].strip() if errors else "see the log"
        raise LocalKafkaError(
            f"Maven could not assemble Kafka {kafka_version} (log: {log}): {hint}"
        )
    (staging / ".complete").write_text(kafka_version, encoding="utf-8")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
