"""Getting Apache Kafka's broker jars: from Maven with a generated pom, or from ``KAFKA_HOME``.

The Maven route pins every version, asks Maven to fail on any checksum mismatch
(``--strict-checksums``) and copies the runtime classpath into
``<data_home>/kafka-<version>/libs``. A marker file, written only after a
complete copy, makes later calls return at once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alto_stream.errors import BrokerError
from alto_stream.settings import data_home

__all__ = [
    "DEPENDENCIES",
    "KAFKA_VERSION",
    "MIN_JAVA",
    "find_java",
    "install",
    "installed_libs",
    "java_major_version",
    "pom_xml",
]

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
MIN_JAVA = 17
# kafka_2.13 brings the broker and its runtime closure; Kafka's slf4j 1.7 API needs
# the log4j2 binding (and log4j-core) or the broker logs nothing at all.
DEPENDENCIES: tuple[tuple[str, str, str], ...] = (
    ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
    ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
)
_MARKER = ".installed"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MVN_TIMEOUT = 600.0


def find_java() -> Path:
    """The ``java`` to run: ``$JAVA_HOME/bin/java``, else the one on PATH; checks it is 17+."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is None or not candidate.exists():
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise BrokerError(
            f"java not found: Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ "
            "on PATH or in JAVA_HOME; fix: install a JDK/JRE 17+ (e.g. openjdk-17-jre-headless)"
        )
    result = subprocess.run(
        [str(candidate), "-version"], capture_output=True, text=True, timeout=60, check=False
    )
    major = java_major_version(result.stderr + result.stdout)
    if major is None or major < MIN_JAVA:
        raise BrokerError(
            f"{candidate} is Java {major or 'of unknown version'}; Apache Kafka "
            f"{KAFKA_VERSION} needs Java {MIN_JAVA}+; fix: install Java {MIN_JAVA}+ and "
            "put it first on PATH or set JAVA_HOME"
        )
    return candidate


def java_major_version(version_output: str) -> int | None:
    """The major version in ``java -version`` output (``1.8.0_x`` -> 8, ``17.0.2`` -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def pom_xml() -> str:
    """A throwaway pom whose runtime classpath is the broker's."""
    deps = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in DEPENDENCIES
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by alto-stream to resolve Apache Kafka's broker jars; safe to delete. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.alto-stream.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def _cache_dir() -> Path:
    return data_home() / f"kafka-{KAFKA_VERSION}"


def installed_libs(cache_dir: Path | None = None) -> Path | None:
    """The libs directory of a usable installation (``KAFKA_HOME`` first), or None."""
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        return _check_kafka_home(Path(kafka_home))
    home = cache_dir or _cache_dir()
    marker = home / _MARKER
    if not marker.exists():
        return None
    libs = home / "libs"
    names = marker.read_text().split()
    if not names or not all((libs / name).exists() for name in names):
        return None
    return libs


def _check_kafka_home(home: Path) -> Path:
    libs = home / "libs"
    jars = sorted(libs.glob("kafka_2.1*-*.jar")) if libs.is_dir() else []
    if not jars:
        raise BrokerError(
            f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar; expected an unpacked Apache "
            "Kafka 4.x distribution; fix: point KAFKA_HOME at one, or unset it to let "
            "alto-stream fetch the jars with Maven"
        )
    if not any(re.search(r"-4\.\d+\.\d+\.jar$", jar.name) for jar in jars):
        raise BrokerError(
            f"KAFKA_HOME={home} holds {jars[0].name}; alto-stream needs Apache Kafka 4.x "
            "(KRaft-only configuration); fix: use a 4.x distribution or unset KAFKA_HOME"
        )
    return libs


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise installs across processes (two test sessions may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Make Apache Kafka's jars available and return their directory (the classpath).

    ``KAFKA_HOME`` wins when set; otherwise Maven resolves the pinned jars into
    ``cache_dir`` (default ``<data_home>/kafka-4.1.1``), once.
    """
    find_java()
    if os.environ.get("KAFKA_HOME"):
        return _check_kafka_home(Path(os.environ["KAFKA_HOME"]))
    home = cache_dir or _cache_dir()
    with _locked(home / ".lock"):
        libs = None if force else installed_libs(home)
        if libs is not None:
            return libs
        return _resolve_with_maven(home)


def _resolve_with_maven(home: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"mvn not found on PATH: it fetches Apache Kafka {KAFKA_VERSION}'s jars; fix: "
            "install Maven (e.g. apt-get install maven) or set KAFKA_HOME to an unpacked "
            "Apache Kafka 4.x distribution"
        )
    (home / _MARKER).unlink(missing_ok=True)
    (home / "pom.xml").write_text(pom_xml())
    staging, libs = home / "libs.partial", home / "libs"
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "--strict-checksums", "-Dstyle.color=never",
        "-f", str(home / "pom.xml"),
        "dependency:copy-dependencies", "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    logger.info("resolving Apache Kafka %s with Maven into %s", KAFKA_VERSION, libs)
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_MVN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(
            f"mvn did not finish within {_MVN_TIMEOUT:.0f} s resolving Kafka {KAFKA_VERSION}; "
            "fix: check the network access to the Maven repository, or set KAFKA_HOME"
        ) from exc
    jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
    if result.returncode != 0 or not any(n.startswith("kafka_2.13-") for n in jars):
        output = _ANSI.sub("", (result.stdout + result.stderr).strip())
        raise BrokerError(
            f"mvn could not resolve Apache Kafka {KAFKA_VERSION} (exit {result.returncode}); "
            f"command: {' '.join(command)}\nmvn output:\n{output or '(none)'}\n"
            "fix: check network access to the Maven repository (or ~/.m2/settings.xml "
            "mirrors), or set KAFKA_HOME to an unpacked Apache Kafka 4.x distribution"
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (home / _MARKER).write_text("\n".join(jars) + "\n")
    return libs
