"""Keep worker processes running: start them, restart crashed ones with backoff, stop all.

A :class:`Supervisor` is synchronous and driven by its owner: call
:meth:`~Supervisor.start`, then :meth:`~Supervisor.poll` regularly (it restarts
what died once its backoff has passed), then :meth:`~Supervisor.stop`, which
sends SIGTERM to every child and SIGKILL to those still alive after the
timeout.

Children run in process groups of their own, so that a terminal's Ctrl-C
reaches the supervisor alone, which passes on one SIGTERM: had each child
received the terminal's SIGINT as well, that second signal would have cut every
record in flight short at once, LLM calls included, instead of letting them
finish. :func:`supervise` passes on a second signal too (records in flight are
cut short now) and kills the children at a third.

The backoff doubles after each crash (up to ``max_backoff``) and is forgiven
once a child has run for ``stable_after`` seconds.

A child that exits with :data:`REFUSED_EXIT` (2: the CLI's "bad usage": a bad
setting, an unknown stage, a group instance id another worker uses, access
denied) is not restarted: the same command would be refused again, and a
restart would only fight whatever refused it (two workers with one instance id
took each other's place for ever). A worker that finds no broker to talk to
under a supervisor exits 1 instead, so that it is restarted once Kafka is back.

An exit event says why, where the supervisor can tell: a death by signal names
the signal (``killed by SIGKILL``); an exit with a status names the last
``error:`` line that this run of the process printed, plainly if it came in the
last few seconds before the exit, else with its age ("its last error line, 40
s before: ..."). A line an earlier run printed (into the same, appended log) is
never shown: it explains that run's exit, not this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from alto_stream.ops.logs import error_of
from alto_stream.ops.worker import PARENT_PID_ENV, escalating

__all__ = ["REFUSED_EXIT", "Child", "ProcessSpec", "Supervisor", "error_lines", "supervise"]

log = logging.getLogger(__name__)

REFUSED_EXIT = 2
"""The exit status of a process refused something a restart cannot change: not restarted."""


@dataclass(frozen=True)
class ProcessSpec:
    """One process to keep running: its command, environment and log file."""

    name: str
    argv: Sequence[str]
    stage: str = ""
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    """Where its stdout and stderr go (None: inherited)."""
    stats_file: Path | None = None


@dataclass
class Child:
    """A supervised process and its history."""

    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    given_up: bool = False
    """It exited with :data:`REFUSED_EXIT`: not restarted."""
    log_watch: _LogWatch | None = None
    """The ``error:`` lines its current run prints (None: no log file)."""

    @property
    def running(self) -> bool:
        """True while its process is alive."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The current process id (None when not running)."""
        return self.process.pid if self.running and self.process is not None else None


