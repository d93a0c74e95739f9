"""Log lines for people and for machines: time, app, stage, replica and pid on every one.

:func:`configure` installs one handler on the root logger (so aiokafka's
warnings read like ours) that writes each record as one line on stderr:

- ``text``: ``2026-01-31T12:00:00.123Z INFO app=textflow stage=shout replica=1
  pid=4242 alto_stream.ops.worker: worker started (...)``;
- ``json``: one object per line with ``time`` (ISO 8601, UTC), ``ts`` (seconds
  since the epoch), ``level``, ``logger``, ``message``, ``app``, ``stage``,
  ``replica``, ``pid`` and, for an exception, ``exception`` (the traceback).

The format is ``--log-format`` or ``ALTO_LOG_FORMAT`` (``text`` by default);
``configure`` exports its choice to the environment, so the worker processes
that ``up`` and ``worker --replicas`` start write the same format.

The labels come from :func:`labelled` (a context variable: what a worker task
and the tasks it starts log carries its stage, even with several workers in one
process) or else from :func:`bind` (process-wide, for a worker process). Messages
are %-formatted lazily by :mod:`logging`; nothing here logs settings, so no
credential from a bootstrap address or an environment variable reaches a line.

>>> import logging
>>> record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
>>> with labelled(app="tf", stage="shout", replica="1"):
...     _ = LabelFilter().filter(record)
>>> (record.app, record.stage, record.replica)
('tf', 'shout', '1')
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import io
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Literal, get_args

from alto_stream.errors import ConfigError

__all__ = [
    "FORMAT_ENV",
    "LEVEL_ENV",
    "HeldLines",
    "JsonFormatter",
    "LabelFilter",
    "LogFormat",
    "RebalanceHeartbeatFilter",
    "RepeatFilter",
    "RetriedLookupFilter",
    "TextFormatter",
    "bind",
    "configure",
    "hold_stderr",
    "labelled",
    "limit_repeats",
    "unlimit_repeats",
]

FORMAT_ENV = "ALTO_LOG_FORMAT"
"""The environment variable that chooses the log format (``text`` or ``json``)."""

LEVEL_ENV = "ALTO_LOG_LEVEL"
"""The level of alto-stream's own log lines (``DEBUG``, ``INFO``, ``WARNING``): what ``-v``
and ``-q`` choose, exported so that the workers ``up`` starts log at it too."""

LogFormat = Literal["text", "json"]

LABELS = ("app", "stage", "replica")
"""The labels every line carries (``None`` until known)."""

_LABELS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "alto_log_labels", default=None
)
_PROCESS_LABELS: dict[str, str] = {}


def bind(*, app: str | None = None, stage: str | None = None, replica: str | None = None) -> None:
    """Label every line of this process (a worker process runs one stage)."""
    for key, value in (("app", app), ("stage", stage), ("replica", replica)):
        if value is not None:
            _PROCESS_LABELS[key] = value


@contextlib.contextmanager
def labelled(
    *, app: str | None = None, stage: str | None = None, replica: str | None = None
) -> Iterator[None]:
    """Label the lines logged in this context (and by the tasks it starts) while it lasts."""
    labels = {**(_LABELS.get() or {})}
    for key, value in (("app", app), ("stage", stage), ("replica", replica)):
        if value is not None:
            labels[key] = value
    token = _LABELS.set(labels)
    try:
        yield
    finally:
        _LABELS.reset(token)


class LabelFilter(logging.Filter):
    """Puts ``app``, ``stage`` and ``replica`` on every record (``extra=`` ones win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the labels; never drops a record."""
        labels = _LABELS.get() or _PROCESS_LABELS
        for key in LABELS:
            if not hasattr(record, key):
                setattr(record, key, labels.get(key, _PROCESS_LABELS.get(key)))
        return True


def _iso(created: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{stamp}.{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL app=.. stage=.. replica=.. pid=.. LOGGER: MESSAGE``."""

    def format(self, record: logging.LogRecord) -> str:
        """One line (a traceback follows on the next lines)."""
        labels = " ".join(
            f"{key}={value}" for key in LABELS if (value := getattr(record, key, None)) is not None
        )
        head = f"{_iso(record.created)} {record.levelname} {labels} pid={record.process}"
        text = f"{head.replace('  ', ' ')} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            text += "\n" + record.exc_text
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of JSON."""
        data: dict[str, object] = {
            "time": _iso(record.created),
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in LABELS:
            data[key] = getattr(record, key, None)
        data["pid"] = record.process
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def inherited_level(default: int = logging.INFO) -> int:
    """The level ``ALTO_LOG_LEVEL`` names (a parent's ``-v`` or ``-q``), else ``default``."""
    named = logging.getLevelName(os.environ.get(LEVEL_ENV, "").strip().upper() or "?")
    return named if isinstance(named, int) else default


def log_format(value: str | None = None) -> LogFormat:
    """``value``, else ``ALTO_LOG_FORMAT``, else ``text``; :class:`ConfigError` if unknown."""
    chosen = (value or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if chosen not in get_args(LogFormat):
        raise ConfigError(f"bad log format {chosen!r}: expected text or json (--log-format)")
    return chosen  # type: ignore[return-value]


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (so a second call replaces it).

    Without a stream of its own it writes to whatever ``sys.stderr`` is at the
    time (test runners swap it).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record."""
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


class HeldLines(io.TextIOBase):
    """A text stream that keeps what is written until :meth:`lines` takes it out.

    For a live display (``up``'s table), as its ``sys.stderr`` (:func:`hold_stderr`):
    a line written while it is shown must neither print nor wait for the display's
    locks. It may come from a garbage-collected object's finalizer (aiokafka's
    "Unclosed AIOKafkaConnection", logged through asyncio) run in the middle of the
    display's own print, or from another thread: printed there, it waited for the
    console's lock that its own thread held, while the display's refresh thread
    held the other lock and waited for that one (``up`` froze for good). So
    :meth:`write` takes no lock (a deque's append is atomic), and the display's
    owner prints the lines from its own loop.
    """

    def __init__(self, like: IO[str]) -> None:
        super().__init__()
        self._like = like
        self._chunks: collections.deque[str] = collections.deque()
        self._partial = ""

    def write(self, text: str) -> int:
        """Keep ``text`` (never blocks)."""
        self._chunks.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing to do: the lines wait for :meth:`lines`."""

    def isatty(self) -> bool:
        """As the stream it stands in for (so that colours are chosen alike)."""
        return self._like.isatty()

    def writable(self) -> bool:
        """True."""
        return True

    def lines(self) -> list[str]:
        """The complete lines written since the last call (one reader at a time)."""
        taken = []
        while self._chunks:
            taken.append(self._chunks.popleft())
        *complete, self._partial = (self._partial + "".join(taken)).split("\n")
        return complete

    def rest(self) -> str:
        """Everything not taken yet, the last unfinished line too."""
        text = "".join(f"{line}\n" for line in self.lines()) + self._partial
        self._partial = ""
        return text


@contextlib.contextmanager
def hold_stderr() -> Iterator[HeldLines]:
    """``sys.stderr`` is a :class:`HeldLines` while this lasts; then what is left is written.

    Log lines follow (the handler :func:`configure` installs writes to whatever
    ``sys.stderr`` is), and so do Python's own last-resort lines ("Exception ignored
    in ...") and warnings.
    """
    real = sys.stderr
    held = HeldLines(real)
    sys.stderr = held
    try:
        yield held
    finally:
        sys.stderr = real
        real.write(held.rest())
        real.flush()


class RetriedLookupFilter(logging.Filter):
    """aiokafka's retried group-coordinator lookups, logged as INFO, not ERROR.

    aiokafka logs ``Group Coordinator Request failed`` at ERROR for every
    failed lookup, also for the retriable ones (a new broker creating its
    offsets topic answers GroupCoordinatorNotAvailable for a second), which it
    retries; every worker's log on a fresh broker opened with one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower a retried lookup's failure to INFO and say it is retried; keep every record."""
        args = record.args if isinstance(record.args, tuple) else ()
        error = args[0] if args else None
        if (
            record.levelno == logging.ERROR
            and str(record.msg).startswith(_LOOKUP_FAILED)
            and getattr(error, "retriable", False)
        ):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (retriable: retrying)"
        return True


class NewTopicFilter(logging.Filter):
    """aiokafka's ``Topic X not found in cluster metadata``, logged as INFO, not ERROR.

    aiokafka logs it at ERROR whenever a metadata answer lacks a topic it asked
    for, and retries; right after ``up`` creates an app's topics that is their
    first second (2 of 9 fresh ``up`` runs opened with such an ERROR line). A
    topic that really is missing is reported by the worker itself, before it starts.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower the line to INFO and say it is retried; keep every record."""
        if record.levelno == logging.ERROR and str(record.msg).startswith(_NOT_IN_METADATA):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (yet: retrying)"
        return True


class RebalanceHeartbeatFilter(logging.Filter):
    """aiokafka's ``Heartbeat failed for group X because it is rebalancing``, as INFO.

    aiokafka logs it at WARNING at every member's heartbeat during a rebalance,
    which is how a member learns of one: a normal event whenever a worker joins
    or leaves (a new user counted ~40 lines in one scale-up/down run). The
    worker's own lines say what it was given afterwards.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower the line to INFO and say it is a rebalance; keep every record."""
        if record.levelno == logging.WARNING and str(record.msg).startswith(_REBALANCING):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.msg} (members joined or left: rejoining)"
        return True


class RepeatFilter(logging.Filter):
    """aiokafka's repeated lines, once per ``window`` seconds each, with a count of the rest.

    While a broker is down aiokafka logs every failed connection and fetch, 20 to
    45 ERROR lines a second per worker (a new user counted ~1,300 per worker while
    two of three nodes were down): the one line that matters drowned. A line of the
    same logger that says the same thing (its numbers aside: node ids, ports)
    within ``window`` seconds of the last one shown is dropped, whatever its level
    (the lines :class:`RetriedLookupFilter` lowers to INFO came ten a second); the
    next one shown says how many were, and between which times.
    """

    def __init__(self, window: float = 10.0, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.window = window
        self.prefix = prefix
        self._last: dict[tuple[str, str], _Shown] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the first of each kind of line per window; drop (and count) the others."""
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, _NUMBERS.sub("#", record.getMessage()))
        last = self._last.get(key)
        if last is not None and record.created - last.at < self.window:
            last.dropped += 1
            last.first_dropped = last.first_dropped or record.created
            last.last_dropped = record.created
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = _Shown(record.created)
        if last is not None and last.dropped:
            record.msg = (
                f"{record.msg} (and {last.dropped} more like it from "
                f"{_clock(last.first_dropped)} to {_clock(last.last_dropped)})"
            )
        return True


_CLIENT_REPEATS = RepeatFilter()
_client_lock = threading.Lock()
_clients = 0


def limit_repeats() -> None:
    """Show aiokafka's repeated lines once per 10 s (with a count) until :func:`unlimit_repeats`.

    For a :class:`~alto_stream.client.Client` in someone else's program, where
    :func:`configure` (which filters on its handler) does not run: one
    :class:`RepeatFilter` goes on every ``aiokafka`` logger, whatever handlers
    the program set up, while at least one client is open. Calls nest.
    """
    global _clients
    with _client_lock:
        _clients += 1
        for logger in _aiokafka_loggers():
            if _CLIENT_REPEATS not in logger.filters:
                logger.addFilter(_CLIENT_REPEATS)


def unlimit_repeats() -> None:
    """Undo one :func:`limit_repeats`; the last one takes the filter off again."""
    global _clients
    with _client_lock:
        _clients = max(_clients - 1, 0)
        if not _clients:
            for logger in _aiokafka_loggers():
                logger.removeFilter(_CLIENT_REPEATS)


def _aiokafka_loggers() -> list[logging.Logger]:
    # A logger's filters see only its own records (not its children's): each one needs it.
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "aiokafka"]
    return [logging.getLogger(n) for n in ("aiokafka", *names)]


class _Shown:
    """When a kind of line was last shown, and what was dropped since."""

    __slots__ = ("at", "dropped", "first_dropped", "last_dropped")

    def __init__(self, at: float) -> None:
        self.at = at
        self.dropped = 0
        self.first_dropped = 0.0
        self.last_dropped = 0.0


def _clock(created: float) -> str:
    """``12:59:04Z``: the time of day of a log line (UTC, as the lines' own times)."""
    return time.strftime("%H:%M:%SZ", time.gmtime(created))


_NUMBERS = re.compile(r"\d+")


_LOOKUP_FAILED = "Group Coordinator Request failed"
_NOT_IN_METADATA = "Topic %s not found in cluster metadata"
_REBALANCING = "Heartbeat failed for group %s because it is rebalancing"
_CLUSTER_LOGGER = "aiokafka.cluster"
_COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"


def configure(
    level: int = logging.INFO, fmt: str | None = None, *, stream: IO[str] | None = None
) -> LogFormat:
    """Send log lines of ``alto_stream`` (at ``level``) and warnings of others to stderr.

    Returns the format chosen, which is also exported as ``ALTO_LOG_FORMAT`` (and
    the level as ``ALTO_LOG_LEVEL``), for the processes this one starts.
    """
    chosen = log_format(fmt)
    os.environ[FORMAT_ENV] = chosen
    os.environ[LEVEL_ENV] = logging.getLevelName(level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.addFilter(LabelFilter())
    handler.addFilter(RepeatFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("alto_stream").setLevel(level)
    coordinator = logging.getLogger(_COORDINATOR_LOGGER)
    if not any(isinstance(f, RetriedLookupFilter) for f in coordinator.filters):
        coordinator.addFilter(RetriedLookupFilter())
    if not any(isinstance(f, RebalanceHeartbeatFilter) for f in coordinator.filters):
        coordinator.addFilter(RebalanceHeartbeatFilter())
    cluster = logging.getLogger(_CLUSTER_LOGGER)
    if not any(isinstance(f, NewTopicFilter) for f in cluster.filters):
        cluster.addFilter(NewTopicFilter())
    return chosen
