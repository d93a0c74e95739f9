"""A small private network of "hosts" made of Linux network namespaces (root only).

``hosts(4)`` makes namespaces ``<tag>-h1`` .. ``<tag>-h4``, each with loopback
up and one interface ``eth0`` at ``10.251.0.<i>/24``, plugged by a veth pair
into a bridge that lives in a fifth namespace, ``<tag>-sw`` (the switch). No
namespace has a default route and the switch has no address, so a host reaches
the other hosts and nothing else: not this machine's own namespace, not the
internet. The tag is unique per run, and every run has its own switch, so
parallel runs never share names or a wire (they may use the same addresses).

``Hosts.cut(i)`` downs host ``i``'s port on the switch (its cable pulled: its
packets go nowhere, its TCP connections stall); ``Hosts.restore(i)`` plugs it
back. On leaving the ``with`` block, whatever happened, every process still
running in a namespace of the run is killed and the namespaces are deleted
(deleting a namespace deletes its veth ends, so nothing is left behind).

Where namespaces cannot be made (not root, no ``ip``, a container without
CAP_SYS_ADMIN), entering ``hosts()`` raises :class:`NetnsUnavailableError`, whose
message says why; tests turn it into one skip line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["SUBNET", "Hosts", "NetnsUnavailableError", "hosts"]

# Connect to port 9 (discard): an answer, even a refusal, means the wire works.
_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=float(sys.argv[2])).close()
except ConnectionRefusedError:
    pass
except OSError:
    sys.exit(1)
"""

SUBNET = "10.251.0"
"""The first three octets of every host's address (a /24 that nothing on this machine routes)."""


class NetnsUnavailableError(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


@dataclass
class Hosts:
    """Namespaces ``names[0]`` .. ``names[n-1]`` (hosts 1..n) on one private switch."""

    tag: str
    names: list[str]
    switch: str

    def name(self, host: int) -> str:
        """The namespace of host ``host`` (1-based)."""
        return self.names[host - 1]

    @staticmethod
    def address(host: int) -> str:
        """Host ``host``'s address (``10.251.0.<host>``)."""
        return f"{SUBNET}.{host}"

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside host ``host``'s namespace."""
        return ["ip", "netns", "exec", self.name(host), *argv]

    def popen(
        self,
        host: int,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout: IO[bytes] | int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` on host ``host``; stderr goes where stdout goes."""
        return subprocess.Popen(
            self.command(host, argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )

    def run(
        self,
        host: int,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``host`` to its end; raise with its output when it fails."""
        result = subprocess.run(
            self.command(host, argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} on host {host} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def cut(self, host: int) -> None:
        """Pull host ``host``'s cable: down its port on the switch."""
        _ip("-n", self.switch, "link", "set", f"p{host}", "down")

    def restore(self, host: int) -> None:
        """Plug host ``host``'s cable back in."""
        _ip("-n", self.switch, "link", "set", f"p{host}", "up")

    def reachable(self, source: int, target: int, timeout: float = 1.0) -> bool:
        """Whether host ``source`` gets any TCP answer (a refusal counts) from host ``target``."""
        result = subprocess.run(
            self.command(
                source, [sys.executable, "-c", _PROBE, self.address(target), str(timeout)]
            ),
            capture_output=True,
            timeout=timeout + 20,
        )
        return result.returncode == 0

    def kill_all(self) -> None:
        """SIGKILL every process still running in the run's namespaces."""
        for name in [*self.names, self.switch]:
            listed = _ip("netns", "pids", name, check=False).stdout.split()
            for pid in listed:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)


def _why_unavailable() -> str | None:
    if shutil.which("ip") is None:
        return "network namespaces cannot be made: the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return (
            "network namespaces cannot be made: this needs root (CAP_SYS_ADMIN and "
            "CAP_NET_ADMIN); run the test as root"
        )
    return None


def _make(tag: str, count: int) -> Hosts:
    made = Hosts(tag, [f"{tag}-h{i}" for i in range(1, count + 1)], f"{tag}-sw")
    probe = _ip("netns", "add", made.switch, check=False)
    if probe.returncode != 0:
        raise NetnsUnavailableError(
            f"network namespaces cannot be made here: `ip netns add` said {probe.stderr.strip()!r}"
        )
    sw = made.switch
    _ip("-n", sw, "link", "add", "br0", "type", "bridge")
    _ip("-n", sw, "link", "set", "br0", "up")
    for i, name in enumerate(made.names, start=1):
        _ip("netns", "add", name)
        _ip("-n", sw, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("-n", sw, "link", "set", f"p{i}", "master", "br0")
        _ip("-n", sw, "link", "set", f"p{i}", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{made.address(i)}/24", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
    return made


def _delete(made: Hosts) -> None:
    made.kill_all()
    for name in [*made.names, made.switch]:
        _ip("netns", "del", name, check=False)


@contextlib.contextmanager
def hosts(count: int = 4, *, tag: str | None = None) -> Iterator[Hosts]:
    """``count`` hosts on a private switch, deleted on exit (see the module docstring)."""
    reason = _why_unavailable()
    if reason:
        raise NetnsUnavailableError(reason)
    tag = tag or f"alto{secrets.token_hex(3)}"
    made = Hosts(tag, [f"{tag}-h{i}" for i in range(1, count + 1)], f"{tag}-sw")
    try:
        made = _make(tag, count)
        _wait_linked(made)
        yield made
    finally:
        _delete(made)


def _wait_linked(made: Hosts, timeout: float = 10.0) -> None:
    """Wait until host 1 reaches every other host (a bridge port forwards after a moment)."""
    deadline = time.monotonic() + timeout
    for target in range(2, len(made.names) + 1):
        while not made.reachable(1, target):
            if time.monotonic() > deadline:
                raise RuntimeError(f"host 1 cannot reach host {target} on the new switch")
            time.sleep(0.2)