class Supervisor:
    """Starts processes, restarts those that exit, stops them all on request."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        stable_after: float = 30.0,
    ) -> None:
        self.children = [Child(spec) for spec in specs]
        self.min_backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.events: list[str] = []
        self._stopping = False
        self._logs: dict[str, IO[bytes]] = {}

    def start(self) -> None:
        """Start every process."""
        for child in self.children:
            self._launch(child)

    def poll(self) -> list[str]:
        """Restart the processes that exited and whose backoff passed; returns new events."""
        events = []
        now = time.monotonic()
        for child in self.children:
            process = child.process
            if self._stopping or process is None or child.given_up:
                continue
            code = process.poll()
            if child.log_watch is not None and child.next_start == 0.0:
                child.log_watch.scan(now)
            if code is None:
                if child.backoff and now - child.started_at >= self.stable_after:
                    child.backoff = 0.0
                continue
            if child.next_start == 0.0 and code == REFUSED_EXIT:
                child.last_exit, child.given_up = code, True
                why = _exit_reason(code, child.log_watch, now)
                because = f" ({why})" if why else ""
                events.append(
                    f"{child.spec.name} exited with status {code}{because}: not restarted "
                    "(refused: the same command would be refused again)"
                )
            elif child.next_start == 0.0:
                child.last_exit = code
                child.backoff = min(max(child.backoff * 2, self.min_backoff), self.max_backoff)
                child.next_start = now + child.backoff
                why = _exit_reason(code, child.log_watch, now)
                because = f" ({why})" if why else ""
                events.append(
                    f"{child.spec.name} exited with status {code}{because}: "
                    f"restarting in {child.backoff:g}s"
                )
            elif now >= child.next_start:
                child.restarts += 1
                self._launch(child)
                events.append(f"{child.spec.name} restarted (pid {child.pid})")
        self.events.extend(events)
        return events

    def stop(self, timeout: float = 15.0) -> list[str]:
        """SIGTERM every child, SIGKILL the ones alive after ``timeout``; returns the killed."""
        self._stopping = True
        for child in self.children:
            if child.running and child.process is not None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = []
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
                killed.append(child.spec.name)
            child.last_exit = child.process.returncode
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        return killed

    def signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every child that runs (safe beside a :meth:`stop` in another thread)."""
        for child in self.children:
            process = child.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    def alive(self) -> int:
        """How many children run now."""
        return sum(child.running for child in self.children)

    def refused_note(self) -> str | None:
        """Why nothing of a stage runs any more (every process refused), else None."""
        refused = self.refused_stages()
        if not refused:
            return None
        return (
            f"every worker of stage {', '.join(refused)} was refused (exit status 2, not "
            "restarted: the same command would be refused again), so the app cannot run; "
            "fix what its error line says, then start it again"
        )

    def refused_stages(self) -> list[str]:
        """The stages (or lone processes) whose every process was refused: none runs again."""
        groups: dict[str, list[Child]] = {}
        for child in self.children:
            groups.setdefault(child.spec.stage or child.spec.name, []).append(child)
        return [name for name, children in groups.items() if all(c.given_up for c in children)]

    def _launch(self, child: Child) -> None:
        spec = child.spec
        env = {**os.environ, **spec.env, PARENT_PID_ENV: str(os.getpid())}
        out: IO[bytes] | None = None
        if spec.log_file is not None:
            out = self._logs.get(spec.name)
            if out is None:
                spec.log_file.parent.mkdir(parents=True, exist_ok=True)
                out = self._logs[spec.name] = spec.log_file.open("ab")
            # This run's lines start at the end of what earlier runs wrote.
            child.log_watch = _LogWatch(spec.log_file, spec.log_file.stat().st_size)
        child.process = subprocess.Popen(
            list(spec.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            process_group=0,  # a terminal's Ctrl-C reaches the supervisor only (see above)
        )
        child.started_at = time.monotonic()
        child.next_start = 0.0


def error_lines(log_file: Path, *, tail: int | None = None) -> list[str]:
    """The ``error: ...`` lines in ``log_file`` (in its last ``tail`` bytes), oldest first.

    That is what a worker that cannot start prints before it exits (the CLI's
    one-line errors); [] when the file cannot be read.
    """
    try:
        with log_file.open("rb") as f:
            if tail is not None:
                f.seek(max(f.seek(0, os.SEEK_END) - tail, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [said.strip() for line in text.splitlines() if (said := error_of(line)) is not None]


_RECENT = 5.0
"""Seconds before an exit within which an ``error:`` line is taken as its cause."""

_SCAN_LIMIT = 1 << 20
"""The most of a log's new bytes one scan reads (the rest, older, is skipped)."""


class _LogWatch:
    """The last ``error:`` line a process's run appends to its log, and when it came.

    Read as it grows (each :meth:`Supervisor.poll`), from where the run began, so
    an exit event can tell a line printed just before the exit from a stale one,
    and never shows an earlier run's line.
    """

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self.partial = b""
        self.last_error: tuple[str, float] | None = None
        """The line (cut to 300 characters) and when a scan first saw it (monotonic)."""

    def scan(self, now: float) -> None:
        """Read what was appended since the last scan; note its last ``error:`` line."""
        try:
            with self.path.open("rb") as f:
                end = f.seek(0, os.SEEK_END)
                if end - self.offset > _SCAN_LIMIT:
                    self.offset, self.partial = end - _SCAN_LIMIT, b""
                f.seek(self.offset)
                data = f.read(end - self.offset)
        except OSError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        self.partial = self.partial[-_SCAN_LIMIT:]
        for raw in reversed(lines):
            said = error_of(raw.decode("utf-8", "replace"))
            if said is not None:
                self.last_error = (said.strip()[:300], now)
                break


def _exit_reason(code: int, watch: _LogWatch | None, now: float) -> str | None:
    """Why a process exited with ``code``, as far as its run tells; None: nothing to add."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == 0 or watch is None:
        return None
    last = error_of(watch.partial.decode("utf-8", "replace"))  # a line without its newline
    if last is not None:
        watch.last_error = (last.strip()[:300], now)
    if watch.last_error is None:
        return None
    line, seen = watch.last_error
    if now - seen <= _RECENT:
        return line
    return f"its last error line, {now - seen:.0f} s before: {line}"


async def supervise(
    supervisor: Supervisor,
    *,
    interval: float = 0.25,
    duration: float | None = None,
    tick: Callable[[], Awaitable[None]] | None = None,
    stop_timeout: float = 15.0,
) -> bool:
    """Start, keep alive and finally stop ``supervisor``'s processes.

    Runs until SIGTERM or SIGINT (True), for ``duration`` seconds, or until every
    process of a stage was refused (:meth:`Supervisor.refused_stages`: none of them
    runs again, so the app cannot; before 2026-12-03 it ran on with no worker, and
    `up --duration` exited 0) (both False), calling ``tick`` after each poll (the
    owner's display). While the children stop, a second signal is passed on to
    them (they cut their records in flight short now) and a third kills them.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def pass_on() -> None:
        log.warning(
            "a second stop signal: the workers cut their records in flight short now "
            "(their next owner runs them again); a third kills them"
        )
        supervisor.signal_all(signal.SIGTERM)

    def kill() -> None:
        log.warning("a third stop signal: the workers are killed")
        supervisor.signal_all(signal.SIGKILL)

    on_signal = escalating(stop.set, pass_on, kill)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    started = time.monotonic()
    supervisor.start()
    try:
        while not stop.is_set():
            supervisor.poll()
            if tick is not None:
                await tick()
            if duration is not None and time.monotonic() - started >= duration:
                break
            if supervisor.refused_stages():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        try:
            await asyncio.to_thread(supervisor.stop, stop_timeout)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return stop.is_set()
