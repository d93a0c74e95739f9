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

The filters that lower aiokafka's routine errors to INFO and thin its repeated
lines are in :mod:`alto_stream.ops.log_filters`; their names stay importable
from here.

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
import sys
import time
from collections.abc import Iterator
from typing import IO, Literal, get_args

from alto_stream.errors import ConfigError
from alto_stream.ops.log_filters import (
    NewTopicFilter,
    RebalanceHeartbeatFilter,
    RepeatFilter,
    RetriedLookupFilter,
    limit_repeats,
    unlimit_repeats,
)

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
    "error_line",
    "error_of",
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


def error_line(message: str) -> str | None:
    """A command's last ``error: message`` line as JSON when logs are JSON; else None.

    With ``--log-format json`` every line on stderr is an object, that one too (it
    was the one plain line a log shipper met); its message keeps the ``error: ``
    prefix, which a supervisor reads as a worker's reason to exit.
    """
    if os.environ.get(FORMAT_ENV, "").strip().lower() != "json":
        return None
    record = logging.makeLogRecord(
        {"name": "alto_stream.cli", "levelno": logging.ERROR, "levelname": "ERROR"}
    )
    record.msg = f"error: {message}"
    return JsonFormatter().format(record)


def error_of(line: str) -> str | None:
    """The ``error: ...`` text of a stderr line, plain or JSON (:func:`error_line`); else None."""
    if line.startswith("error: "):
        return line
    if line.startswith("{") and '"error: ' in line:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(line).get("message")
            if isinstance(message, str) and message.startswith("error: "):
                return message
    return None


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
