"""One node's files and process: pid file, liveness, ports, log tail (no cluster logic).

A node directory holds ``server.properties``, ``kafka.pid``, ``data/`` (the
Kafka log dirs) and ``logs/`` (``server.log`` from log4j2, ``stdout.log`` from
the JVM). A pid counts as alive only when that process still runs *this*
node's ``kafka.Kafka``: a recycled pid is treated as stale.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from alto_stream.broker.config import CONTROLLER_PORT_OFFSET, HOST
from alto_stream.errors import BrokerError

__all__ = [
    "NodeFiles",
    "ephemeral_ports",
    "free_base_port",
    "port_in_use",
    "process_alive",
    "read_pid",
    "remember_child",
    "tail",
]

# Children started by this process, so that liveness checks reap them (a dead
# child stays a zombie, which `kill -0` would call alive) and none is collected
# while running (which would warn).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class NodeFiles:
    """The paths of one node under a cluster's data dir."""

    def __init__(self, data_dir: Path, node_id: int) -> None:
        self.node_id = node_id
        self.root = data_dir / f"node-{node_id}"
        self.properties = self.root / "server.properties"
        self.pid_file = self.root / "kafka.pid"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.server_log = self.logs / "server.log"
        self.stdout_log = self.logs / "stdout.log"

    def formatted(self) -> bool:
        """Whether ``kafka-storage format`` has run on this node's log dir."""
        return (self.data / "meta.properties").exists()

    def pid(self) -> int | None:
        """The pid in the pid file, if any."""
        return read_pid(self.pid_file)

    def running_pid(self) -> int | None:
        """The pid of this node's live Kafka process, or None."""
        pid = self.pid()
        if pid is not None and process_alive(pid, self.properties):
            return pid
        return None

    def write_pid(self, pid: int) -> None:
        """Record the node's pid."""
        self.pid_file.write_text(f"{pid}\n")

    def clear_pid(self) -> None:
        """Forget the node's pid."""
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the node's logs, labelled, for error messages."""
        parts = []
        for path in (self.server_log, self.stdout_log):
            text = tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines) ---\n{text}")
        return "\n".join(parts) or f"(node {self.node_id} wrote no logs under {self.logs})"


def read_pid(path: Path) -> int | None:
    """The positive integer in a pid file, or None when missing or garbled."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def remember_child(process: subprocess.Popen[bytes]) -> None:
    """Keep a started JVM's handle so that liveness checks can reap it."""
    _CHILDREN[process.pid] = process


def _cmdline(pid: int) -> bytes | None:
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
                return None
            return (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
    result = subprocess.run(  # no /proc (macOS): ask ps
        ["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, check=False
    )
    out = result.stdout.strip()
    if result.returncode != 0 or not out or out.startswith(b"Z"):
        return None
    return out


def process_alive(pid: int, properties: Path | None = None) -> bool:
    """Whether ``pid`` runs Kafka (with ``properties``, when given) and is not a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: its exit status is the truth (its /proc entry can be
        # briefly unreadable while the java launcher sets itself up).
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: the command line decides
    cmdline = _cmdline(pid)
    if cmdline is None or b"kafka.Kafka" not in cmdline:
        return False
    return properties is None or str(properties).encode() in cmdline


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether binding ``host:port`` fails, as it would for Kafka (which sets SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks client-side ports from (Linux; else the IANA range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_base_port(brokers: int, *, attempts: int = 200, host: str = HOST) -> int:
    """A port P such that P..P+n-1 and P+100..P+100+n-1 are all free right now.

    Ports come from outside the ephemeral range: a port from inside it can be
    taken by some client's outgoing connection before Kafka binds it.
    """

    def ports(base: int) -> list[int]:
        own = [base + i for i in range(brokers)]
        return own + [p + CONTROLLER_PORT_OFFSET for p in own]

    return _free_range(
        CONTROLLER_PORT_OFFSET + brokers,
        ports,
        host=host,
        attempts=attempts,
        fix="; fix: pass --port",
        what=f"free range of {brokers} broker + controller ports",
    )


def free_ports(count: int = 1, *, host: str = HOST, attempts: int = 500) -> int:
    """The first of ``count`` consecutive ports free on ``host`` right now.

    From outside the ephemeral range, as :func:`free_base_port`: for a server
    started next (a test's broker, metrics pages, a model server).
    """
    return _free_range(
        count,
        lambda base: [base + i for i in range(count)],
        host=host,
        attempts=attempts,
        fix="",
        what=f"{count} consecutive free ports on {host}",
    )


def _free_range(
    span: int,
    ports: Callable[[int], list[int]],
    *,
    host: str,
    attempts: int,
    fix: str,
    what: str,
) -> int:
    """A base port outside the ephemeral range whose ``ports(base)`` are all free."""
    low, high = ephemeral_ports()
    ranges = [(r0, r1) for r0, r1 in ((10000, low - 1), (high + 1, 65535)) if r1 - r0 > span]
    if not ranges:
        raise BrokerError(f"no ports outside the ephemeral range {low}-{high}{fix}")
    rng = random.Random()
    for _ in range(attempts):
        r0, r1 = rng.choice(ranges)
        base = rng.randrange(r0, r1 - span)
        if not any(port_in_use(p, host) for p in ports(base)):
            return base
    raise BrokerError(f"no {what}{fix}")


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a text file ('' when missing)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
